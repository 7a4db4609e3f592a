#!/bin/sh
# Copies the shared libraries the given binaries need into DEST, except the C runtime
# and the GPU driver, which the runtime image (or the NVIDIA container runtime) provides.
# Used by the Dockerfiles' build stages: the runtime stages then need no -dev packages.
# Usage: collect-libs.sh DEST BINARY...
set -eu
dest="$1"
shift
mkdir -p "${dest}"
for bin in "$@"; do
  ldd "${bin}" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
  case "$(basename "${lib}")" in
    ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libcuda.so*|libnvidia-*) ;;
    *) cp -L "${lib}" "${dest}/" ;;
  esac
done
