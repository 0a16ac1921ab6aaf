#!/usr/bin/env bash
# Creates the project's Python environment, .venv/ (or $CIFAR100_VENV), from Debian's python3, with the packages
# of tools/python/requirements.txt at exactly the versions of tools/python/constraints.txt: PyTorch 2.x (whose
# LibTorch with CUDA build-cuda/ compiles against), the CUDA 13.2 wheels it pulls in plus nvcc, onnxruntime,
# tensorboard, huggingface_hub, boto3 and moto's S3 server. About 6 GB on disk (the nvidia-* CUDA wheels 3.3 GB,
# torch 1.2 GB, triton 1.0 GB); two to three minutes on a fresh machine. Idempotent: it does nothing when the
# environment already matches. Python never runs inside cifar100; the venv serves the CUDA build, the tests and
# the benchmarks.
#
#   setup-python.sh               create or update the environment; then check it holds exactly the constraints
#   setup-python.sh --build-only  only what build-cuda/ needs (torch and nvcc, 4.7 GB): the CUDA image's build stage
#   setup-python.sh --path        print the environment's directory (for other scripts)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="${CIFAR100_VENV:-$ROOT/.venv}"
REQ="$ROOT/tools/python/requirements.txt"
CON="$ROOT/tools/python/constraints.txt"
STAMP="$VENV/.cifar100-requirements"

mode=all
case "${1:-}" in
  --path) echo "$VENV"; exit 0 ;;
  --build-only) mode=build ;;
  "") ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup-python: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

want="$mode $(cat "$REQ" "$CON" | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && { [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] ||
   { [ "$mode" = build ] && [ "$(cat "$STAMP" 2>/dev/null)" = "all ${want#build }" ]; }; }; then
  echo "setup-python: $VENV matches $(basename "$REQ") and $(basename "$CON")"
  exit 0
fi

# Debian's interpreter, never a pyenv or other python earlier on PATH: the venv must outlive this shell.
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "setup-python: installing Debian's python3-venv"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv
fi
t0=$SECONDS
[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
rm -f "$STAMP"
# The direct requirements, or for --build-only the two the CUDA build needs (torch's and nvcc's lines).
reqs=("-r" "$REQ")
if [ "$mode" = build ]; then
  mapfile -t reqs < <(grep -E '^(torch|cuda-toolkit)[=[]' "$REQ")
fi
# PIP_FIND_LINKS and similar settings of this machine must not bring packages the files do not name.
PIP_FIND_LINKS="" "$VENV/bin/pip" install --no-input --disable-pip-version-check -q -c "$CON" "${reqs[@]}"

# Exactly the constraints: no package at another version, none unpinned; with everything, none missing.
normalise() { sed 's/[[:space:]]*#.*//; /^$/d' | tr 'A-Z_' 'a-z-' | sort; }
pinned=$(grep -E '^[A-Za-z0-9]' "$CON" | normalise)
have=$("$VENV/bin/pip" freeze --all --disable-pip-version-check | grep -viE '^pip==' | normalise)
unpinned=$(comm -13 <(echo "$pinned") <(echo "$have"))
missing=$(comm -23 <(echo "$pinned") <(echo "$have"))
if [ -n "$unpinned" ] || { [ "$mode" = all ] && [ -n "$missing" ]; }; then
  echo "setup-python: $VENV differs from $CON" >&2
  [ -z "$unpinned" ] || printf 'installed but not pinned there:\n%s\n' "$unpinned" >&2
  [ "$mode" = build ] || [ -z "$missing" ] || printf 'pinned there but not installed:\n%s\n' "$missing" >&2
  exit 1
fi
echo "$want" >"$STAMP"
echo "setup-python: $VENV ready ($mode: $(echo "$have" | wc -l) packages, $(du -sh "$VENV" | cut -f1), $((SECONDS - t0)) s)"
