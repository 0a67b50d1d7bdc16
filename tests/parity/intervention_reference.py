#!/usr/bin/env python3
"""Reference outputs of interventions, made with TransformerLens's run_with_hooks.

For gpt2, a grouped-query llama and gpt_neox, writes a random-init model with transformers'
save_pretrained into <out>/<name>/, hands the same weights to a TransformerLens HookedTransformer
(no weight processing) and, for each case of CASES below, runs the prompt with the case's hook
functions. <out>/<name>/reference.safetensors holds:
  input_ids [1, T], source_ids [1, T] (the patch source), reference_ids [R, T] (mean references)
  clean_logits                     TransformerLens logits without hooks (checked against HF)
  case{i}.logits [1, T, vocab]     logits with case i's hooks
  case{i}.tensor                   the tensor the case hands lensd (set value, steering vector,
                                   directions), when it has one
  steer_tokens [N]                 greedy continuation when steer_vector x 4 is added to
                                   blocks.1.hook_resid_pre at every position, re-running the whole
                                   sequence each step (no cache)
  steer_vector [d_model]
  patch.<grid>                     transformer_lens.patching grids of the logit difference
                                   logit(TARGET) - logit(FOIL) at the last position, clean =
                                   input_ids, corrupted = source_ids: denoising (the corrupted run
                                   with clean activations) for resid_pre, resid_mid, attn_out,
                                   mlp_out by position, heads' z by position and all positions,
                                   q/k/v and pattern all positions, pattern by position; noising
                                   (the clean run with corrupted activations) for resid_pre
  patch.clean_metric, patch.corrupted_metric
  sae.clamped_logits               SAELens's spliced model (SAE with its error term) with one
                                   feature of a random standard SAE (<out>/<name>/saes/res1, at
                                   blocks.1.hook_resid_pre) clamped at positions 3..8
and <out>/<name>/cases.json the cases as lensd interventions (see intervention_parity_test.cc).
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM
from transformers import LlamaConfig, LlamaForCausalLM
from sae_lens import HookedSAETransformer
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching
from transformer_lens.pretrained.weight_conversions import (convert_gpt2_weights,
                                                            convert_llama_weights,
                                                            convert_neox_weights)

VOCAB = 320
LENGTH = 9
STEER_TOKENS = 8
TARGET, FOIL = 5, 17
SAE_HOOK, SAE_FEATURE, SAE_VALUE = "blocks.1.hook_resid_pre", 7, 3.0


def models():
    small = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                 intermediate_size=96, max_position_embeddings=64, initializer_range=0.1)
    return {
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=3, n_head=4,
                                           n_positions=64, initializer_range=0.1, resid_pdrop=0,
                                           embd_pdrop=0, attn_pdrop=0)),
        "llama_gqa": LlamaForCausalLM(LlamaConfig(**small, num_key_value_heads=2)),
        "gpt_neox": GPTNeoXForCausalLM(GPTNeoXConfig(**small, rotary_pct=0.5,
                                                     use_parallel_residual=True)),
    }


def rope_theta(c, default):
    params = getattr(c, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(c, "rope_theta", default))


def hooked(hf, cls=HookedTransformer):
    """The same weights as a HookedTransformer (or `cls`), unprocessed (no folding or
    centering)."""
    c = hf.config
    if c.model_type == "gpt2":
        cfg = dict(d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
                   d_mlp=c.n_inner or 4 * c.n_embd, n_layers=c.n_layer, n_ctx=c.n_positions,
                   act_fn=c.activation_function, normalization_type="LN",
                   eps=c.layer_norm_epsilon, positional_embedding_type="standard",
                   original_architecture="GPT2LMHeadModel")
        convert = convert_gpt2_weights
    elif c.model_type == "llama":
        cfg = dict(d_model=c.hidden_size, d_head=c.head_dim, n_heads=c.num_attention_heads,
                   d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers,
                   n_ctx=c.max_position_embeddings, act_fn=c.hidden_act,
                   normalization_type="RMS", eps=c.rms_norm_eps,
                   positional_embedding_type="rotary", rotary_dim=c.head_dim,
                   rotary_base=rope_theta(c, 10000.0), final_rms=True, gated_mlp=True,
                   n_key_value_heads=c.num_key_value_heads,
                   original_architecture="LlamaForCausalLM", rotary_adjacent_pairs=False)
        convert = convert_llama_weights
    else:
        head = c.hidden_size // c.num_attention_heads
        pct = (getattr(c, "rope_parameters", None) or {}).get("partial_rotary_factor",
                                                              getattr(c, "rotary_pct", 1.0))
        cfg = dict(d_model=c.hidden_size, d_head=head, n_heads=c.num_attention_heads,
                   d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers,
                   n_ctx=c.max_position_embeddings, act_fn=c.hidden_act,
                   normalization_type="LN", eps=c.layer_norm_eps,
                   positional_embedding_type="rotary", rotary_dim=int(head * pct),
                   rotary_base=rope_theta(c, 10000.0), parallel_attn_mlp=c.use_parallel_residual,
                   original_architecture="GPTNeoXForCausalLM", rotary_adjacent_pairs=False)
        convert = convert_neox_weights
    cfg = HookedTransformerConfig(**cfg, d_vocab=c.vocab_size, device="cpu",
                                  dtype=torch.float32, default_prepend_bos=False)
    model = cls(cfg, tokenizer=None)
    model.load_and_process_state_dict(convert(hf, cfg), fold_ln=False,
                                      center_writing_weights=False, center_unembed=False,
                                      fold_value_biases=False,
                                      refactor_factored_attn_matrices=False)
    return model.eval()


def cases(tl, g):
    """(lensd intervention, TransformerLens hooks) pairs; tensors drawn from generator g."""
    d = tl.cfg.d_model
    kv = tl.cfg.n_key_value_heads or tl.cfg.n_heads
    out = []

    def add(spec, hooks, tensor=None):
        out.append((spec, hooks, tensor))

    value = torch.randn(d, generator=g)
    add({"hook_point": "blocks.1.hook_resid_pre", "op": "set", "positions": [2, 5]},
        [("blocks.1.hook_resid_pre", lambda x, hook: x.index_copy(
            1, torch.tensor([2, 5]), value.expand(1, 2, d)))], value)
    rows = torch.randn(2, d, generator=g)
    add({"hook_point": "blocks.0.hook_resid_post", "op": "set", "positions": [1, 4]},
        [("blocks.0.hook_resid_post",
          lambda x, hook: x.index_copy(1, torch.tensor([1, 4]), rows.unsqueeze(0)))], rows)
    steer = torch.randn(d, generator=g)
    add({"hook_point": "blocks.2.hook_resid_pre", "op": "add", "number": 3.0},
        [("blocks.2.hook_resid_pre", lambda x, hook: x + 3.0 * steer)], steer)
    add({"hook_point": "blocks.1.hook_mlp_out", "op": "scale", "number": 0.25, "positions": [3]},
        [("blocks.1.hook_mlp_out", lambda x, hook: torch.cat(
            [x[:, :3], 0.25 * x[:, 3:4], x[:, 4:]], 1))])
    add({"hook_point": "blocks.0.hook_attn_out", "op": "zero"},
        [("blocks.0.hook_attn_out", lambda x, hook: torch.zeros_like(x))])
    # Head ablation: zero hook_z of heads 1 and 3 (TransformerLens's usual recipe).
    add({"hook_point": "blocks.1.attn.hook_z", "op": "zero", "heads": [1, 3]},
        [("blocks.1.attn.hook_z", lambda z, hook: z.index_fill(2, torch.tensor([1, 3]), 0.0))])
    add({"hook_point": "blocks.2.attn.hook_v", "op": "scale", "number": -1.0, "heads": [kv - 1],
         "positions": [0, 6]},
        [("blocks.2.attn.hook_v", lambda v, hook: v * torch.where(
            (torch.arange(v.shape[1]).view(-1, 1) == 0) | (torch.arange(v.shape[1]).view(-1, 1) == 6),
            torch.where(torch.arange(kv) == kv - 1, -1.0, 1.0), 1.0).view(1, v.shape[1], kv, 1))])
    add({"hook_point": "blocks.0.attn.hook_pattern", "op": "zero", "heads": [0], "positions": [7]},
        [("blocks.0.attn.hook_pattern", lambda p, hook: torch.cat(
            [p[:, :1].index_fill(2, torch.tensor([7]), 0.0), p[:, 1:]], 1))])
    # Mean-ablation over reference inputs (every position of every input), and per position.
    out.append(("mean_all", None, None))
    out.append(("mean_per_position", None, None))
    out.append(("patch", None, None))
    directions = torch.randn(2, d, generator=g)
    q, _ = torch.linalg.qr(directions.T)
    add({"hook_point": "blocks.1.hook_resid_mid" if not tl.cfg.parallel_attn_mlp
         else "blocks.1.hook_resid_post", "op": "project_out"},
        [("blocks.1.hook_resid_mid" if not tl.cfg.parallel_attn_mlp else "blocks.1.hook_resid_post",
          lambda x, hook: x - (x @ q) @ q.T)], directions)
    add({"hook_point": "blocks.2.hook_mlp_out", "op": "keep_only", "positions": [8]},
        [("blocks.2.hook_mlp_out", lambda x, hook: torch.cat(
            [x[:, :8], (x[:, 8:] @ q) @ q.T], 1))], directions)
    return out


def expand_special(tl, case, source, references):
    """The cases whose hook functions need a cache of other inputs."""
    name, _, _ = case
    if name == "patch":
        _, cache = tl.run_with_cache(source)
        point = "blocks.1.hook_resid_post"
        spec = {"hook_point": point, "op": "patch", "positions": [3, 4, 5, 6, 7, 8]}
        return spec, [(point, lambda x, hook: torch.cat(
            [x[:, :3], cache[point][:, 3:]], 1))], None
    point = "blocks.2.attn.hook_z"
    _, cache = tl.run_with_cache(references)
    if name == "mean_all":
        mean = cache[point].mean((0, 1))  # [heads, d_head]
        spec = {"hook_point": point, "op": "mean", "heads": [2]}
        return spec, [(point, lambda z, hook: torch.cat(
            [z[:, :, :2], mean[2].expand(z.shape[0], z.shape[1], 1, -1), z[:, :, 3:]], 2))], None
    mean = cache[point].mean(0)  # [T, heads, d_head]
    spec = {"hook_point": point, "op": "mean", "per_position": True}
    return spec, [(point, lambda z, hook: mean.unsqueeze(0).expand_as(z).clone())], None


def steered_generation(tl, prompt, vector):
    point = "blocks.1.hook_resid_pre"
    ids = prompt.clone()
    for _ in range(STEER_TOKENS):
        logits = tl.run_with_hooks(ids, fwd_hooks=[(point, lambda x, hook: x + 4.0 * vector)])
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return ids[0, prompt.shape[1]:]


def patching_grids(tl, clean, corrupted):
    """transformer_lens.patching's grids (metric: the logit difference at the last position)."""
    def metric(logits):
        return logits[0, -1, TARGET] - logits[0, -1, FOIL]
    _, clean_cache = tl.run_with_cache(clean)
    _, corrupted_cache = tl.run_with_cache(corrupted)
    out = {"clean_metric": metric(tl(clean)), "corrupted_metric": metric(tl(corrupted))}
    denoise = {
        "resid_pre": patching.get_act_patch_resid_pre,
        "attn_out": patching.get_act_patch_attn_out,
        "mlp_out": patching.get_act_patch_mlp_out,
        "z_by_pos": patching.get_act_patch_attn_head_out_by_pos,
        "z_all_pos": patching.get_act_patch_attn_head_out_all_pos,
        "q_all_pos": patching.get_act_patch_attn_head_q_all_pos,
        "k_all_pos": patching.get_act_patch_attn_head_k_all_pos,
        "v_all_pos": patching.get_act_patch_attn_head_v_all_pos,
        "pattern_all_pos": patching.get_act_patch_attn_head_pattern_all_pos,
        "pattern_by_pos": patching.get_act_patch_attn_head_pattern_by_pos,
    }
    if not tl.cfg.parallel_attn_mlp:
        denoise["resid_mid"] = patching.get_act_patch_resid_mid
    for name, sweep in denoise.items():
        out[name] = sweep(tl, corrupted, clean_cache, metric)
    out["noising_resid_pre"] = patching.get_act_patch_resid_pre(tl, clean, corrupted_cache, metric)
    return {f"patch.{k}": torch.as_tensor(v).float() for k, v in out.items()}


def sae_clamp(hf, folder, prompt, g):
    """SAELens's spliced model (HookedSAETransformer, the SAE with use_error_term) with feature
    SAE_FEATURE of a random standard SAE at blocks.1.hook_resid_pre clamped to SAE_VALUE at
    positions 3..8, written to <folder>/saes/res1 (SAELens save_model)."""
    model = hooked(hf, HookedSAETransformer)
    d = model.cfg.d_model
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=4 * d))
    sae.cfg.metadata.hook_name = SAE_HOOK
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1))
    sae.save_model(os.path.join(folder, "saes", "res1"))
    sae.use_error_term = True

    def clamp(acts, hook):
        acts[:, 3:, SAE_FEATURE] = SAE_VALUE
        return acts
    with torch.no_grad():
        spliced = model.run_with_saes(prompt, saes=[sae])
        clamped = model.run_with_hooks_with_saes(
            prompt, saes=[sae], fwd_hooks=[(f"{SAE_HOOK}.hook_sae_acts_post", clamp)])
        err = (spliced - hf(prompt).logits).abs().max().item()
    assert err < 1e-4, f"the spliced model with its error term is not the model ({err})"
    return {"sae.clamped_logits": clamped}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, VOCAB, (1, LENGTH), generator=g)
    source = torch.randint(0, VOCAB, (1, LENGTH), generator=g)
    references = torch.randint(0, VOCAB, (3, LENGTH), generator=g)
    for name, hf in models().items():
        hf = hf.eval()
        folder = os.path.join(args.out, name)
        hf.save_pretrained(folder)
        tl = hooked(hf)
        tensors = {"input_ids": prompt, "source_ids": source, "reference_ids": references}
        specs = []
        with torch.no_grad():
            clean = tl(prompt)
            err = (clean - hf(prompt).logits).abs().max().item()
            assert err < 1e-4, f"{name}: TransformerLens and transformers differ by {err}"
            tensors["clean_logits"] = clean
            for i, case in enumerate(cases(tl, g)):
                spec, hooks, tensor = (expand_special(tl, case, source, references)
                                       if case[1] is None else case)
                tensors[f"case{i}.logits"] = tl.run_with_hooks(prompt, fwd_hooks=hooks)
                if tensor is not None:
                    tensors[f"case{i}.tensor"] = tensor.contiguous()
                specs.append(spec)
            vector = torch.randn(tl.cfg.d_model, generator=g)
            tensors.update(patching_grids(tl, prompt, source))
        tensors.update(sae_clamp(hf, folder, prompt, g))
        with torch.no_grad():
            tensors["steer_vector"] = vector
            tensors["steer_tokens"] = steered_generation(tl, prompt, vector)
            plain = steered_generation(tl, prompt, 0 * vector)
            assert not torch.equal(plain, tensors["steer_tokens"]), f"{name}: steering is silent"
        save_file({k: v.contiguous().clone() for k, v in tensors.items()},
                  os.path.join(folder, "reference.safetensors"))
        with open(os.path.join(folder, "cases.json"), "w") as f:
            json.dump(specs, f, indent=1)
        print(f"{name}: {len(specs)} cases; TransformerLens vs transformers {err:.2e}")


if __name__ == "__main__":
    main()
