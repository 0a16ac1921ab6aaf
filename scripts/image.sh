#!/usr/bin/env bash
# Builds and tags the cifar100 container image (docker/Dockerfile, or docker/Dockerfile.cuda with --cuda)
# with docker, or with podman where there is no Docker engine.
#
#   scripts/image.sh [--cuda] [--tag NAME] [--local-base] [--ccache DIR] [-- EXTRA BUILD ARGS]
#     --tag NAME     image name (default cifar100:cpu, or cifar100:cuda)
#     --ccache DIR   (podman) compile through this ccache directory, mounted into the build stage: a checkout's
#                    .ccache/ after scripts/build.sh turns the image's compilation into cache hits
#     --local-base   with podman and no registry: make debian:bookworm-slim from this machine's Debian
#                    packages (mmdebstrap) when it is missing
# Prints the image's name and size at the end. Environment: ENGINE=docker|podman to choose the tool.
set -euo pipefail
cd "$(dirname "$0")/.."

file=docker/Dockerfile
tag=""
local_base=0
ccache_dir=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) file=docker/Dockerfile.cuda ;;
    --tag) tag="${2:?--tag needs a name}"; shift ;;
    --local-base) local_base=1 ;;
    --ccache) ccache_dir="${2:?--ccache needs a directory}"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$tag" ] || tag=$([ "$file" = docker/Dockerfile ] && echo cifar100:cpu || echo cifar100:cuda)

engine="${ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  else echo "image.sh: neither a Docker engine nor podman is available" >&2; exit 1; fi
fi

args=(build -f "$file" -t "$tag")
# The build stage's scripts/build.sh uses /src/.ccache (the build context never holds one: .dockerignore).
# The CUDA image's build installs wheels from PyPI: where this machine's pip trusts its own CA bundle (a proxy
# that intercepts TLS), podman's build gets the same bundle.
if [ "$file" = docker/Dockerfile.cuda ] && [ "$engine" = podman ]; then
  cert="${PIP_CERT:-$(pip config get global.cert 2>/dev/null || true)}"
  [ -z "$cert" ] || [ ! -r "$cert" ] || args+=(-v "$cert:/etc/cifar100-build-ca.crt:ro" --build-arg PIP_CERT=/etc/cifar100-build-ca.crt)
fi
if [ -n "$ccache_dir" ]; then
  [ "$engine" = podman ] || { echo "image.sh: --ccache needs podman (docker build cannot mount a directory)" >&2; exit 2; }
  mkdir -p "$ccache_dir"
  args+=(-v "$(cd "$ccache_dir" && pwd):/src/.ccache")
fi
if [ "$engine" = podman ]; then
  # apt inside RUN steps needs the host's network; a locally made base image must not be pulled over.
  args+=(--network host)
  if [ "$local_base" = 1 ] && ! podman image exists docker.io/library/debian:bookworm-slim; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "image.sh: making debian:bookworm-slim locally with mmdebstrap"
    mmdebstrap --variant=minbase --quiet bookworm "$tmp/rootfs.tar"
    podman import "$tmp/rootfs.tar" docker.io/library/debian:bookworm-slim >/dev/null
  fi
  if podman image exists docker.io/library/debian:bookworm-slim; then
    args+=(--pull=never)
  fi
fi
"$engine" "${args[@]}" "${extra[@]+"${extra[@]}"}" .
size=$("$engine" image inspect --format '{{.Size}}' "$tag")
echo "image.sh: built $tag with $engine from $file: $((size / 1000000)) MB"
