#!/usr/bin/env bash
# Load benchmark of `cifar100 serve` against the minimal Python serving stack it replaces
# (tools/reference/serve_reference.py: ThreadingHTTPServer, PIL, PyTorch eager fp32, one request at a time),
# same WRN-16-4 weights, both with 2 compute threads, in one run: wrk (Debian) POSTs one 32x32 PNG per
# request on keep-alive connections at concurrency 1, 16 and 64 for DURATION seconds each and reports
# requests/s and p50/p99 latency; /ping latency is sampled during the concurrency-64 run.
# Ours runs twice: bf16 (auto on this CPU) and fp32 (equal precision with the peer).
#   bench/serve_load.sh [DURATION]          (needs build/cifar100, build/bench/infer_speed, wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
tmp="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
./build/bench/infer_speed make 16 4 "$tmp/model"
/usr/bin/python3 -c "
import numpy as np; from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save('$tmp/x.png')"
export BODY_FILE="$tmp/x.png"
wait_ping() { for _ in $(seq 600); do curl -sf "http://127.0.0.1:$1/ping" >/dev/null && return 0; sleep 0.1; done; return 1; }
measure() {  # name port
  for c in 1 16 64; do
    pinger=""
    if [ "$c" = 64 ]; then
      ( sleep 1; for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$2/ping"; sleep 0.2; done ) \
        > "$tmp/ping-$1" &
      pinger=$!
    fi
    t=$(( c < 2 ? 1 : 2 ))
    out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 60s --latency -s bench/post_png.lua "http://127.0.0.1:$2/invocations")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    echo "$1 $c $rps $p50 $p99 ${non2xx:-0}" >> "$tmp/results"
    if [ -n "$pinger" ]; then wait "$pinger"; fi
  done
  echo "$1 ping_max_s $(sort -g "$tmp/ping-$1" | tail -1)" >> "$tmp/pings"
}
port=18631
for prec in bf16 fp32; do
  ./build/cifar100 serve --model "$tmp/model" --port $port --host 127.0.0.1 --threads 2 --precision $prec \
    > "$tmp/serve-$prec.log" 2>&1 & pids+=($!)
  wait_ping $port
  measure "cifar100-$prec" $port
  kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true
  port=$((port + 1))
done
/usr/bin/python3 tools/reference/serve_reference.py "$tmp/model" $port 2 & pids+=($!)
wait_ping $port
measure python-fp32 $port
/usr/bin/python3 - "$tmp/results" "$tmp/pings" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
def ms(s):
    return float(s[:-2]) if s.endswith("ms") else float(s[:-2]) * 1e-3 if s.endswith("us") else float(s[:-1]) * 1e3
data = {(r[0], r[1]): (float(r[2]), ms(r[3]), ms(r[4]), r[5]) for r in rows}
print(f"{'server':16s} {'conc':>4s} {'req/s':>9s} {'p50 ms':>9s} {'p99 ms':>9s} {'non-2xx':>8s} {'req/s vs python':>16s}")
for (name, c), (rps, p50, p99, bad) in data.items():
    ratio = rps / data[("python-fp32", c)][0]
    print(f"{name:16s} {c:>4s} {rps:9.1f} {p50:9.1f} {p99:9.1f} {bad:>8s} {ratio:15.1f}x")
for l in open(sys.argv[2]):
    name, _, v = l.split()
    print(f"{name}: /ping max {1000 * float(v):.1f} ms during the concurrency-64 run")
PY
