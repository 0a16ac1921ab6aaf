#!/usr/bin/env bash
# Load benchmark of `cifar100 serve` against Python serving peers (tools/reference/serve_reference.py), same
# WRN-16-4 weights, every server with 2 compute threads and PyTorch at its fastest for the precision:
#   python-batch-fp32/bf16   TorchServe's design: a request queue, PEER_WORKERS inference workers (2), batches of
#                            up to 64 images gathered for at most PEER_DELAY_MS (0: what is queued; the fastest
#                            of 1-2 workers and 0-5 ms tried here), warmed up on every batch size
#   python-simple-fp32       the minimal stack cifar100 replaces: one forward pass at a time
#   cifar100-fp32/bf16       this program
# All servers run at once (idle ones cost nothing) and are measured interleaved: ROUNDS rounds, each server
# in turn, wrk (Debian) POSTing one 32x32 PNG per request on keep-alive connections at concurrency 1, 16 and
# 64 for DURATION seconds; the table shows the median of the rounds for requests/s and p50/p99 latency.
# Ratios compare equal precision (cifar100-fp32 with python-batch-fp32, cifar100-bf16 with python-batch-bf16).
# /ping is sampled during every concurrency-64 run of cifar100.
#   bench/serve_load.sh [DURATION] [ROUNDS]      (needs build/cifar100, build/bench/infer_speed, wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"; ROUNDS="${2:-3}"
PEER_WORKERS="${PEER_WORKERS:-2}"; PEER_DELAY_MS="${PEER_DELAY_MS:-0}"
tmp="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
./build/bench/infer_speed make 16 4 "$tmp/model"
/usr/bin/python3 -c "
import numpy as np; from PIL import Image
Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save('$tmp/x.png')"
export BODY_FILE="$tmp/x.png"
wait_ping() { for _ in $(seq 1200); do curl -sf "http://127.0.0.1:$1/ping" >/dev/null && return 0; sleep 0.1; done; return 1; }

declare -A port
next=18631
start() {  # name command... (ours/peer exec, so that $! is the server itself and cleanup stops it)
  local name=$1; shift
  port[$name]=$next
  "$@" "${port[$name]}" > "$tmp/$name.log" 2>&1 & pids+=($!)
  next=$((next + 1))
}
ours() { exec ./build/cifar100 serve --model "$tmp/model" --host 127.0.0.1 --threads 2 --precision "$1" --port "$2"; }
peer() { exec /usr/bin/python3 tools/reference/serve_reference.py "$tmp/model" "$3" 2 --mode "$1" --precision "$2" \
           --workers "$PEER_WORKERS" --max-batch 64 --max-delay-ms "$PEER_DELAY_MS"; }
start cifar100-fp32 ours fp32
start cifar100-bf16 ours bf16
start python-batch-fp32 peer batching fp32
start python-batch-bf16 peer batching bf16
start python-simple-fp32 peer simple fp32
for name in "${!port[@]}"; do wait_ping "${port[$name]}"; done

for _ in $(seq "$ROUNDS"); do
  for name in cifar100-fp32 python-batch-fp32 cifar100-bf16 python-batch-bf16 python-simple-fp32; do
    p=${port[$name]}
    for c in 1 16 64; do
      pinger=""
      if [ "$c" = 64 ] && [[ $name == cifar100-* ]]; then
        ( sleep 1; for _ in $(seq $(( DURATION * 4 - 6 ))); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$p/ping"; sleep 0.2; done ) \
          >> "$tmp/ping-$name" &
        pinger=$!
      fi
      t=$(( c < 2 ? 1 : 2 ))
      out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 60s --latency -s bench/post_png.lua "http://127.0.0.1:$p/invocations")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
      echo "$name $c $rps $p50 $p99 ${non2xx:-0}" >> "$tmp/results"
      if [ -n "$pinger" ]; then wait "$pinger"; fi
      sleep 2  # a server may still be computing requests whose clients left: let it finish before the next run
    done
  done
done
/usr/bin/python3 - "$tmp" "$ROUNDS" <<'PY'
import glob, os, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def ms(s):
    return float(s[:-2]) if s.endswith("ms") else float(s[:-2]) * 1e-3 if s.endswith("us") else float(s[:-1]) * 1e3
runs = {}
for line in open(os.path.join(tmp, "results")):
    name, c, rps, p50, p99, bad = line.split()
    runs.setdefault((name, c), []).append((float(rps), ms(p50), ms(p99), int(bad)))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) + (sum(x[3] for x in v),) for k, v in runs.items()}
peer_of = {"cifar100-fp32": "python-batch-fp32", "cifar100-bf16": "python-batch-bf16"}
print(f"medians of {rounds} interleaved rounds")
print(f"{'server':19s} {'conc':>4s} {'req/s':>9s} {'p50 ms':>9s} {'p99 ms':>9s} {'non-2xx':>8s} {'vs same-precision peer':>23s}")
for name in ("cifar100-fp32", "python-batch-fp32", "cifar100-bf16", "python-batch-bf16", "python-simple-fp32"):
    for c in ("1", "16", "64"):
        rps, p50, p99, bad = med[(name, c)]
        ratio = f"{rps / med[(peer_of[name], c)][0]:.2f}x" if name in peer_of else ""
        print(f"{name:19s} {c:>4s} {rps:9.1f} {p50:9.1f} {p99:9.1f} {bad:8d} {ratio:>23s}")
for f in sorted(glob.glob(os.path.join(tmp, "ping-*"))):
    v = sorted(float(x) for x in open(f) if x.strip())
    print(f"{os.path.basename(f)[5:]}: /ping during the concurrency-64 runs: median {1000 * v[len(v) // 2]:.1f} ms, "
          f"max {1000 * v[-1]:.1f} ms ({len(v)} samples)")
PY
