#!/usr/bin/env bash
# The main job: installs the Debian packages and the project's Python environment (whose PyTorch wheel carries
# the default LibTorch), builds, and trains the CPU speedrun preset (configs/fast-cpu.yaml:
# the best model this program trains in 10 minutes on 2 cores) on the real data
# (downloading the official archive, or extracting CIFAR100_ARCHIVE, which defaults to
# ../shared/data/cifar-100-binary.tar.gz when that copy exists). Extra arguments go to `cifar100 train`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
./scripts/setup-python.sh
./scripts/build.sh
if [ -z "${CIFAR100_ARCHIVE:-}" ] && [ -f ../shared/data/cifar-100-binary.tar.gz ]; then
  CIFAR100_ARCHIVE="$(cd ../shared/data && pwd)/cifar-100-binary.tar.gz"
  export CIFAR100_ARCHIVE
fi
exec ./build/cifar100 train --config configs/fast-cpu.yaml --out "${OUT:-runs/fast-cpu}" --resume none --overwrite "$@"
