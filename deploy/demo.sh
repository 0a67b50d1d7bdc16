#!/usr/bin/env bash
# The demo: installs what is missing, builds lensd and lensctl, starts lensd on the embedded demo
# model deploy/models/kjv-gpt2 and its tuned lens (trained by lensd itself,
# deploy/training/train_demo_lens.sh) with auth on (a fresh admin token), and calls it with
# lensctl: the per-layer decoding of a prompt through the logit lens and through the tuned lens,
# both lenses side by side, generations read out at layer 3 of 6 through each, then the demo SAE's
# features (deploy/training/train_demo_sae.py), node attribution over them and direct logit
# attribution. Then the web UI (clients/web) starts on the same server and its URL is printed:
# from a terminal the demo waits for Enter before it stops both, otherwise (CI, a pipe) it checks
# the UI answers and stops them cleanly.
#   bash deploy/demo.sh ["your prompt"]
# (LENSD_UI_PORT chooses the UI's port, default 8501.)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
prompt=${1:-"And God said, Let there be light: and there was"}
bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build lensd lensctl

source deploy/lensd_server.sh
lensd_start ./build/server/lensd admin --model_repository=deploy/models --models=kjv-gpt2 \
  --lenses=kjv-gpt2/tuned --saes=kjv-gpt2/res3-topk
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
echo "Features of the demo SAE (TopK, 1,024 features, read from the residual stream entering block 3):"
./build/clients/cli/lensctl sae encode --top_k 4 "$prompt"
echo
echo "Which SAE features and error nodes move the loss of the last token's prediction most"
echo "(attribution patching, zero baseline; effect ~ change in loss when the node is zeroed):"
./build/clients/cli/lensctl attribute --top_n 12 "$prompt"
echo
echo "Direct logit attribution of the model's top prediction at the last position:"
./build/clients/cli/lensctl dla "$prompt"
echo
echo "Without a token the server refuses:"
LENSD_TOKEN= ./build/clients/cli/lensctl models || true

source deploy/web_ui_env.sh
web_ui_install_client
ui_port=${LENSD_UI_PORT:-8501}
PYTHONPATH="$web_ui_pythonpath" .venv/bin/python -m streamlit run clients/web/lensd_ui/app.py \
  "${web_ui_flags[@]}" --server.port="$ui_port" --server.address=127.0.0.1 \
  > "$lensd_work/web_ui.log" 2>&1 &
ui_pid=$!
trap 'kill "$ui_pid" 2>/dev/null; wait "$ui_pid" 2>/dev/null; lensd_stop' EXIT
for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$ui_port/_stcore/health" >/dev/null && break
  kill -0 "$ui_pid" 2>/dev/null || { cat "$lensd_work/web_ui.log"; exit 1; }
  sleep 0.2
done
echo
echo "The web UI is serving this lensd at http://127.0.0.1:$ui_port (trajectories, generation,"
echo "SAE features, attribution, steering, patching, jobs; on a remote box: ssh -L $ui_port:127.0.0.1:$ui_port)."
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  read -r -p "Press Enter to stop the server and the UI. " _
fi
