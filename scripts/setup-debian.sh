#!/usr/bin/env bash
# Installs the Debian packages that building, testing and benchmarking cifar100 need.
# Idempotent: packages already present are skipped; safe to run on every CI start.
#
#   setup-debian.sh                      everything (build, test, container): what the README's commands need
#   setup-debian.sh build                only what compiling the binary needs (the image's build stage)
#   setup-debian.sh build --external-torch   the same without Debian's LibTorch, with python3-venv instead (the
#                                        CUDA build uses the LibTorch of the venv's PyTorch wheel; Gloo's headers,
#                                        which that wheel lacks, still come from libgloo-dev)
#   setup-debian.sh ... NAME=VERSION     pins a package of the chosen groups to a version
set -euo pipefail

BUILD=(
  build-essential cmake ninja-build pkg-config git ca-certificates ccache
  libtorch-dev libgloo-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libarchive-dev libssl-dev libcurl4-openssl-dev
  libpng-dev libjpeg-dev libboost-dev
)
TEST=(
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-venv python3-torch python3-torchvision python3-numpy python3-pil python3-botocore python3-onnx python3-protobuf python3-yaml awscli jq
  shellcheck
  chromium wrk curl libjemalloc2 libtcmalloc-minimal4
)
# Building and running the container images in the tests (see ../shared/CONTAINERS.md).
CONTAINER=(podman runc mmdebstrap uidmap)

groups=()
pins=()
external_torch=0
for arg in "$@"; do
  case "$arg" in
    build|test|container) groups+=("$arg") ;;
    --external-torch) external_torch=1 ;;
    *=*) pins+=("$arg") ;;
    *) echo "setup-debian: unknown argument '$arg' (groups: build, test, container; --external-torch; NAME=VERSION)" >&2
       exit 2 ;;
  esac
done
[ ${#groups[@]} -gt 0 ] || groups=(build test container)

PACKAGES=()
for g in "${groups[@]}"; do
  case "$g" in
    build) PACKAGES+=("${BUILD[@]}") ;;
    test) PACKAGES+=("${TEST[@]}") ;;
    container) PACKAGES+=("${CONTAINER[@]}") ;;
  esac
done
if [ "$external_torch" = 1 ]; then
  kept=()
  for p in "${PACKAGES[@]}"; do [[ "$p" == libtorch-dev ]] || kept+=("$p"); done
  PACKAGES=("${kept[@]}" python3-venv)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  want="$p"
  for pin in "${pins[@]+"${pins[@]}"}"; do [ "${pin%%=*}" = "$p" ] && want="$pin"; done
  have=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
  if [[ "$have" != "install ok installed"* ]] || { [ "$want" != "$p" ] && [ "${have##* }" != "${want#*=}" ]; }; then
    missing+=("$want")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-debian: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup-debian: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
