#!/usr/bin/env bash
# Builds the images of docker/operator.Dockerfile and docker/worker-cpu.Dockerfile with
# `docker build` from a clean checkout (git archive: tracked files only; docker applies
# .dockerignore), then runs each image once. For machines without an image registry:
# the Debian 12 base images are made locally with debootstrap (minbase, the variant the
# official debian images use) from the mirror apt uses here, and passed in through the
# Dockerfiles' DEBIAN_IMAGE / RUNTIME_IMAGE build arguments, so no real image name is
# shadowed. The operator's runtime base (distroless cc, not made from Debian packages)
# is stood in for by an image of only libc6, libgcc-s1, libstdc++6 and the nonroot user:
# no shell and no package manager, as in distroless.
# docker/worker.Dockerfile needs NVIDIA's CUDA images and is not built here.
#
# Usage: scripts/check-dockerfiles.sh [REF]   (default HEAD; needs a running docker
# daemon and debootstrap). MOESERVE_CHECK_MIRROR overrides the Debian mirror;
# MOESERVE_CHECK_ROOTFS names an existing debootstrap of bookworm to use (it is modified).
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-HEAD}"
mirror="${MOESERVE_CHECK_MIRROR:-http://deb.debian.org/debian}"
prefix=moeserve-check
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

docker info > /dev/null || { echo "check-dockerfiles: no docker daemon" >&2; exit 1; }

have() { docker image inspect "$1" > /dev/null 2>&1; }

# A debootstrap of bookworm with the sources of the official image (debian.sources with
# updates and security), made when a base image is missing.
rootfs=""
need_rootfs() {
  [ -n "${rootfs}" ] && return
  rootfs="${MOESERVE_CHECK_ROOTFS:-${work}/rootfs}"
  if [ -z "${MOESERVE_CHECK_ROOTFS:-}" ]; then
    command -v debootstrap > /dev/null || { echo "check-dockerfiles: needs debootstrap" >&2; exit 1; }
    debootstrap --variant=minbase bookworm "${rootfs}" "${mirror}"
  fi
  rm -f "${rootfs}/etc/apt/sources.list"
  cat > "${rootfs}/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${mirror}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "${rootfs}/var/cache/apt/archives/"*.deb "${rootfs}/var/lib/apt/lists/"*
}

# Base images, made once per docker host.
if ! have "${prefix}/debian:12"; then
  need_rootfs
  tar -C "${rootfs}" -c . | docker import - "${prefix}/debian:12"
fi
have "${prefix}/debian:12-slim" || docker tag "${prefix}/debian:12" "${prefix}/debian:12-slim"
if ! have "${prefix}/distroless-cc:nonroot"; then
  # The distroless stand-in: the files of three packages and /etc/passwd, nothing else.
  need_rootfs
  cc="${work}/cc"
  mkdir -p "${cc}/etc" "${cc}/tmp"
  # Debian 12 links /lib, /lib64, /bin and /sbin into /usr; the links come first so that
  # the packages' /lib paths land in /usr/lib.
  for dir in lib lib64 bin sbin; do
    mkdir -p "${cc}/usr/${dir}"
    ln -s "usr/${dir}" "${cc}/${dir}"
  done
  for pkg in libc6 libgcc-s1 libstdc++6; do
    dpkg-query --admindir="${rootfs}/var/lib/dpkg" -L "${pkg}" | while read -r path; do
      if [ ! -d "${rootfs}${path}" ]; then
        mkdir -p "${cc}$(dirname "${path}")"
        cp -a "${rootfs}${path}" "${cc}${path}"
      fi
    done
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    > "${cc}/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "${cc}/etc/group"
  chmod 1777 "${cc}/tmp"
  tar -C "${cc}" -c . | docker import - "${prefix}/distroless-cc:nonroot"
fi

context="${work}/src"
mkdir -p "${context}"
git archive "${ref}" | tar -x -C "${context}"

build() {  # build IMAGE DOCKERFILE RUNTIME_IMAGE
  echo "== docker build -f docker/$2 (base ${prefix}/debian:12, runtime $3)"
  DOCKER_BUILDKIT=0 docker build --network host -f "${context}/docker/$2" \
    --build-arg "DEBIAN_IMAGE=${prefix}/debian:12" --build-arg "RUNTIME_IMAGE=$3" \
    -t "$1" "${context}"
}

build "${prefix}/operator" operator.Dockerfile "${prefix}/distroless-cc:nonroot"
build "${prefix}/worker-cpu" worker-cpu.Dockerfile "${prefix}/debian:12-slim"

echo "== run"
for image in operator worker-cpu; do
  user="$(docker image inspect -f '{{.Config.User}}' "${prefix}/${image}")"
  [ "${user}" = "65532:65532" ] || { echo "${image}: runs as '${user}', not 65532:65532" >&2; exit 1; }
done
docker run --rm "${prefix}/operator" --help | sed -n 1p
docker run --rm "${prefix}/worker-cpu" --help | sed -n 1p
# The worker in its own image, on the model the image ships (deploy/examples/tiny-cpu.yaml).
docker run --rm "${prefix}/worker-cpu" generate --model /opt/moeserve/models/tiny \
  --prompt-ids 1,2,3 --max-tokens 4 --json
echo "check-dockerfiles: operator and worker-cpu images build and run" \
  "(worker.Dockerfile not built: needs nvidia/cuda images)"
