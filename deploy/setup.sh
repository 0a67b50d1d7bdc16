#!/usr/bin/env bash
# Installs everything lensd needs on a fresh Debian 12 machine, idempotently.
#
#   bash deploy/setup.sh            # as root, or as a user with sudo
#
# 1. Debian packages: compilers and build tools, libtorch 1.13 (CPU), gRPC, protobuf, abseil,
#    prometheus-cpp, GoogleTest, nlohmann-json, SQLite, ICU, OpenBLAS (pthread build; Debian's
#    reference BLAS is ~20x slower), clang-format/clang-tidy and clang's libFuzzer runtime, and the
#    King James Bible text package the demo model was trained on.
# 2. A Python virtual environment in .venv (created from /usr/bin/python3 with
#    --system-site-packages so that it uses Debian's python3-torch 1.13 rather than a multi-GB PyPI
#    torch with CUDA), holding the pinned reference libraries of tests/requirements.txt (and,
#    without their declared dependencies, tests/requirements-nodeps.txt).
#
# 3. Go 1.23+ (the machine's, else from the Go module proxy) and, built with it into .tools/bin,
#    grpcurl (for the reflection tests) and the Go client's protoc plugins; Node.js 18+ and npm
#    (the machine's, else Debian's) for the TypeScript client.
#
# Re-running it does nothing that is already done.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libsqlite3-dev libicu-dev zlib1g-dev libssl-dev curl
  clang clang-format clang-tidy libclang-rt-14-dev
  python3-venv python3-dev python3-torch python3-numpy
  bible-kjv
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

# Debian's libtorch links libblas.so.3 through the alternatives system; make sure OpenBLAS wins.
blas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
if [ -e "$blas" ] && [ "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)" != "$(readlink -f "$blas")" ]; then
  as_root update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas"
fi

venv="$root/.venv"
requirements="$root/tests/requirements.txt"
nodeps="$root/tests/requirements-nodeps.txt"
stamp="$venv/.requirements.sha256"
want=$(cat "$requirements" "$nodeps" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned reference libraries into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$nodeps"
  echo "$want" >"$stamp"
fi
# Go (for grpcurl, which the reflection tests use, and the Go client's code generator and tests):
# the machine's when it is 1.23 or newer, else the toolchain from the Go module proxy in
# .tools/go. Then grpcurl, protoc-gen-go and protoc-gen-go-grpc into .tools/bin.
go=$(command -v go || true)
[ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
[ -x "$root/.tools/go/bin/go" ] && go="$root/.tools/go/bin/go"
go_minor() { "$1" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p'; }
if [ -z "$go" ] || [ "$(go_minor "$go")" -lt 23 ]; then
  toolchain=v0.0.1-go1.23.4.linux-amd64
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
echo "setup: done"
