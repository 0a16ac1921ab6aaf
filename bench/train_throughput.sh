#!/usr/bin/env bash
# Training throughput, cifar100 vs PyTorch, in one run on this machine: WRN-16-4 (or DEPTH/WIDTH), batch
# 128, fp32 and bf16. cifar100 trains on the real data (loader, crop+flip, label smoothing, SGD Nesterov,
# clipping) and its second epoch's images/s is reported; PyTorch (Debian's python3-torch, the same model
# from tools/reference) trains on synthetic tensors with no data loading at all. Both use 2 threads.
# PyTorch runs four ways: stock, with glibc's malloc tuned the way cifar100 tunes its allocator, and with a
# caching allocator from Debian through LD_PRELOAD (jemalloc, tcmalloc); the ratio is against the fastest.
# Then the loader's cost: cifar100 with the loader (the seed's augmentation pipeline and TrivialAugment) vs
# cifar100 training on one pre-made batch (synthetic_data=true), bf16, in ROUNDS interleaved rounds (default
# 3; medians: this machine's speed drifts by several percent between runs). SKIP_PEERS=1 skips the first part,
# SKIP_LOADER=1 the second.
#   bench/train_throughput.sh            (needs build/cifar100 and CIFAR100_ARCHIVE or CIFAR100_DATA_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPTH="${DEPTH:-16}"; WIDTH="${WIDTH:-4}"; BATCH="${BATCH:-128}"; STEPS="${STEPS:-30}"; THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"; SKIP_PEERS="${SKIP_PEERS:-0}"; SKIP_LOADER="${SKIP_LOADER:-0}"
if [ -z "${CIFAR100_ARCHIVE:-}" ] && [ -f ../shared/data/cifar-100-binary.tar.gz ]; then
  export CIFAR100_ARCHIVE="$(cd ../shared/data && pwd)/cifar-100-binary.tar.gz"
fi
PY=/usr/bin/python3
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
ours() {  # precision [--set ...] -> images/s of the second epoch
  local p="$1"; shift
  ./build/cifar100 train --out "$tmp/run-$p" --resume none --overwrite "$@" --set depth="$DEPTH" --set width="$WIDTH" \
    --set batch_size="$BATCH" --set train_limit=$((BATCH * STEPS)) --set epochs=2 --set val_size=100 \
    --set warmup_epochs=0 --set mixup_alpha=0 --set dropout=0 --set precision="$p" --set threads="$THREADS" \
    --set log_interval=0 >"$tmp/log-$p" 2>&1 || { cat "$tmp/log-$p"; exit 1; }
  $PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[1])['images_per_second'])" "$tmp/run-$p/metrics.jsonl"
}
theirs() {  # precision [env...] -> images/s
  local p="$1"; shift
  env "$@" $PY tools/reference/bench_train.py "$DEPTH" "$WIDTH" "$BATCH" "$STEPS" "$p" "$THREADS" | sed 's/.*images_per_second=//'
}
echo "WRN-$DEPTH-$WIDTH, batch $BATCH, $STEPS steps, $THREADS threads ($(nproc) cores)"
if [ "$SKIP_PEERS" != 1 ]; then
lib=/usr/lib/x86_64-linux-gnu
JEMALLOC="${JEMALLOC:-$lib/libjemalloc.so.2}"; TCMALLOC="${TCMALLOC:-$lib/libtcmalloc_minimal.so.4}"
for f in "$JEMALLOC" "$TCMALLOC"; do
  [ -f "$f" ] || { echo "missing $f: apt-get install libjemalloc2 libtcmalloc-minimal4 (scripts/setup-debian.sh test)" >&2; exit 1; }
done
printf "%-9s %10s | %9s %11s %9s %9s | %-14s %6s\n" precision "cifar100" stock "glibc-tuned" jemalloc tcmalloc \
  "fastest peer" ratio
for p in fp32 bf16; do
  o=$(ours "$p")
  t=$(theirs "$p")
  tt=$(theirs "$p" MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864)
  tj=$(theirs "$p" LD_PRELOAD="$JEMALLOC")
  tc=$(theirs "$p" LD_PRELOAD="$TCMALLOC")
  $PY - "$p" "$o" "$t" "$tt" "$tj" "$tc" <<'PY'
import sys
p, o, *peers = sys.argv[1], float(sys.argv[2]), *map(float, sys.argv[3:])
names = ["stock", "glibc-tuned", "jemalloc", "tcmalloc"]
best = max(range(4), key=lambda i: peers[i])
print(f"{p:<9} {o:10.1f} | {peers[0]:9.1f} {peers[1]:11.1f} {peers[2]:9.1f} {peers[3]:9.1f} | {names[best]:<14} "
      f"{o / peers[best]:5.2f}x   (images/s)")
PY
done
echo
fi
[ "$SKIP_LOADER" = 1 ] && exit 0
echo "loader cost (bf16): cifar100 with the loader vs on one pre-made batch, $ROUNDS interleaved rounds, medians"
declare -A runs
for round in $(seq "$ROUNDS"); do
  runs[pre]+="$(ours bf16 --set synthetic_data=true) "
  for aug in standard seed trivialaugment; do runs[$aug]+="$(ours bf16 --set augment="$aug") "; done
done
for aug in standard seed trivialaugment; do
  $PY -c "
import statistics as st, sys
w = [float(x) for x in sys.argv[2].split()]; p = [float(x) for x in sys.argv[3].split()]
mw, mp = st.median(w), st.median(p)
print(f'augment={sys.argv[1]:<15} {mw:8.1f} img/s vs {mp:8.1f} img/s pre-made: {100*(mw/mp-1):+.1f}%   '
      f'(runs: {\" \".join(f\"{x:.0f}\" for x in w)} vs {\" \".join(f\"{x:.0f}\" for x in p)})')" "$aug" "${runs[$aug]}" "${runs[pre]}"
done
