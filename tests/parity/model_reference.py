#!/usr/bin/env python3
"""Reference checkpoints and outputs for the engine parity test, made with transformers.

For each small config below (one or more per architecture, covering grouped-query attention,
untied embeddings, qkv bias, rope scaling, sliding windows, parallel residual, partial rotary,
q/k norm, post-norms and soft-capping),
writes a random-init model with save_pretrained into <out>/<name>/ and, in <out>/<name>/
reference.safetensors, from a forward of the same weights on a right-padded batch of prompts of
different lengths (eager attention):
  input_ids, attention_mask                [B, T]
  logits_fp32, hidden_{0..L}_fp32          HF logits and every hidden state (hidden_L is after
                                            the final norm)
  logits_bf16                              the same model run in bfloat16
  grad_{0..L-1}                            d metric / d hidden_i, metric = sum over rows of the
                                            log-prob of target[row] at the row's last real token
  targets                                  [B]
  steer_logits, steer_vector, steer_layer  logits when steer_vector is added to the input of
                                            block steer_layer
  router_logits_{i}, expert_indices_{i}    mixtures of experts: block i's router logits [B, T, E]
                                            and chosen experts [B, T, k], from its router module
With --demo, the embedded demo model is checked too: its reference outputs (on a batch of
tokenized verses) go to <out>/<demo name>/reference.safetensors while the model stays where it is.
Also writes <out>/manifest.json listing the models and their folders.
"""
import argparse
import json
import os

import alone
import torch
from safetensors.torch import save_file
from transformers import (BloomConfig, GemmaConfig, Gemma2Config, Gemma3TextConfig, GPT2Config,
                          GPTJConfig, GPTNeoXConfig, LlamaConfig, MistralConfig, GPTNeoConfig,
                          MixtralConfig, Olmo2Config, OlmoeConfig, OPTConfig, Phi3Config,
                          Qwen2Config, Qwen3Config, AutoModelForCausalLM)

LENGTHS = [12, 7, 3]
VOCAB = 320


def configs():
    # initializer_range 0.1 (transformers' default is 0.02) gives logits of order 10, so that the
    # absolute tolerances below are demanding.
    small = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                 intermediate_size=96, max_position_embeddings=64, initializer_range=0.1)
    return {
        "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=3, n_head=4, n_positions=64,
                           initializer_range=0.1, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0),
        "gpt2_untied_inverse_layer": GPT2Config(
            vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=3, n_positions=32, n_inner=80,
            activation_function="gelu", tie_word_embeddings=False,
            scale_attn_by_inverse_layer_idx=True, initializer_range=0.1, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0),
        "gpt_neox": GPTNeoXConfig(**small, rotary_pct=0.25, use_parallel_residual=True),
        "gpt_neox_sequential": GPTNeoXConfig(**small, rotary_pct=0.5, use_parallel_residual=False,
                                             attention_bias=False, hidden_act="gelu_new"),
        "llama_gqa_llama3_rope": LlamaConfig(
            **small, num_key_value_heads=2, attention_bias=True,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
        "llama_tied_linear_rope": LlamaConfig(
            **small, num_key_value_heads=4, tie_word_embeddings=True, rope_theta=500.0,
            rope_scaling={"type": "linear", "factor": 2.0}),
        "llama_dynamic_rope": LlamaConfig(
            **{**small, "max_position_embeddings": 8}, num_key_value_heads=1, head_dim=24,
            rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
        "mistral_window": MistralConfig(**small, num_key_value_heads=2, sliding_window=5),
        "qwen2": Qwen2Config(**small, num_key_value_heads=2),
        "qwen2_window": Qwen2Config(**small, num_key_value_heads=1, use_sliding_window=True,
                                    sliding_window=4, max_window_layers=0),
        "gemma": GemmaConfig(**small, num_key_value_heads=1, head_dim=16),
        # Fields that transformers 5.x writes or reads differently from 4.x: the rotary fraction
        # in rope_parameters.partial_rotary_factor (no rotary_pct), a layer_types list that
        # disagrees with max_window_layers, and Gemma's legacy hidden_act "gelu" (LEGACY_FIELDS).
        "gpt_neox_full_rotary": GPTNeoXConfig(**small, rotary_pct=1.0),
        "qwen2_layer_types": Qwen2Config(
            **small, num_key_value_heads=2, use_sliding_window=True, sliding_window=3,
            max_window_layers=1,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
        "gemma_legacy_gelu": GemmaConfig(**small, num_key_value_heads=2),
        # Qwen3: per-head q/k RMSNorm (weights perturbed below), head_dim apart from d / heads;
        # with q/k/v/o biases and windowed upper layers.
        "qwen3": Qwen3Config(**small, num_key_value_heads=2, head_dim=24),
        "qwen3_window_bias": Qwen3Config(**small, num_key_value_heads=1, attention_bias=True,
                                         use_sliding_window=True, sliding_window=4,
                                         max_window_layers=1),
        # OPT: positions stored with an offset of 2, ReLU; the second with embeddings narrower
        # than the stream (project_in / project_out), an untied head, GELU and no biases.
        "opt": OPTConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3,
                         num_attention_heads=4, ffn_dim=96, max_position_embeddings=64,
                         init_std=0.1, dropout=0.0, attention_dropout=0.0),
        "opt_projected_untied": OPTConfig(
            vocab_size=VOCAB, hidden_size=64, word_embed_proj_dim=40, num_hidden_layers=2,
            num_attention_heads=2, ffn_dim=80, max_position_embeddings=64, init_std=0.1,
            dropout=0.0, attention_dropout=0.0, activation_function="gelu", enable_bias=False,
            tie_word_embeddings=False),
        # GPT-Neo: unscaled float32 attention, global and local (window 4) layers.
        "gpt_neo": GPTNeoConfig(vocab_size=VOCAB, hidden_size=64, num_layers=3, num_heads=4,
                                intermediate_size=96, max_position_embeddings=64, window_size=4,
                                attention_types=[[["global", "local", "local"], 1]],
                                initializer_range=0.1, embed_dropout=0.0, attention_dropout=0.0,
                                resid_dropout=0.0),
        # GPT-J: interleaved rotary on 8 of each head's 16 dimensions, parallel attention and MLP
        # from one norm, lm_head with a bias; then the rotary over whole heads, a tied head.
        "gptj": GPTJConfig(vocab_size=VOCAB, n_embd=64, n_layer=3, n_head=4, rotary_dim=8,
                           n_inner=96, n_positions=64, initializer_range=0.1, resid_pdrop=0,
                           embd_pdrop=0, attn_pdrop=0),
        "gptj_full_rotary_tied": GPTJConfig(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2,
                                            rotary_dim=16, n_positions=64, initializer_range=0.1,
                                            tie_word_embeddings=True, activation_function="gelu",
                                            resid_pdrop=0, embd_pdrop=0, attn_pdrop=0),
        # BLOOM: ALiBi with 6 heads (slopes past the largest power of two), the embedding
        # LayerNorm; then residuals taken after each norm and an untied head.
        "bloom": BloomConfig(vocab_size=VOCAB, hidden_size=48, n_layer=3, n_head=6,
                             initializer_range=0.1),
        "bloom_residual_after_norm": BloomConfig(
            vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, initializer_range=0.1,
            apply_residual_connection_post_layernorm=True, tie_word_embeddings=False),
        # Gemma 2: norms after attention and the MLP, caps small enough to bend these logits and
        # scores, query_pre_attn_scalar apart from head_dim, the default alternation of sliding
        # (window 4) and global layers; then no caps and a layer_types list of its own.
        "gemma2": Gemma2Config(**small, num_key_value_heads=2, head_dim=16, sliding_window=4,
                               query_pre_attn_scalar=24, attn_logit_softcapping=3.0,
                               final_logit_softcapping=8.0),
        "gemma2_uncapped_layer_types": Gemma2Config(
            **small, num_key_value_heads=1, head_dim=32, sliding_window=3,
            attn_logit_softcapping=None, final_logit_softcapping=None,
            layer_types=["full_attention", "sliding_attention", "sliding_attention"]),
        # Gemma 3: per-head q/k norm, a global layer between sliding ones (window 4), a linearly
        # scaled global rotary and a local one of a small base, a final cap; then (LEGACY_FIELDS)
        # the 4.x fields: sliding_window_pattern 2 in place of layer_types, rope_theta and
        # rope_local_base_freq in place of rope_parameters.
        "gemma3": Gemma3TextConfig(
            **small, num_key_value_heads=2, head_dim=16, sliding_window=4,
            query_pre_attn_scalar=24, final_logit_softcapping=8.0,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0,
                                                "rope_theta": 1000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}),
        "gemma3_legacy_fields": Gemma3TextConfig(**small, num_key_value_heads=1, head_dim=32,
                                                 sliding_window=3),
        # OLMo 2: no pre-norms, q/k norms over all heads; then q/k/v/o biases and a small base.
        "olmo2": Olmo2Config(**small, num_key_value_heads=2),
        "olmo2_bias": Olmo2Config(**small, attention_bias=True,
                                  rope_parameters={"rope_type": "default", "rope_theta": 500.0}),
        # Phi-3: fused qkv and gate_up, half the head rotating, a window of 5 on every layer; then
        # longrope with a pretraining context of 8, so the longest prompt takes the long factors.
        "phi3": Phi3Config(**small, num_key_value_heads=2, partial_rotary_factor=0.5,
                           sliding_window=5, pad_token_id=0),
        "phi3_longrope": Phi3Config(
            **small, num_key_value_heads=4, original_max_position_embeddings=8, pad_token_id=0,
            rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.5, 2.0, 1.2, 3.0, 1.1, 1.0, 2.5],
                          "long_factor": [2.0, 4.0, 8.0, 3.0, 16.0, 2.0, 1.5, 6.0]}),
        # Mixtral: 4 experts, 2 per position, renormalized; then 5 experts, 3 per position and a
        # window of 5.
        "mixtral": MixtralConfig(**small, num_key_value_heads=2, num_local_experts=4,
                                 num_experts_per_tok=2),
        "mixtral_window_top3": MixtralConfig(**small, num_key_value_heads=4, num_local_experts=5,
                                             num_experts_per_tok=3, sliding_window=5),
        # OLMoE: q/k norms over all heads, 6 experts, 2 per position, not renormalized; then
        # renormalized with q, k and v clipped at 0.4 (random init reaches about 1).
        "olmoe": OlmoeConfig(**small, num_key_value_heads=2, num_experts=6,
                             num_experts_per_tok=2),
        "olmoe_norm_topk_clip": OlmoeConfig(**small, num_experts=3, num_experts_per_tok=2,
                                            norm_topk_prob=True, clip_qkv=0.4),
    }


# config.json values written over what save_pretrained wrote, as the official checkpoints have them:
# Gemma 1's configs say "gelu", which transformers 5.x reads as the tanh approximation.
# Gemma 3's checkpoints carry 4.x rotary fields and a window pattern (None: the field removed).
LEGACY_FIELDS = {
    "gemma_legacy_gelu": {"hidden_act": "gelu"},
    "gemma3_legacy_fields": {"layer_types": None, "sliding_window_pattern": 2,
                             "rope_parameters": None, "rope_theta": 2000.0,
                             "rope_local_base_freq": 30.0},
}


def batch(seed, vocab=VOCAB):
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(LENGTHS):
        ids[row, :n] = torch.randint(1, vocab, (n,), generator=g)
        mask[row, :n] = 1
    return ids, mask


def last_positions(mask):
    return mask.sum(1) - 1


def reference(model, ids, mask, num_layers, d_model):
    """The reference tensors of a batch, each row as transformers answers it alone (alone.py)."""
    targets = torch.arange(ids.shape[0]) * 7 + 3
    layer = num_layers - 1
    vector = torch.randn(d_model, generator=torch.Generator().manual_seed(5))
    if alone.dynamic_rope(model.config):
        per_row = []
        for r in range(ids.shape[0]):
            n = int(mask[r].sum())
            with torch.no_grad():
                model(input_ids=ids[r:r + 1, :1])  # back to the configured base
            per_row.append(tensors_of(model, ids[r:r + 1, :n], mask[r:r + 1, :n], num_layers,
                                      layer, vector, targets[r:r + 1]))
        out = {k: torch.cat([alone.pad(row[k], ids.shape[1]) for row in per_row])
               for k in per_row[0]}
    else:
        out = tensors_of(model, ids, mask, num_layers, layer, vector, targets)
    out["targets"] = targets
    out["steer_vector"] = vector
    out["steer_layer"] = torch.tensor([layer])
    return out


def blocks_of(model):
    base = model.base_model
    if hasattr(base, "h"):
        return base.h
    return base.decoder.layers if hasattr(base, "decoder") else base.layers


def tensors_of(model, ids, mask, num_layers, layer, vector, targets):
    out = {}
    # OPT's last hidden state is after project_out; the stream after the final norm is lensd's.
    decoder = getattr(model.base_model, "decoder", None)
    final_norm = []
    handle = None
    if decoder is not None and decoder.project_out is not None:
        handle = decoder.final_layer_norm.register_forward_hook(
            lambda module, args, output: final_norm.append(output))
    routers = [m for m in model.modules() if type(m).__name__.endswith("TopKRouter")]
    routed = []
    router_handles = [r.register_forward_hook(lambda module, args, output: routed.append(output))
                      for r in routers]
    with torch.no_grad():
        res = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    if handle is not None:
        handle.remove()
    for h in router_handles:
        h.remove()
    for i, (logits, _, indices) in enumerate(routed):  # one call per block, in order
        out[f"router_logits_{i}"] = logits.float().view(ids.shape[0], ids.shape[1], -1)
        out[f"expert_indices_{i}"] = indices.view(ids.shape[0], ids.shape[1], -1)
    out["logits_fp32"] = res.logits.float()
    for i, h in enumerate(res.hidden_states):
        out[f"hidden_{i}_fp32"] = h.float()
    if final_norm:
        out[f"hidden_{num_layers}_fp32"] = final_norm[0].float()

    # Gradients of sum_row log p(target_row | last real token of row) w.r.t. each hidden state.
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    res = model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
    for h in res.hidden_states:
        h.retain_grad()
    rows = torch.arange(ids.shape[0])
    logp = torch.log_softmax(res.logits[rows, last_positions(mask)].float(), -1)
    logp[rows, targets].sum().backward()
    for i in range(num_layers):
        out[f"grad_{i}"] = res.hidden_states[i].grad.float()

    # Steering: add a vector to the input of one block.
    blocks = blocks_of(model)
    # Every architecture here passes hidden_states to its blocks positionally.
    handle = blocks[layer].register_forward_pre_hook(
        lambda module, args: (args[0] + vector,) + tuple(args[1:]))
    with torch.no_grad():
        out["steer_logits"] = model(input_ids=ids, attention_mask=mask).logits.float()
    handle.remove()
    return out


def bf16_logits(model, ids, mask):
    model = model.to(torch.bfloat16)
    with torch.no_grad():
        return alone.per_request(model, ids, mask,
                                 lambda i, m: model(input_ids=i, attention_mask=m).logits.float())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--demo", help="the demo model folder, checked as it is")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = []
    for index, (name, config) in enumerate(configs().items()):
        torch.manual_seed(1000 + index)
        config._attn_implementation = "eager"
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
        # Random init leaves norms at 1/0 and biases at 0; perturb them so they are tested.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.1)
        folder = os.path.join(args.out, name)
        # One model is written in shards to exercise model.safetensors.index.json.
        shard = "40KB" if name == "llama_gqa_llama3_rope" else "2GB"
        model.save_pretrained(folder, safe_serialization=True, max_shard_size=shard)
        if name in LEGACY_FIELDS:
            path = os.path.join(folder, "config.json")
            with open(path) as f:
                written = json.load(f)
            for key, value in LEGACY_FIELDS[name].items():
                if value is None:
                    written.pop(key, None)
                else:
                    written[key] = value
            with open(path, "w") as f:
                json.dump(written, f, indent=2)
            # The reference is what transformers makes of the rewritten config.json.
            model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        ids, mask = batch(index)
        cfg = model.config
        tensors = reference(model, ids, mask, cfg.num_hidden_layers, cfg.hidden_size)
        tensors["logits_bf16"] = bf16_logits(model, ids, mask)
        tensors["input_ids"] = ids
        tensors["attention_mask"] = mask
        save_file({k: v.contiguous() for k, v in tensors.items()},
                  os.path.join(folder, "reference.safetensors"))
        manifest.append({"name": name, "dir": os.path.abspath(folder),
                         "model_type": cfg.model_type})
    if args.demo:
        name = os.path.basename(os.path.normpath(args.demo)).replace("-", "_")
        model = AutoModelForCausalLM.from_pretrained(args.demo, attn_implementation="eager").eval()
        ids, mask = batch(99, model.config.vocab_size)
        tensors = reference(model, ids, mask, model.config.num_hidden_layers, model.config.hidden_size)
        tensors["logits_bf16"] = bf16_logits(model, ids, mask)
        tensors["input_ids"] = ids
        tensors["attention_mask"] = mask
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()},
                  os.path.join(args.out, name, "reference.safetensors"))
        manifest.append({"name": name, "dir": os.path.abspath(args.demo),
                         "model_type": model.config.model_type})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
