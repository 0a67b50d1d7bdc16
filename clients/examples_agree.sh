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
work=$(mktemp -d)
token_output=$("$lensd" token --tenant=examples --role=read)
export LENSD_TOKEN=$(sed -n 's/^token: //p' <<<"$token_output")
sed -n 's/^tokens file line: //p' <<<"$token_output" > "$work/tokens.txt"
"$lensd" --model_repository="$root/deploy/models" --models=kjv-gpt2 --lenses=kjv-gpt2/tuned \
  --tokens_file="$work/tokens.txt" --address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --port_file="$work/port.json" --state_dir="$work/state" --log_requests=false \
  2> "$work/lensd.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 300); do
  [ -s "$work/port.json" ] && grep -q "serving" "$work/lensd.log" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/lensd.log"; exit 1; }
  sleep 0.1
done
export LENSD_ADDRESS=127.0.0.1:$(sed -n 's/.*"port": \([0-9]*\),.*/\1/p' "$work/port.json")
"$python" "$root/clients/python/examples/top1.py" tuned "$prompt" > "$work/python.txt"
(cd "$root/clients/go" && GOFLAGS=-mod=mod go run ./example -lens tuned "$prompt") > "$work/go.txt"
node "$root/clients/typescript/dist/example/example.js" tuned "$prompt" > "$work/typescript.txt"
cat "$work/python.txt"
diff -u "$work/python.txt" "$work/go.txt"
diff -u "$work/python.txt" "$work/typescript.txt"
echo "the Python, Go and TypeScript examples print the same $(wc -l < "$work/python.txt") lines"
