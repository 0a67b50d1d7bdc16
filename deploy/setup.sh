#!/usr/bin/env bash
# Installs everything lensd needs on a fresh Debian 12 machine, idempotently.
#
#   bash deploy/setup.sh            # as root, or as a user with sudo
#
# 1. Debian packages: compilers and build tools, gRPC, protobuf, abseil, prometheus-cpp,
#    GoogleTest, nlohmann-json, SQLite, ICU, clang-format/clang-tidy and clang's libFuzzer runtime,
#    the King James Bible text package the demo model was trained on, chromium with its
#    chromedriver for the web UI's browser tests, PostgreSQL (libpq for the shared job store, the
#    server for its tests), Prometheus (promtool checks the alerting rules) and HAProxy (the
#    balancer of the multi-replica test).
# 2. A Python virtual environment in .venv (created from Debian's /usr/bin/python3), holding
#    PyTorch 2.x as the PyPI torch wheel ships it (CUDA-enabled; it runs on machines without a GPU
#    too) and the pinned reference libraries of tests/requirements.txt, every package pinned by
#    tests/requirements-lock.txt. lensd builds against that wheel's libtorch (cmake/torch.cmake);
#    the CUDA compiler and headers its CMake config asks for come from the cuda-toolkit wheels,
#    and the two unversioned links to the CUDA runtime and NVRTC that FindCUDA looks for are made
#    beside them.
#
# 3. Go 1.26+ (the machine's, else from the Go module proxy) and, built with it into .tools/bin,
#    grpcurl (for the reflection tests) and the Go client's protoc plugins; Node.js 18+ and npm
#    (the machine's, else Debian's) for the TypeScript client.
#
# 4. Abseil's sources, the version of Debian's libabsl-dev (apt-get source, with a deb-src entry
#    made from the machine's Debian sources), into .tools/abseil-cpp: the ThreadSanitizer build
#    of tests/run.sh compiles them instrumented (Debian's libabsl is not, so TSan cannot see its
#    mutexes).
#
# Re-running it does nothing that is already done.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libmicrohttpd-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libsqlite3-dev libicu-dev zlib1g-dev libssl-dev curl
  clang clang-format clang-tidy libclang-rt-14-dev
  python3-venv python3-dev
  bible-kjv
  chromium chromium-driver
  postgresql libpq-dev prometheus haproxy
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

venv="$root/.venv"
requirements="$root/tests/requirements.txt"
lock="$root/tests/requirements-lock.txt"
stamp="$venv/.requirements.sha256"
want=$(cat "$requirements" "$lock" | sha256sum | cut -d' ' -f1)
# A venv of round 1 saw Debian's torch 1.13 through --system-site-packages: make it anew.
if [ -f "$venv/pyvenv.cfg" ] && grep -q "include-system-site-packages = true" "$venv/pyvenv.cfg"; then
  echo "setup: removing $venv (it was built on Debian's system site packages)"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  /usr/bin/python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing PyTorch and the pinned reference libraries into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" -c "$lock"
  echo "$want" >"$stamp"
fi
# FindCUDA (in the torch wheel's CMake config) looks for unversioned libcudart.so and libnvrtc.so.
cuda_root=$("$venv/bin/python" "$root/cmake/torch_paths.py" | sed -n 2p)
if [ -n "$cuda_root" ]; then
  for lib in libcudart libnvrtc; do
    versioned=$(cd "$cuda_root/lib" && ls $lib.so.* 2>/dev/null | grep -v builtins | head -1)
    [ -n "$versioned" ] && ln -sfn "$versioned" "$cuda_root/lib/$lib.so"
  done
fi
# Go (for grpcurl, which the reflection tests use, and the Go client's code generator and tests):
# the machine's when it is 1.26 or newer, else the toolchain from the Go module proxy in
# .tools/go. Then grpcurl, protoc-gen-go and protoc-gen-go-grpc into .tools/bin.
go=$(command -v go || true)
[ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
[ -x "$root/.tools/go/bin/go" ] && go="$root/.tools/go/bin/go"
go_minor() { "$1" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p'; }
# deploy/validate's Kubernetes, compose and Grafana modules need Go 1.26.
if [ -z "$go" ] || [ "$(go_minor "$go")" -lt 26 ]; then
  toolchain=v0.0.1-go1.26.8.linux-amd64
  command -v curl >/dev/null && command -v unzip >/dev/null ||
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      curl unzip ca-certificates >/dev/null
  echo "setup: fetching Go ($toolchain) from the Go module proxy"
  rm -rf "$root/.tools/go" "$root/.tools/toolchain"
  mkdir -p "$root/.tools/toolchain"
  curl -fsSL "https://proxy.golang.org/golang.org/toolchain/@v/$toolchain.zip" \
    -o "$root/.tools/toolchain/go.zip"
  unzip -q "$root/.tools/toolchain/go.zip" -d "$root/.tools/toolchain"
  mv "$root/.tools/toolchain/golang.org/toolchain@$toolchain" "$root/.tools/go"
  rm -rf "$root/.tools/toolchain"
  go="$root/.tools/go/bin/go"
fi
for tool in github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 \
    google.golang.org/protobuf/cmd/protoc-gen-go@v1.35.2 \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1; do
  name=$(basename "${tool%@*}")
  if [ ! -x "$root/.tools/bin/$name" ]; then
    echo "setup: building $name with $("$go" version)"
    GOBIN="$root/.tools/bin" GOFLAGS=-mod=mod "$go" install "$tool"
  fi
done
ln -sfn "$go" "$root/.tools/bin/go"
# Node.js 18+ with npm for the TypeScript client (the machine's, else Debian's).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 18 ] || ! command -v npm >/dev/null; then
  echo "setup: installing Debian's nodejs and npm"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    nodejs npm >/dev/null
fi
# Abseil's sources for the ThreadSanitizer build.
absl_src="$root/.tools/abseil-cpp"
if [ ! -f "$absl_src/CMakeLists.txt" ]; then
  absl_version=$(dpkg-query -W -f='${Version}' libabsl-dev)
  echo "setup: fetching the sources of Debian's abseil $absl_version"
  src_list=/etc/apt/sources.list.d/lensd-deb-src.sources
  if ! apt-get source --print-uris "abseil=$absl_version" >/dev/null 2>&1; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed -n '1,/^$/p' /etc/apt/sources.list.d/debian.sources |
        sed 's/^Types: .*/Types: deb-src/' | as_root tee "$src_list" >/dev/null
    else
      grep -m1 '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
        as_root tee /etc/apt/sources.list.d/lensd-deb-src.list >/dev/null
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  fi
  download=$(mktemp -d)
  (cd "$download" && apt-get source --download-only -qq "abseil=$absl_version" >/dev/null 2>&1) || {
    echo "setup: apt-get source abseil=$absl_version failed: the machine needs a deb-src entry" >&2
    exit 1
  }
  mkdir -p "$absl_src"
  tar -xzf "$download"/abseil_*.orig.tar.gz -C "$absl_src" --strip-components=1
  rm -rf "$download"
fi
echo "setup: done"
