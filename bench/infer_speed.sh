#!/usr/bin/env bash
# Inference speed of predict's engine (batch norm folded, weights pre-converted) against PyTorch eager from
# Python (Debian's python3-torch: the same weights, eval, no_grad, channels-last, bf16 autocast for bf16),
# both with 2 threads, in one run: batch throughput (WRN-16-4 at batch 256, WRN-28-10 at batch 64) and the
# median batch-1 latency, fp32 and bf16, with the ratios and the share of this CPU's convolution peak
# (PEAK_FP32 / PEAK_BF16 GFLOP/s, measured: about 230 and 460 on the 2-core development machine).
#   bench/infer_speed.sh [SECONDS_PER_MEASUREMENT]        (needs build/bench/infer_speed)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-4}"; THREADS="${THREADS:-2}"
PEAK_FP32="${PEAK_FP32:-230}"; PEAK_BF16="${PEAK_BF16:-460}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
printf "%-10s %-5s %5s | %12s %12s %7s | %11s %11s %7s %12s %14s\n" model prec batch "ours img/s" "torch img/s" ratio \
  "ours b1 ms" "torch b1 ms" ratio "peak b1 ms" "ours b1/peak"
for spec in "16 4 256 0.3937" "28 10 64 5.2480"; do
  read -r depth width batch gmac <<<"$spec"
  dir="$tmp/wrn-$depth-$width"
  ./build/bench/infer_speed make "$depth" "$width" "$dir"
  for p in fp32 bf16; do
    o=$(./build/bench/infer_speed run "$dir" "$p" "$THREADS" "$batch" "$SECONDS_EACH")
    t=$(/usr/bin/python3 tools/reference/bench_infer.py "$dir" "$p" "$THREADS" "$batch" "$SECONDS_EACH")
    /usr/bin/python3 - "$depth-$width" "$p" "$batch" "$gmac" "$PEAK_FP32" "$PEAK_BF16" "$o" "$t" <<'PY'
import sys
name, p, batch, gmac, pf, pb = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
o = dict(kv.split("=") for kv in sys.argv[7].split())
t = dict(kv.split("=") for kv in sys.argv[8].split())
peak_ms = 2 * gmac / (pf if p == "fp32" else pb) * 1e3
ot, tt, ol, tl = (float(x) for x in (o["throughput"], t["throughput"], o["latency_ms"], t["latency_ms"]))
print(f"WRN-{name:<6} {p:<5} {batch:>5} | {ot:12.1f} {tt:12.1f} {ot / tt:6.2f}x | {ol:11.2f} {tl:11.2f} {tl / ol:6.2f}x "
      f"{peak_ms:12.2f} {ol / peak_ms:13.2f}x")
PY
  done
done
