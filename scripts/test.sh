#!/usr/bin/env bash
# The test command: installs the Debian packages (and s3rver from npm), builds, and runs the whole test suite
# with ctest.
# The real-data test uses CIFAR100_ARCHIVE, defaulting to ../shared/data/cifar-100-binary.tar.gz when
# that copy exists; set CIFAR100_REQUIRE_REAL=1 to make a missing archive a failure (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-debian.sh
./scripts/setup-npm.sh
./scripts/build.sh
if [ -z "${CIFAR100_ARCHIVE:-}" ] && [ -f ../shared/data/cifar-100-binary.tar.gz ]; then
  CIFAR100_ARCHIVE="$(cd ../shared/data && pwd)/cifar-100-binary.tar.gz"
fi
export CIFAR100_ARCHIVE="${CIFAR100_ARCHIVE:-}"
ctest --test-dir build --output-on-failure --timeout 1500 "$@"
