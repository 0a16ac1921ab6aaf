#!/usr/bin/env bash
# Data-parallel scaling on this host: cifar100 train --nproc N against PyTorch's DistributedDataParallel
# (Debian's python3-torch, Gloo on loopback, tools/reference/bench_ddp.py) for N = 1, 2, 4 (NPROCS), the same
# WRN-16-4 (DEPTH/WIDTH), global batch 128, fp32, the same per-step work: both train on one pre-made batch
# (cifar100: synthetic_data=true), so neither pays for data loading. Both split THREADS (default: the cores)
# among the processes. On a 2-core machine the ranks share the same two cores, so the figure measures the
# cost of data parallelism (communication, smaller per-rank batches, process overhead), not a speed-up;
# efficiency = images/s with N ranks / images/s with 1. Also cifar100's all-reduce time per step against its
# backward time, and the share of communication the overlap with backward hides. The peer runs twice, stock
# and with tcmalloc (Debian's, LD_PRELOAD: its fastest allocator in bench/train_throughput.sh); the faster counts.
# The images come from build/tests/make_fake_cifar (their content does not matter to the speed; the small
# test set keeps the final test short).
#   bench/dist_scaling.sh            (needs build/cifar100 and build/tests/make_fake_cifar: scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTH="${DEPTH:-16}"; WIDTH="${WIDTH:-4}"; BATCH="${BATCH:-128}"; STEPS="${STEPS:-10}"
THREADS="${THREADS:-$(nproc)}"; NPROCS="${NPROCS:-1 2 4}"
PY=/usr/bin/python3
TCMALLOC="${TCMALLOC:-/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4}"
[ -f "$TCMALLOC" ] || { echo "missing $TCMALLOC: apt-get install libtcmalloc-minimal4 (scripts/setup-debian.sh test)" >&2; exit 1; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
./build/tests/make_fake_cifar "$tmp/data" --train $((BATCH * STEPS + 100)) --test 100 --classes 100 >/dev/null
ours() {  # nproc -> "images/s|all-reduce line" of the second epoch
  local n="$1" threads=$((THREADS / $1))
  [ "$threads" -ge 1 ] || threads=1
  ./build/cifar100 train --nproc "$n" --data-dir "$tmp/data" --out "$tmp/run-$n" --resume none --overwrite \
    --set depth="$DEPTH" \
    --set width="$WIDTH" --set batch_size="$BATCH" --set train_limit=$((BATCH * STEPS)) --set epochs=2 \
    --set val_size=100 --set warmup_epochs=0 --set mixup_alpha=0 --set dropout=0 --set precision=fp32 \
    --set synthetic_data=true --set threads="$threads" --set log_interval=0 >"$tmp/log-$n" 2>&1 \
    || { cat "$tmp/log-$n"; exit 1; }
  local ips comm
  ips=$($PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[1])['images_per_second'])" \
    "$tmp/run-$n/metrics.jsonl")
  comm=$(grep 'all-reduce per step' "$tmp/log-$n" | tail -1 | sed 's/.*all-reduce per step: //' || true)
  echo "$ips|${comm:--}"
}
echo "WRN-$DEPTH-$WIDTH, global batch $BATCH, fp32, $STEPS steps, $THREADS threads shared by the ranks ($(nproc) cores)"
printf "%-6s %12s %11s | %14s %11s | %6s\n" ranks "cifar100" efficiency "pytorch-ddp" efficiency ratio
base_o=""; base_t=""
declare -A comms peers
for n in $NPROCS; do
  r=$(ours "$n"); o=${r%%|*}; comms[$n]=${r#*|}
  t1=$($PY tools/reference/bench_ddp.py "$DEPTH" "$WIDTH" "$BATCH" "$STEPS" fp32 "$n" "$THREADS" | sed 's/.*images_per_second=//')
  t2=$(LD_PRELOAD="$TCMALLOC" $PY tools/reference/bench_ddp.py "$DEPTH" "$WIDTH" "$BATCH" "$STEPS" fp32 "$n" "$THREADS" \
    | sed 's/.*images_per_second=//')
  t=$($PY -c "import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))" "$t1" "$t2")
  peers[$n]="stock $t1, tcmalloc $t2"
  [ -n "$base_o" ] || { base_o=$o; base_t=$t; }
  $PY - "$n" "$o" "$t" "$base_o" "$base_t" <<'PY'
import sys
n, o, t, bo, bt = sys.argv[1], *map(float, sys.argv[2:])
print(f"{n:<6} {o:12.1f} {o / bo:10.0%} | {t:14.1f} {t / bt:10.0%} | {o / t:5.2f}x   (images/s)")
PY
done
echo
echo "pytorch-ddp images/s: $(for n in $NPROCS; do printf '%s ranks: %s; ' "$n" "${peers[$n]}"; done)"
echo "cifar100 gradient all-reduce (second epoch, rank 0):"
for n in $NPROCS; do [ "$n" = 1 ] || echo "  $n ranks: ${comms[$n]}"; done
