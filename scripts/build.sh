#!/usr/bin/env bash
# Configures and builds cifar100 (Release, Ninja, 2 jobs by default: LibTorch translation units are large).
#
#   scripts/build.sh [--torch debian|venv] [CMAKE ARGS...]
#     --torch debian  Debian's LibTorch 1.13 (CPU only), into build-debian/
#     --torch venv    the LibTorch 2.x with CUDA inside the project venv's PyTorch wheel (scripts/setup-python.sh
#                     makes the venv), with the CUDA and NCCL code paths required, into build-cuda/
#     (no --torch)    the default LibTorch (DEFAULT_TORCH below), into its folder; build/ then links to it, so
#                     the README's build/cifar100 is the default build
#
# Compilations go through ccache when it is installed (CIFAR100_CCACHE=0 turns it off), into CCACHE_DIR (default
# .ccache/ here), with paths taken relative to this checkout: another checkout or a container build that mounts
# the same cache (scripts/image.sh --ccache) gets its objects from it.
#
# Extra arguments go to CMake's configure step. Environment: JOBS (parallel jobs), BUILD_DIR (another folder),
# TARGETS (build only these, space-separated), TORCH_PYTHON (with --torch venv: another Python whose PyTorch
# wheel to build against instead of the venv's; scripts/gpu-check.sh passes python3 on the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
# The LibTorch the README's commands use: the faster of the two on these machines (docs/BUILDING.md).
DEFAULT_TORCH=venv

torch=""
if [ "${1:-}" = "--torch" ]; then
  torch="${2:?--torch needs debian or venv}"
  shift 2
fi
link=""
if [ -z "$torch" ]; then
  torch=$DEFAULT_TORCH
  [ -n "${BUILD_DIR:-}" ] || link=build
fi
case "$torch" in
  debian) dir=build-debian ;;
  venv) dir=build-cuda ;;
  *) echo "build.sh: --torch must be debian or venv, not '$torch'" >&2; exit 2 ;;
esac
dir="${BUILD_DIR:-$dir}"

args=()
if [ "$torch" = venv ]; then
  py="${TORCH_PYTHON:-}"
  if [ -z "$py" ]; then
    venv=$(./scripts/setup-python.sh --path)
    [ -x "$venv/bin/python" ] || { echo "build.sh: no venv at $venv: run scripts/setup-python.sh first" >&2; exit 2; }
    py=$venv/bin/python
  fi
  # The wheel's torch/ directory, found without importing torch (which loads its CUDA libraries).
  torch_dir=$("$py" -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')
  args+=("-DCIFAR100_TORCH_DIR=$torch_dir" "-DCIFAR100_TORCH_PYTHON=$py" -DCIFAR100_REQUIRE_CUDA=ON)
else
  args+=("-DCIFAR100_TORCH_DIR=" -DCIFAR100_TORCH_PYTHON=/usr/bin/python3)
fi
if [ "${CIFAR100_CCACHE:-1}" != 0 ] && command -v ccache >/dev/null; then
  export CCACHE_DIR="${CCACHE_DIR:-$PWD/.ccache}" CCACHE_BASEDIR="$PWD" CCACHE_COMPILERCHECK=content
  # The precompiled header works with ccache only when its defines and time macros may be ignored; files copied
  # into a container have other times than the same files here.
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  # ccache keys objects on the locale variables too: the same everywhere.
  export LANG=C.UTF-8 LC_ALL=C.UTF-8
  unset LC_CTYPE LC_MESSAGES
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
else
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=)
fi
JOBS="${JOBS:-2}"
read -ra targets <<<"${TARGETS:-}"
build_args=(-j "$JOBS")
[ ${#targets[@]} -eq 0 ] || build_args+=(--target "${targets[@]}")
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${args[@]}" "$@" >/dev/null
cmake --build "$dir" "${build_args[@]}"
if [ -n "$link" ] && [ "$(readlink "$link" 2>/dev/null)" != "$dir" ]; then
  # A build/ folder of an earlier layout is a build tree of its own: replaced by the link.
  [ -L "$link" ] || [ ! -e "$link" ] || { echo "build.sh: replacing the folder $link/ with a link to $dir/"; rm -rf "$link"; }
  ln -sfn "$dir" "$link"
fi
