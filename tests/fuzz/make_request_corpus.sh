#!/usr/bin/env bash
# Writes tests/fuzz/corpus_requests/: one valid request of each type request_fuzz reads (its first
# byte names the type, the rest is the message), encoded by protoc from the text below. Run it
# after a proto change; the files are committed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out="$root/tests/fuzz/corpus_requests"
mkdir -p "$out"
seed() {  # <type byte> <file name> <message> <text format>
  {
    printf "\\x$(printf %02x "$1")"
    printf '%s' "$4" | protoc --proto_path="$root/proto" --encode="lensd.v1.$3" \
      lensd/v1/lens.proto lensd/v1/attribution.proto lensd/v1/models.proto lensd/v1/training.proto \
      lensd/v1/patching.proto lensd/v1/interventions.proto
  } >"$out/$2"
}
seed 0 decode DecodeRequest 'model: "kjv-gpt2" input { text: "And God said" } layers: 2 positions: 1 top_k: 5 statistics: STATISTIC_ENTROPY'
seed 0 decode_ids DecodeRequest 'model: "kjv-gpt2" input { tokens { ids: 1 ids: 2 ids: 3 } } compare_lens: "tuned" bits_per_byte: true'
seed 1 generate GenerateRequest 'model: "kjv-gpt2" input { text: "In the beginning" } max_new_tokens: 8 temperature: 0.7 top_p: 0.9 stop_tokens: 13'
seed 2 activations GetActivationsRequest 'model: "kjv-gpt2" input { text: "Let there be light" } hook_points: "blocks.0.hook_resid_pre" hook_points: "blocks.0.attn.hook_pattern" gradients: true metric { kind: METRIC_KIND_LOGIT positions: 2 target: 17 }'
seed 3 encode_sae EncodeSaeRequest 'model: "kjv-gpt2" input { text: "The LORD is my shepherd" } saes: "res3-topk" top_k: 8 threshold: 0.1'
seed 4 node_attribution NodeAttributionRequest 'model: "kjv-gpt2" input { text: "And God said" } saes: "res3-topk" metric { kind: METRIC_KIND_LOSS } baseline: BASELINE_MEAN reference { text: "In the beginning" } ig_steps: 4 top_n: 10'
seed 5 layer_attribution LayerAttributionRequest 'model: "kjv-gpt2" input { text: "And God said" } position: 2 target: 17 per_head: true'
seed 6 tokenize TokenizeRequest 'model: "kjv-gpt2" text: "And God said, Let there be light" add_special_tokens: true'
seed 0 decode_edited DecodeRequest 'model: "kjv-gpt2" input { text: "And God said" } interventions { hook_point: "blocks.1.hook_resid_pre" positions: 1 add { vector { dtype: "float32" shape: 2 data: "\\000\\000\\200?\\000\\000\\000@" } coefficient: 2 } } interventions { hook_point: "blocks.0.attn.hook_z" heads: 1 zero: true } interventions { hook_point: "blocks.2.hook_mlp_out" patch { text: "And Moses said" } } interventions { sae_clamp { sae: "res3-topk" feature: 3 value: 1.5 } }'
seed 7 activation_patching ActivationPatchingRequest 'model: "kjv-gpt2" clean { text: "Let there be light" } corrupted { text: "Let there be darkness" } metric { kind: METRIC_KIND_LOGIT_DIFF target: 5 foil: 7 } sweeps { site: PATCHING_SITE_Z all_positions: true } sweeps { site: PATCHING_SITE_RESID_PRE } layers: 1 positions: 2'
seed 8 submit_job SubmitJobRequest 'model: "kjv-gpt2" train_lens { lens_name: "tuned" }'
seed 8 submit_patching SubmitJobRequest 'model: "kjv-gpt2" activation_patching { clean { text: "Let there be light" } corrupted { tokens { ids: 1 ids: 2 ids: 3 ids: 4 } } sweeps { site: PATCHING_SITE_PATTERN } positions: 3 }'
seed 9 load_model LoadModelRequest 'model: "kjv-gpt2"'
seed 10 load_sae LoadSaeRequest 'model: "kjv-gpt2" sae: "res3-topk"'
seed 11 watch_job WatchJobRequest 'id: "job-1"'
echo "wrote $(ls "$out" | wc -l) seeds into $out"
