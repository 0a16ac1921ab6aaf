#!/usr/bin/env bash
# Configures and builds cifar100 into build/ (Release, Ninja, 2 jobs by default: LibTorch translation
# units are large). Extra arguments go to CMake's configure step, e.g. -DTorch_DIR=... for a CUDA LibTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$JOBS"
