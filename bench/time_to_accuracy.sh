#!/usr/bin/env bash
# Time to accuracy of the CPU speedrun preset (configs/fast-cpu.yaml), cifar100 vs the same recipe in
# PyTorch (tools/reference/speedrun.py: the same network, whitening, augmentation, optimizer, schedule,
# label smoothing and TTA, in Debian's python3-torch), in one run on this machine. For each seed (SEEDS,
# default "1 2 3") it runs both trainers from a cold start; the clock is the wall time of the whole command
# (data preparation, training, validation, the final test and, for cifar100, the artifact). Each epoch's
# validation top-1 is time-stamped as its line arrives, which gives the time to reach 50, 55, 60 and 65%.
# Prints per-run lines, then docs/RESULTS.md's table: median test top-1, median wall time, median time to each
# level (over the seeds that reached it), and PyTorch's time over cifar100's.
#   PRECISION=fp32 (default; bf16 only where the CPU has it natively), THREADS=2, SKIP_PYTORCH=1,
#   PEER_SEEDS="1" (the seeds PyTorch runs, default SEEDS; its medians are over those),
#   CONFIG=configs/fast-cpu.yaml, EXTRA="--set epochs=3 ..." (passed to cifar100; PyTorch gets the same
#   values from the preset only, so keep EXTRA for quick checks)
#   bench/time_to_accuracy.sh     (needs build/cifar100 and CIFAR100_ARCHIVE, or ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${SEEDS:-1 2 3}"; CONFIG="${CONFIG:-configs/fast-cpu.yaml}"; PRECISION="${PRECISION:-fp32}"
THREADS="${THREADS:-2}"; SKIP_PYTORCH="${SKIP_PYTORCH:-0}"; EXTRA="${EXTRA:-}"; PEER_SEEDS="${PEER_SEEDS:-$SEEDS}"
[ "$SKIP_PYTORCH" = 1 ] && PEER_SEEDS=""
for s in $PEER_SEEDS; do
  [[ " $SEEDS " == *" $s "* ]] || { echo "PEER_SEEDS: seed $s is not in SEEDS ($SEEDS); PyTorch runs a subset of them" >&2; exit 2; }
done
if [ -z "${CIFAR100_ARCHIVE:-}" ] && [ -f ../shared/data/cifar-100-binary.tar.gz ]; then
  CIFAR100_ARCHIVE="$(cd ../shared/data && pwd)/cifar-100-binary.tar.gz"
  export CIFAR100_ARCHIVE
fi
PY=/usr/bin/python3
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cifar100/cifar-100-binary"
DATA_DIR="${CIFAR100_DATA_DIR:-$cache}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# Prefixes each line of stdin with the seconds since $1 (an epoch timestamp).
stamp() { $PY -u -c 'import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin:
    print(f"{time.time() - t0:.2f}\t{line}", end="", flush=True)' "$1"; }

since() { $PY -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.2f}")' "$1"; }

# The PyTorch peer's arguments, from the preset.
peer_args() {
  $PY - "$CONFIG" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
m = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "lr_reference_batch": "--lr-reference-batch",
     "lr_schedule": "--lr-schedule", "warmup_epochs": "--warmup-epochs", "min_lr": "--min-lr",
     "weight_decay": "--weight-decay", "label_smoothing": "--label-smoothing", "widths": "--widths", "tta": "--tta",
     "val_size": "--val-size", "conv_init": "--conv-init"}
print(" ".join(f"{flag} {c[k]}" for k, flag in m.items() if k in c))
PY
}

echo "$CONFIG, $PRECISION, $THREADS threads ($(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')), seeds: $SEEDS, PyTorch seeds: ${PEER_SEEDS:-none}"
# The data set is extracted once before the clock starts for either side (both read the extracted files).
./build/cifar100 data download >/dev/null 2>&1 || ./build/cifar100 data download
for seed in $SEEDS; do
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  ./build/cifar100 train --config "$CONFIG" --out "$tmp/ours-$seed" --resume none --overwrite --set seed="$seed" \
    --set precision="$PRECISION" --set threads="$THREADS" $EXTRA 2>&1 | stamp "$t0" >"$tmp/ours-$seed.log"
  since "$t0" >"$tmp/ours-$seed.wall"
  cp "$tmp/ours-$seed/results.json" "$tmp/ours-$seed.results"
  rm -rf "$tmp/ours-$seed"
  if [[ " $PEER_SEEDS " == *" $seed "* ]]; then
    t0=$(date +%s.%N)
    # shellcheck disable=SC2046
    $PY -u tools/reference/speedrun.py --data-dir "$DATA_DIR" --seed "$seed" --precision "$PRECISION" \
      --threads "$THREADS" $(peer_args) 2>&1 | stamp "$t0" >"$tmp/torch-$seed.log"
    since "$t0" >"$tmp/torch-$seed.wall"
  fi
done

$PY - "$tmp" "$SEEDS" "$PEER_SEEDS" <<'PY'
import json, os, re, statistics, sys
tmp, seeds, peer_seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
levels = [0.50, 0.55, 0.60, 0.65]

def ours(seed):
    curve = []
    for line in open(f"{tmp}/ours-{seed}.log"):
        t, _, text = line.partition("\t")
        m = re.search(r"epoch=(\d+);.* val_top1=([0-9.]+);", text)
        if m:
            curve.append((float(t), float(m.group(2))))
    top1 = json.load(open(f"{tmp}/ours-{seed}.results"))["test_top1"]
    return curve, top1, float(open(f"{tmp}/ours-{seed}.wall").read())

def theirs(seed):
    if not os.path.exists(f"{tmp}/torch-{seed}.log"):
        return None
    curve, top1 = [], None
    for line in open(f"{tmp}/torch-{seed}.log"):
        t, _, text = line.partition("\t")
        try:
            j = json.loads(text)
        except ValueError:
            continue
        if j.get("final"):
            top1 = j["test_top1"] / 100
        elif j.get("val_top1") is not None:
            curve.append((float(t), j["val_top1"] / 100))
    return curve, top1, float(open(f"{tmp}/torch-{seed}.wall").read())

def reach(curve, level):
    return next((t for t, v in curve if v >= level), None)

rows = {"cifar100": [ours(s) for s in seeds]}
run_seeds = {"cifar100": seeds, "PyTorch": peer_seeds}
if peer_seeds:
    rows["PyTorch"] = [theirs(s) for s in peer_seeds]
for name, runs in rows.items():
    for s, (curve, top1, wall) in zip(run_seeds[name], runs):
        vals = " ".join(f"{v * 100:.1f}%@{t:.0f}s" for t, v in curve)
        print(f"{name:<9} seed {s}: test top-1 {top1 * 100:.2f}%, wall {wall:.0f} s; val: {vals}")

def med_reach(runs, level):
    ts = [reach(c, level) for c, _, _ in runs]
    got = [t for t in ts if t is not None]
    return (statistics.median(got) if got else None), len(got)

print()
print("| trainer | median test top-1 | median wall time | " + " | ".join(f"time to {int(l * 100)}% val" for l in levels) + " |")
print("|---|---|---|" + "---|" * len(levels))
for name, runs in rows.items():
    cells = []
    for l in levels:
        t, n = med_reach(runs, l)
        cells.append("not reached" if t is None else f"{t:.0f} s" + ("" if n == len(runs) else f" ({n}/{len(runs)} seeds)"))
    print(f"| {name} | {statistics.median(r[1] for r in runs) * 100:.2f}% | {statistics.median(r[2] for r in runs):.0f} s | "
          + " | ".join(cells) + " |")
common = [s for s in seeds if s in peer_seeds]
if common:  # the ratios pair the runs of the seeds both trainers ran
    ours_c = [r for s, r in zip(seeds, rows["cifar100"]) if s in common]
    theirs_c = [r for s, r in zip(peer_seeds, rows["PyTorch"]) if s in common]
    on = f"seed{'s' if len(common) > 1 else ''} {' '.join(common)}"
    walls = statistics.median(r[2] for r in theirs_c) / statistics.median(r[2] for r in ours_c)
    print(f"\nPyTorch / cifar100, median wall time of the same recipe ({on}): {walls:.2f}x")
    for l in levels:
        a, _ = med_reach(ours_c, l)
        b, _ = med_reach(theirs_c, l)
        if a and b:
            print(f"PyTorch / cifar100, median time to {int(l * 100)}% val ({on}): {b / a:.2f}x")
PY
