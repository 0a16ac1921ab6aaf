#!/usr/bin/env bash
# Prints `package=version` for every Debian/Ubuntu package that holds a shared library BINARY links
# directly (its NEEDED entries), so that an image's runtime stage installs exactly the versions the
# binary was built against (apt brings their own dependencies). Libraries that no package owns (a
# LibTorch unpacked from a zip) are listed on stderr; the Dockerfile copies those itself.
set -euo pipefail
bin="${1:?usage: runtime-packages.sh BINARY}"
declare -A seen=()
while read -r soname path; do
  pkg=""
  for p in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr${path}"; do
    pkg=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$pkg" ] && break
  done
  if [ -z "$pkg" ]; then
    echo "runtime-packages: $soname ($path) belongs to no package" >&2
    continue
  fi
  [ -n "${seen[$pkg]:-}" ] && continue
  seen[$pkg]=1
  echo "$pkg=$(dpkg-query -W -f='${Version}' "$pkg")"
done < <(
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  ldd "$bin" | while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    grep -qxF "$name" <<<"$needed" && echo "$name $path"
  done
) | sort
