#!/usr/bin/env bash
# Augmentation throughput per core, cifar100 vs torchvision on PIL images (Debian's python3-torchvision),
# in one run, the same pipelines on both sides: crop+flip, the seed's pipeline, and crop+flip followed by
# TrivialAugmentWide, AutoAugment (CIFAR-10 policy) or RandAugment(2, 9); each ends in a normalised float image. Uses the real training images from CIFAR100_DATA_DIR when present.
#   bench/augment_throughput.sh [SECONDS_PER_PIPELINE]     (needs build/bench/augment_throughput)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-3}"
ours="$(taskset -c 0 ./build/bench/augment_throughput "$SECONDS_EACH")"
theirs="$(taskset -c 0 /usr/bin/python3 tools/reference/bench_augment.py "$SECONDS_EACH")"
/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import sys
ours = dict(l.split() for l in sys.argv[1].splitlines())
theirs = dict(l.split() for l in sys.argv[2].splitlines())
print(f"{'pipeline':16s} {'cifar100 img/s':>15s} {'torchvision img/s':>18s} {'ratio':>8s}   (one core)")
for k in ours:
    o, t = float(ours[k]), float(theirs[k])
    print(f"{k:16s} {o:15.0f} {t:18.0f} {o / t:7.1f}x")
PY
