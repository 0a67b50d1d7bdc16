#!/usr/bin/env bash
# The demo: installs what is missing, builds lensd and lensctl, starts lensd on the embedded demo
# model deploy/models/kjv-gpt2 and its tuned lens (trained by lensd itself,
# deploy/training/train_demo_lens.sh) with auth on (a fresh admin token), and calls it with
# lensctl: the per-layer decoding of a prompt through the logit lens and through the tuned lens,
# both lenses side by side, then generations read out at layer 3 of 6 through each. The server is
# stopped cleanly at the end.
#   bash deploy/demo.sh ["your prompt"]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
prompt=${1:-"And God said, Let there be light: and there was"}
bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build lensd lensctl

work=$(mktemp -d)
token_output=$(./build/server/lensd token --tenant=demo --role=admin)
export LENSD_TOKEN=$(sed -n 's/^token: //p' <<<"$token_output")
sed -n 's/^tokens file line: //p' <<<"$token_output" > "$work/tokens.txt"

./build/server/lensd --model_repository=deploy/models --models=kjv-gpt2 --lenses=kjv-gpt2/tuned \
  --tokens_file="$work/tokens.txt" --address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --port_file="$work/port.json" --state_dir="$work/state" --log_requests=false 2> "$work/lensd.log" &
server=$!
stop() {
  kill -TERM "$server" 2>/dev/null && wait "$server" || true
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 300); do
  [ -s "$work/port.json" ] && grep -q "serving" "$work/lensd.log" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/lensd.log"; exit 1; }
  sleep 0.1
done
port=$(sed -n 's/.*"port": \([0-9]*\),.*/\1/p' "$work/port.json")
export LENSD_ADDRESS=127.0.0.1:$port
echo
echo "lensd is serving on $LENSD_ADDRESS with auth on:"
./build/clients/cli/lensctl models
echo
echo "Per-layer decoding through the logit lens:"
./build/clients/cli/lensctl decode --lens logit "$prompt"
echo
echo "The same through the tuned lens:"
./build/clients/cli/lensctl decode --lens tuned "$prompt"
echo
echo "Side by side:"
./build/clients/cli/lensctl compare --lenses logit,tuned "$prompt"
echo
for lens in logit tuned; do
  echo "Greedy generation read out through the $lens lens at layer 3 (of 6):"
  ./build/clients/cli/lensctl generate --lens $lens --layer 3 --greedy --max_new_tokens 12 "$prompt"
done
echo
echo "Without a token the server refuses:"
LENSD_TOKEN= ./build/clients/cli/lensctl models || true
