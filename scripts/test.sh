#!/usr/bin/env bash
# The test command: installs the Debian packages and the project's Python environment, builds cifar100 against
# both LibTorch flavours, and runs the test suite with ctest:
#   1. the default build (build/, a link to build-cuda/: the wheel's LibTorch 2.x with CUDA, run on the CPU):
#      every test except those labelled `precision`, which then run twice, with precision=auto forced to fp32
#      and to bf16 (CIFAR100_AUTO_PRECISION), so that every CPU checks what the others would compute;
#   2. the other build (build-debian/, Debian's LibTorch 1.13): the unit tests and the short training, resume,
#      serve and command-line integration tests.
# Every stage runs even when an earlier one failed; the exit status is non-zero if any failed. Extra arguments go
# to the ctest of stage 1 (e.g. -R integration.train).
# The real-data test uses CIFAR100_ARCHIVE, defaulting to ../shared/data/cifar-100-binary.tar.gz when
# that copy exists; set CIFAR100_REQUIRE_REAL=1 to make a missing archive a failure (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
stamp() { echo "test.sh: $1 done at $((SECONDS - t0)) s"; }
./scripts/setup-debian.sh
./scripts/setup-python.sh
stamp "setup"
./scripts/build.sh
stamp "the default build (build/ -> $(readlink build))"
./scripts/build.sh --torch debian
stamp "the Debian LibTorch build (build-debian/)"
if [ -z "${CIFAR100_ARCHIVE:-}" ] && [ -f ../shared/data/cifar-100-binary.tar.gz ]; then
  CIFAR100_ARCHIVE="$(cd ../shared/data && pwd)/cifar-100-binary.tar.gz"
fi
export CIFAR100_ARCHIVE="${CIFAR100_ARCHIVE:-}"

failed=()
suite() {  # NAME CTEST-ARGS...: one ctest run, recorded
  local name=$1
  shift
  echo "test.sh: === $name"
  ctest --output-on-failure --timeout 1500 "$@" || failed+=("$name")
  stamp "$name"
}
suite "build/: all but the precision-sensitive tests" --test-dir build -LE precision "$@"
for p in fp32 bf16; do
  CIFAR100_AUTO_PRECISION=$p suite "build/: precision-sensitive tests, auto = $p" --test-dir build -L precision
done
suite "build-debian/: unit tests" --test-dir build-debian -L unit
suite "build-debian/: short integration" --test-dir build-debian -R '^integration\.(cli|train|resume|serve)$'

if [ ${#failed[@]} -gt 0 ]; then
  printf 'test.sh: FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "test.sh: all passed in $((SECONDS - t0)) s"
