#!/usr/bin/env bash
# Regenerates lensdpb/ from ../../proto with protoc and the Go plugins that deploy/setup.sh
# installs into .tools/bin (protoc-gen-go v1.35.2, protoc-gen-go-grpc v1.5.1). The generated
# files are committed so that `go get` users need no protoc; clients/go's tests check they match.
#   bash clients/go/generate.sh [output folder, default clients/go]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here}
export PATH="$root/.tools/bin:$PATH"
mkdir -p "$out/lensdpb"
protoc -I "$root/proto" \
  --go_out="$out" --go_opt=module=github.com/lensd/lensd/clients/go \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/lensd/lensd/clients/go \
  "$root"/proto/lensd/v1/*.proto
