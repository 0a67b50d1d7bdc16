#!/usr/bin/env bash
# Builds lensd's images from a clean state with nothing but Debian's repository and the package
# registries (there is no image registry): installs docker.io and debootstrap when missing,
# starts dockerd when none runs, makes the base image lensd-debian:bookworm with
# `debootstrap --variant=minbase bookworm` and `docker import`, then builds lensd:cpu and
# lensd:cuda (deploy/docker/Dockerfile) and lensd-prometheus (Dockerfile.prometheus), and prints
# each image's size and build time. Not part of tests/run.sh (the first build compiles lensd inside
# the image: about half an hour on 2 cores); deploy/docker/smoke_test.sh runs the results.
#   bash deploy/docker/build_images.sh [--rebuild-base]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in docker.io debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
if ! as_root docker info >/dev/null 2>&1; then
  echo "build_images: starting dockerd (log: /tmp/lensd-dockerd.log)"
  as_root sh -c 'nohup dockerd >/tmp/lensd-dockerd.log 2>&1 &'
  for _ in $(seq 60); do as_root docker info >/dev/null 2>&1 && break; sleep 1; done
  as_root docker info >/dev/null
fi
docker_bin=$(command -v docker)
docker() { as_root "$docker_bin" "$@"; }

timed() {  # timed <what> <command...>: runs it, prints the seconds it took
  local start=$(date +%s)
  "${@:2}"
  echo "build_images: $1 took $(( $(date +%s) - start )) s"
}

if [ "${1:-}" = "--rebuild-base" ] || ! docker image inspect lensd-debian:bookworm >/dev/null 2>&1; then
  base=$(mktemp -d)
  make_base() {
    as_root debootstrap --variant=minbase bookworm "$base" http://deb.debian.org/debian >/dev/null
    # The updates and security suites too, as on the host.
    printf '%s\n' "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main" |
      as_root tee "$base/etc/apt/sources.list" >/dev/null
    as_root tar -C "$base" -c . | docker import - lensd-debian:bookworm >/dev/null
  }
  timed "base image (debootstrap + import)" make_base
  as_root rm -rf "$base"
fi

# The host's own certificate authorities, for the build stage's downloads (deploy/docker/Dockerfile).
mkdir -p deploy/docker/build-ca
rm -f deploy/docker/build-ca/*.crt
find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} deploy/docker/build-ca/ \; 2>/dev/null || true
touch deploy/docker/build-ca/.keep
# The classic builder: Debian 12's docker.io has no buildx for BuildKit, and the Dockerfile needs
# nothing BuildKit adds.
export DOCKER_BUILDKIT=0
timed "lensd:cpu" docker build -f deploy/docker/Dockerfile --target runtime-cpu -t lensd:cpu .
timed "lensd:cuda" docker build -f deploy/docker/Dockerfile --target runtime-cuda -t lensd:cuda .
timed "lensd-prometheus" docker build -f deploy/docker/Dockerfile.prometheus \
  -t lensd-prometheus deploy/docker
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^lensd' | sort
