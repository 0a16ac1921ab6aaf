#!/usr/bin/env bash
# Copies into DEST the shared libraries of the PyTorch wheels (torch/lib and nvidia/*/lib of SITE_PACKAGES) that
# BINARY loads, keeping the wheels' layout, DEST/torch/lib and DEST/nvidia/<name>/lib, where libtorch's run path
# ($ORIGIN/../../nvidia/<name>/lib) finds them: every library in BINARY's dependency closure that lies in the
# wheels, and those that are opened with dlopen on a GPU (cuDNN's engine libraries, NVRTC's builtins). The CUDA
# image's runtime stage gets only these, not the wheels' Python code, headers or static libraries.
#   docker/wheel-libs.sh BINARY SITE_PACKAGES DEST
set -euo pipefail
bin="${1:?usage: wheel-libs.sh BINARY SITE_PACKAGES DEST}"
site=$(cd "${2:?usage: wheel-libs.sh BINARY SITE_PACKAGES DEST}" && pwd)
dest="${3:?usage: wheel-libs.sh BINARY SITE_PACKAGES DEST}"
dirs=$(find "$site/torch/lib" "$site"/nvidia/*/lib -maxdepth 0 -type d | paste -sd:)
# The closure, resolved in the wheels (the binary's own run path may name where the libraries will be, not where
# they are now).
mapfile -t libs < <(LD_LIBRARY_PATH="$dirs" ldd "$bin" | awk -v s="$site/" '$3 ~ "^"s {print $3}')
[ ${#libs[@]} -gt 0 ] || { echo "wheel-libs: $bin loads nothing from $site" >&2; exit 1; }
missing=$(LD_LIBRARY_PATH="$dirs" ldd "$bin" | grep 'not found' || true)
[ -z "$missing" ] || { echo "wheel-libs: unresolved libraries of $bin:"$'\n'"$missing" >&2; exit 1; }
# Opened at run time with dlopen, by name, on a GPU only.
shopt -s nullglob
libs+=("$site"/nvidia/cudnn/lib/libcudnn*.so.* "$site"/nvidia/cu*/lib/libnvrtc-builtins.so.*)
for lib in "${libs[@]}"; do
  rel=${lib#"$site"/}
  mkdir -p "$dest/$(dirname "$rel")"
  cp -L "$lib" "$dest/$rel"
done
echo "wheel-libs: ${#libs[@]} libraries, $(du -sh "$dest" | cut -f1), in $dest" >&2
