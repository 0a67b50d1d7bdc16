#!/usr/bin/env bash
# Trains the demo model's tuned lens with lensd itself, as a user would: starts lensd on
# deploy/models with the demo text as its data root, submits a training job with lensctl and
# watches it, then evaluates the logit and tuned lenses on the held-out chapters (an evaluation
# job). The lens lands in deploy/models/kjv-gpt2/lenses/tuned/ (tuned-lens format), with the
# evaluation's aggregate_metrics.json beside it.
#   bash deploy/training/train_demo_lens.sh [--replace]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
lens_dir=deploy/models/kjv-gpt2/lenses/tuned
if [ -e "$lens_dir" ]; then
  [ "${1:-}" = "--replace" ] || { echo "$lens_dir exists; pass --replace to retrain it"; exit 1; }
  rm -rf "$lens_dir"
fi
bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build lensd lensctl

work=$(mktemp -d)
.venv/bin/python deploy/training/demo_lens_data.py --out "$work/data"
token_output=$(./build/server/lensd token --tenant=demo --role=admin)
export LENSD_TOKEN=$(sed -n 's/^token: //p' <<<"$token_output")
sed -n 's/^tokens file line: //p' <<<"$token_output" > "$work/tokens.txt"
./build/server/lensd --model_repository=deploy/models --models=kjv-gpt2 \
  --tokens_file="$work/tokens.txt" --address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
  --port_file="$work/port.json" --state_dir="$work/state" --data_root="$work/data" \
  --log_requests=false 2> "$work/lensd.log" &
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
export LENSD_ADDRESS=127.0.0.1:$(sed -n 's/.*"port": \([0-9]*\),.*/\1/p' "$work/port.json")
lensctl=./build/clients/cli/lensctl

# tuned-lens's defaults (KL loss, SGD with Nesterov momentum, lr 1.0 x (1 - 0.9), linear decay,
# weight decay 1e-3, seed 42) scaled to the demo: 128-token chunks as the model was trained on,
# 32 of them per step, 200 steps (6,400 of the 7,500 training chunks).
$lensctl train --lens_name tuned --data kjv-train.jsonl --seq_len 128 --tokens_per_step 4096 \
  --micro_batch 8 --num_steps 200 --watch
$lensctl eval --lenses logit,tuned --data kjv-heldout.jsonl --seq_len 128 --batch 8 --watch \
  --output "$lens_dir/aggregate_metrics.json"
