#!/usr/bin/env bash
# Builds the release library and installs it under PREFIX:
#   lib/libpatchrec.so.<abi>.<version>, with the links lib/libpatchrec.so.<abi> (its
#     SONAME, what programs load) and lib/libpatchrec.so (what -lpatchrec links)
#   lib/libpatchrec.a
#   include/patchrec.h, include/patchrec.hpp
#   lib/pkgconfig/patchrec.pc
#   lib/cmake/patchrec/patchrecConfig.cmake, patchrecConfigVersion.cmake
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"
cd "$root"

# The library package alone: the command line's crate is not needed to install it.
cargo build --release -p patchrec
target="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
pkgid="$(cargo pkgid -p patchrec)"
version="${pkgid##*[#@]}"

library="$target/release/libpatchrec.so"

# The SONAME build.rs gave the library (libpatchrec.so.<PATCHREC_ABI_VERSION>): the links
# must carry the name the loader will look for, so it is read from the file itself.
soname="$(readelf -d "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')"
case "$soname" in
  libpatchrec.so.[0-9]*) ;;
  *)
    echo "$library has no SONAME libpatchrec.so.<abi> (got '$soname'); see build.rs" >&2
    exit 1
    ;;
esac
real="$soname.$version"

install -D -m 755 "$library" "$prefix/lib/$real"
ln -sfn "$real" "$prefix/lib/$soname"
ln -sfn "$soname" "$prefix/lib/libpatchrec.so"
install -D -m 644 "$target/release/libpatchrec.a" "$prefix/lib/libpatchrec.a"
install -D -m 644 include/patchrec.h "$prefix/include/patchrec.h"
install -D -m 644 include/patchrec.hpp "$prefix/include/patchrec.hpp"
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/patchrec"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" patchrec.pc.in >"$prefix/lib/pkgconfig/patchrec.pc"
sed -e "s|@PATCHREC_LIBRARY@|$real|" -e "s|@PATCHREC_SONAME@|$soname|" cmake/patchrecConfig.cmake.in \
  >"$prefix/lib/cmake/patchrec/patchrecConfig.cmake"
sed -e "s|@PATCHREC_VERSION@|$version|" cmake/patchrecConfigVersion.cmake.in \
  >"$prefix/lib/cmake/patchrec/patchrecConfigVersion.cmake"
echo "installed libpatchrec $version ($soname) into $prefix"
