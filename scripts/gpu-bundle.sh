#!/usr/bin/env bash
# Packs, from this Debian machine, what building cifar100 needs besides LibTorch, CMake and a compiler, for a
# machine that has those but nothing else and no network (the GPU machine: PyTorch 2.x, nvcc, CMake, ninja).
# Writes .gpu-bundle/bundle.tar.xz (git-ignored), a tree rooted at usr/ as on Debian:
#   - the -dev packages' headers, link libraries and CMake/pkg-config files (CLI11, nlohmann-json, yaml-cpp,
#     fmt, libarchive, libcurl, OpenSSL, libpng, libjpeg, zlib, GoogleTest);
#   - the Boost headers the build actually includes (read from ninja's dependency log of build/) plus Boost's
#     config headers and CMake files, not all of Boost (160 MB);
#   - the shared libraries those link against, recursively, except the C and C++ runtimes.
# scripts/gpu-check.sh unpacks it on the GPU machine and builds against it with that machine's LibTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || { echo "gpu-bundle: build/ is missing: run scripts/build.sh first (its dependency log lists the Boost headers used)" >&2; exit 2; }
ARCH=x86_64-linux-gnu
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

PKGS="libcli11-dev nlohmann-json3-dev libyaml-cpp-dev libfmt-dev libarchive-dev libcurl4-openssl-dev libssl-dev
      libpng-dev libjpeg62-turbo-dev zlib1g-dev libgtest-dev libgmock-dev"
list=$STAGE/files
: >"$list"
for p in $PKGS; do
  dpkg -L "$p" >/dev/null 2>&1 || { echo "gpu-bundle: Debian package $p is not installed (scripts/setup-debian.sh)" >&2; exit 2; }
  dpkg -L "$p" | grep -E "^/usr/(include|lib/$ARCH|lib/cmake|share/cmake|share/pkgconfig|lib/$ARCH/pkgconfig)/" >>"$list" || true
done
# Boost: the headers the build includes, with its whole config/ tree and CMake package files.
{
  ninja -C build -t deps | sed -n 's|^ *\(/usr/include/boost/.*\)$|\1|p'
  find /usr/include/boost/config -type f
  find /usr/lib/$ARCH/cmake -maxdepth 1 -type d \( -name 'Boost-*' -o -name 'boost_headers-*' -o -name 'BoostDetectToolset-*' \) \
    -exec find {} -type f \;
} >>"$list"

# Shared libraries: the -dev packages' .so link targets and everything they load, minus the C/C++ runtimes.
system='^(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|ld-linux-x86-64|libresolv|libutil)\.so'
queue=$(grep -E "/usr/lib/$ARCH/lib[^/]*\.so$" "$list" | xargs -r readlink -f | sort -u)
seen=$STAGE/libs
: >"$seen"
while [ -n "$queue" ]; do
  next=""
  for lib in $queue; do
    grep -qxF "$lib" "$seen" && continue
    echo "$lib" >>"$seen"
    for dep in $(ldd "$lib" 2>/dev/null | awk '/=> \//{print $3}'); do
      base=$(basename "$dep")
      [[ $base =~ $system ]] && continue
      next="$next $(readlink -f "$dep")"
    done
  done
  queue=$(echo "$next" | tr ' ' '\n' | sed '/^$/d' | sort -u)
done
# Each library under its real name plus the soname links that point at it.
while read -r lib; do
  echo "$lib" >>"$list"
  dir=$(dirname "$lib")
  find "$dir" -maxdepth 1 -type l -lname "$(basename "$lib")" >>"$list"
  find "$dir" -maxdepth 1 -type l -name "$(objdump -p "$lib" 2>/dev/null | awk '/SONAME/{print $2}')" >>"$list" || true
done <"$seen"

mkdir -p .gpu-bundle
sort -u "$list" | sed 's|^/||' | tar -C / --no-recursion -cJf .gpu-bundle/bundle.tar.xz -T -
echo "gpu-bundle: $(sort -u "$list" | wc -l) files, $(du -h .gpu-bundle/bundle.tar.xz | cut -f1) in .gpu-bundle/bundle.tar.xz"
