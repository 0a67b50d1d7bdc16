#!/usr/bin/env bash
# The README examples of the Python, Go and TypeScript clients against one lensd (the demo model
# and its tuned lens, auth on): each prints the per-layer top-1 tokens of the same prompt and a
# generation read out at layer 3; the three outputs must be identical. Run by CTest after the
# clients' own tests (which install the Python package and build the TypeScript one).
#   bash clients/examples_agree.sh <lensd binary> <python with the lensd package importable>
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lensd=$1
python=$2
prompt="And God said, Let there be light: and there was"
source "$root/deploy/lensd_server.sh"
lensd_start "$lensd" read --model_repository="$root/deploy/models" --models=kjv-gpt2 \
  --lenses=kjv-gpt2/tuned
work=$lensd_work
"$python" "$root/clients/python/examples/top1.py" tuned "$prompt" > "$work/python.txt"
(cd "$root/clients/go" && GOFLAGS=-mod=mod go run ./example -lens tuned "$prompt") > "$work/go.txt"
node "$root/clients/typescript/dist/example/example.js" tuned "$prompt" > "$work/typescript.txt"
cat "$work/python.txt"
diff -u "$work/python.txt" "$work/go.txt"
diff -u "$work/python.txt" "$work/typescript.txt"
echo "the Python, Go and TypeScript examples print the same $(wc -l < "$work/python.txt") lines"
