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

data=$(mktemp -d)
.venv/bin/python deploy/training/demo_lens_data.py --out "$data"
source deploy/lensd_server.sh
lensd_start ./build/server/lensd admin --model_repository=deploy/models --models=kjv-gpt2 \
  --data_root="$data"
trap 'lensd_stop; rm -rf "$data"' EXIT
lensctl=./build/clients/cli/lensctl

# tuned-lens's defaults (KL loss, SGD with Nesterov momentum, lr 1.0 x (1 - 0.9), linear decay,
# weight decay 1e-3, seed 42) scaled to the demo: 128-token chunks as the model was trained on,
# 32 of them per step, 200 steps (6,400 of the 7,500 training chunks).
$lensctl train --lens_name tuned --data kjv-train.jsonl --seq_len 128 --tokens_per_step 4096 \
  --micro_batch 8 --num_steps 200 --watch
$lensctl eval --lenses logit,tuned --data kjv-heldout.jsonl --seq_len 128 --batch 8 --watch \
  --output "$lens_dir/aggregate_metrics.json"
