#!/usr/bin/env bash
# Inference speed of predict's engine (batch norm folded, weights pre-converted) against PyTorch from Python
# (Debian's python3-torch, tools/reference/bench_infer.py), every peer at its best and all in one run, THREADS
# threads (default 2): fp32 eager and fp32 frozen (torch.jit.freeze + optimize_for_inference: oneDNN forced),
# bf16 with the weights cast once (model.to(bfloat16)) and bf16 autocast; all under inference_mode with
# channels-last. Batch throughput (WRN-16-4 at batch 256, WRN-28-10 at batch 64) and the median batch-1
# latency; the ratio is against the fastest PyTorch peer of the same precision, named in the table. The peak
# is measured in the same run: the fastest 3x3 convolution PyTorch runs here, in GFLOP/s.
#   bench/infer_speed.sh [SECONDS_PER_MEASUREMENT]        (needs build/bench/infer_speed)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-4}"; THREADS="${THREADS:-2}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
peak=$(/usr/bin/python3 tools/reference/bench_infer.py peak "$THREADS")
echo "measured peak (GFLOP/s, fastest 3x3 convolution): $peak"
printf "%-10s %-5s %5s | %10s %-26s %7s | %9s %-24s %7s | %9s %9s\n" model prec batch "ours img/s" "best PyTorch img/s" ratio \
  "ours b1" "best PyTorch b1 ms" ratio "peak b1" "ours/peak"
for spec in "16 4 256 0.3937" "28 10 64 5.2480"; do
  read -r depth width batch gmac <<<"$spec"
  dir="$tmp/wrn-$depth-$width"
  ./build/bench/infer_speed make "$depth" "$width" "$dir"
  for p in fp32 bf16; do
    o=$(./build/bench/infer_speed run "$dir" "$p" "$THREADS" "$batch" "$SECONDS_EACH")
    t=$(/usr/bin/python3 tools/reference/bench_infer.py "$dir" "$p" "$THREADS" "$batch" "$SECONDS_EACH")
    /usr/bin/python3 - "$depth-$width" "$p" "$batch" "$gmac" "$peak" "$o" "$t" <<'PY'
import sys
name, p, batch, gmac = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
peak = dict(kv.split("=") for kv in sys.argv[5].split())
o = dict(kv.split("=") for kv in sys.argv[6].split())
peers = [dict(kv.split("=") for kv in line.split()) for line in sys.argv[7].splitlines() if line.strip()]
bt = max(peers, key=lambda q: float(q["throughput"]))
bl = min(peers, key=lambda q: float(q["latency_ms"]))
peak_ms = 2 * gmac / float(peak["peak_" + p]) * 1e3
ot, ol = float(o["throughput"]), float(o["latency_ms"])
tt, tl = float(bt["throughput"]), float(bl["latency_ms"])
print(f"WRN-{name:<6} {p:<5} {batch:>5} | {ot:10.1f} {tt:10.1f} ({bt['peer']:<13}) {ot / tt:6.2f}x | {ol:9.2f} "
      f"{tl:9.2f} ({bl['peer']:<12}) {tl / ol:6.2f}x | {peak_ms:9.2f} {ol / peak_ms:8.2f}x")
print("           all peers: " + "; ".join(f"{q['peer']} {float(q['throughput']):.1f} img/s, {float(q['latency_ms']):.2f} ms"
                                       for q in peers))
PY
  done
done
