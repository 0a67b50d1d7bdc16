#!/usr/bin/env bash
# The demo: installs what is missing, builds lensd, and prints the per-layer decoding (logit lens)
# of a prompt on the embedded demo model deploy/models/kjv-gpt2, then a greedy generation read
# out through the lens at layer 4 of its 6.
#   bash deploy/demo.sh ["your prompt"]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
prompt=${1:-"And God said, Let there be light: and there was"}
bash deploy/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build lensd-lens
echo
./build/core/engine/tools/lensd-lens --model deploy/models/kjv-gpt2 --prompt "$prompt" \
  --generate_layer 4 --max_new_tokens 12
