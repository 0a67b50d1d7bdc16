#!/usr/bin/env python3
"""Reference lenses and outputs for the lens parity test, made with tuned-lens 0.2.0.

For each model of <models>/manifest.json (written by model_reference.py) this writes, under
<out>/<name>/:
  tuned/        a TunedLens with random translators, saved by tuned-lens's own save()
  tuned_fp16/   the same translators saved in float16 (first model only)
  zero/         an untrained (zero-initialised) TunedLens
  reference.safetensors:
    input_ids [T], targets [T], anti_targets [T]       one prompt
    tuned_log_probs, logit_log_probs [L+1, T, V]        PredictionTrajectory.log_probs
    tuned_<stat> [L+1, T] for entropy, forward_kl, cross_entropy, rank, max_probability,
      log_prob_diff; cmp_kl, cmp_js, cmp_tv [L+1, T]    tuned vs logit lens (kl_divergence,
                                                        js_divergence, total_variation)
    masked_<stat> [L+1, T]                              mask_input=True (entropy,
                                                        cross_entropy, max_probability)
    batch_ids, batch_mask [B, T2]; tuned_layer_logits, logit_layer_logits [L, B, T2, V]
                                                        TunedLens.forward / LogitLens.forward
                                                        on hidden_states[:-1] of a padded batch
    mid_layer_logits [L, B, T2, V]                      the tuned lens at resid_mid (sequential
                                                        models only)
    generated_<layer> [N]                               greedy tokens from the lens at <layer>
                                                        (L = the model's output), reference loop:
                                                        full recompute, batch 1
    fp16_layer_logits (first model)                     the fp16 lens, upcast, on the batch
"""
import argparse
import json
import os

import alone
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
from tuned_lens import model_surgery
from tuned_lens.nn.lenses import LogitLens, TunedLens
from tuned_lens.nn.unembed import Unembed
from tuned_lens.plotting import PredictionTrajectory
from transformers.models.gemma.modeling_gemma import GemmaModel
from transformers.models.gemma2.modeling_gemma2 import Gemma2Model
from transformers.models.gemma3.modeling_gemma3 import Gemma3TextModel
from transformers.models.mistral.modeling_mistral import MistralModel
from transformers.models.mixtral.modeling_mixtral import MixtralModel
from transformers.models.olmo2.modeling_olmo2 import Olmo2Model
from transformers.models.olmoe.modeling_olmoe import OlmoeModel
from transformers.models.phi3.modeling_phi3 import Phi3Model
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model
from transformers.models.qwen3.modeling_qwen3 import Qwen3Model

# tuned-lens 0.2.0 (the newest release) finds the final norm of GPT-2, GPT-NeoX and Llama only.
# Its main branch adds Mistral and Gemma (model_surgery.get_final_norm returns base_model.norm,
# tuned-lens.md section 6) and an open pull request adds Qwen2 the same way; do what they do, and
# the same for Qwen3, Gemma 2 and 3, OLMo 2 and OLMoE, Phi-3 and Mixtral (their final norm is
# base_model.norm too).
_released_get_final_norm = model_surgery.get_final_norm


def _get_final_norm(model):
    if isinstance(model.base_model, (MistralModel, Qwen2Model, Qwen3Model, GemmaModel,
                                     Gemma2Model, Gemma3TextModel, Olmo2Model, Phi3Model,
                                     MixtralModel, OlmoeModel)):
        return model.base_model.norm
    return _released_get_final_norm(model)


model_surgery.get_final_norm = _get_final_norm

# No release of tuned-lens knows Gemma 2's final logit soft-capping: its Unembed stops at the
# unembedding, while the model's own logits (the last layer of every trajectory) are capped. The
# logit lens decodes each layer as the model decodes its last, so the reference caps too.
_released_unembed_init = Unembed.__init__
_released_unembed_forward = Unembed.forward


def _unembed_init(self, model):
    _released_unembed_init(self, model)
    self.softcap = getattr(model.config, "final_logit_softcapping", None)


def _unembed_forward(self, h):
    logits = _released_unembed_forward(self, h)
    if self.softcap:
        logits = torch.tanh(logits / self.softcap) * self.softcap
    return logits


Unembed.__init__ = _unembed_init
Unembed.forward = _unembed_forward

NEW_TOKENS = 8


def randomize(lens, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for translator in lens.layer_translators:
            translator.weight.copy_(torch.randn(translator.weight.shape, generator=g) * 0.05)
            translator.bias.copy_(torch.randn(translator.bias.shape, generator=g) * 0.1)


def mid_streams(model, ids, mask):
    """resid_mid of every block: the input of the norm before each MLP."""
    base = model.base_model
    if hasattr(base, "h"):
        blocks = base.h
    else:
        blocks = base.decoder.layers if hasattr(base, "decoder") else base.layers
    captured, handles = [], []
    for block in blocks:
        # Gemma 2's post_attention_layernorm normalizes the attention output; its MLP's is
        # pre_feedforward_layernorm. OPT's is the last. OLMo 2's MLP reads the stream itself.
        for name in ("ln_2", "pre_feedforward_layernorm", "post_feedforward_layernorm",
                     "post_attention_layernorm", "final_layer_norm"):
            if hasattr(block, name):
                norm = block.mlp if name == "post_feedforward_layernorm" else getattr(block, name)
                break
        # OPT's MLP runs on the stream flattened to [batch * t, d].
        handles.append(norm.register_forward_hook(
            lambda m, args, out: captured.append(args[0].reshape(*ids.shape, -1))))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    return captured


def greedy(model, lens, prompt, layer, num_layers):
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            out = model(torch.tensor([tokens]), output_hidden_states=True)
            if layer == num_layers:
                logits = out.logits[0, -1]
            else:
                logits = lens.forward(out.hidden_states[layer][:, -1], layer)[0]
            tokens.append(int(logits.argmax()))
    return torch.tensor(tokens[len(prompt):])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", required=True, help="folder with manifest.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.models, "manifest.json")) as f:
        manifest = json.load(f)
    written = []
    for index, entry in enumerate(manifest):
        name, folder = entry["name"], entry["dir"]
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        cfg = model.config
        if getattr(cfg, "word_embed_proj_dim", cfg.hidden_size) != cfg.hidden_size:
            # tuned-lens 0.2.0's Unembed applies the OPT head to the final norm's output without
            # the decoder's project_out, which fails on a narrower head: no reference to hold.
            continue
        L, V = cfg.num_hidden_layers, cfg.vocab_size
        out_dir = os.path.join(args.out, name)
        os.makedirs(out_dir, exist_ok=True)
        TunedLens.from_model(model).save(os.path.join(out_dir, "zero"))
        lens = TunedLens.from_model(model)
        randomize(lens, 100 + index)
        lens.save(os.path.join(out_dir, "tuned"))
        logit = LogitLens.from_model(model)

        g = torch.Generator().manual_seed(200 + index)
        # The padded batch runs first, each row as it would alone (alone.py); transformers'
        # dynamic rope keeps the frequencies of the longest sequence seen so far, so every call
        # must meet the model in a known state.
        t = {}
        batch_ids = torch.randint(1, V, (2, 9), generator=g)
        batch_mask = torch.ones_like(batch_ids)
        batch_mask[1, 6:] = 0
        t["batch_ids"], t["batch_mask"] = batch_ids, batch_mask
        with torch.no_grad():
            hidden = alone.per_request(
                model, batch_ids, batch_mask,
                lambda i, m: list(model(input_ids=i, attention_mask=m,
                                        output_hidden_states=True).hidden_states))
            t["tuned_layer_logits"] = torch.stack([lens.forward(hidden[i], i) for i in range(L)])
            t["logit_layer_logits"] = torch.stack([logit.forward(hidden[i], i) for i in range(L)])
            # GPT-J's attention and MLP read the same norm: no resid_mid.
            if not getattr(cfg, "use_parallel_residual", cfg.model_type == "gptj"):
                mids = alone.per_request(model, batch_ids, batch_mask,
                                         lambda i, m: mid_streams(model, i, m))
                t["mid_layer_logits"] = torch.stack([lens.forward(mids[i], i) for i in range(L)])
            if index == 0:  # float16 translators, read back upcast
                half = TunedLens.from_model(model)
                half.load_state_dict(lens.state_dict())
                half.layer_translators.half()
                half.save(os.path.join(out_dir, "tuned_fp16"))
                half.layer_translators.float()
                t["fp16_layer_logits"] = torch.stack([half.forward(hidden[i], i) for i in range(L)])
        ids = torch.randint(1, V, (10,), generator=g).tolist()
        targets = ids[1:] + [ids[0]]
        anti = torch.randint(0, V, (10,), generator=g).tolist()
        t.update({"input_ids": torch.tensor(ids), "targets": torch.tensor(targets),
                  "anti_targets": torch.tensor(anti)})
        tuned = PredictionTrajectory.from_lens_and_model(lens, model, ids, targets=targets,
                                                         anti_targets=anti)
        plain = PredictionTrajectory.from_lens_and_model(logit, model, ids, targets=targets,
                                                         anti_targets=anti)
        masked = PredictionTrajectory.from_lens_and_model(lens, model, ids, targets=targets,
                                                          anti_targets=anti, mask_input=True)
        t["tuned_log_probs"] = torch.from_numpy(tuned.log_probs)
        t["logit_log_probs"] = torch.from_numpy(plain.log_probs)
        for stat in ["entropy", "forward_kl", "cross_entropy", "rank", "max_probability"]:
            t[f"tuned_{stat}"] = torch.from_numpy(getattr(tuned, stat)().stats.astype("float32"))
        t["tuned_log_prob_diff"] = torch.from_numpy(tuned.log_prob_diff().stats.astype("float32"))
        t["cmp_kl"] = torch.from_numpy(tuned.kl_divergence(plain).stats.astype("float32"))
        t["cmp_js"] = torch.from_numpy(tuned.js_divergence(plain).stats.astype("float32"))
        t["cmp_tv"] = torch.from_numpy(tuned.total_variation(plain).stats.astype("float32"))
        for stat in ["entropy", "cross_entropy", "max_probability"]:
            t[f"masked_{stat}"] = torch.from_numpy(getattr(masked, stat)().stats.astype("float32"))

        for layer in sorted({0, L // 2, L - 1, L}):
            t[f"generated_{layer}"] = greedy(model, lens, ids[:5], layer, L)
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(out_dir, "reference.safetensors"))
        written.append({"name": name, "model_dir": folder, "lens_dir": out_dir, "num_layers": L})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(written, f, indent=1)


if __name__ == "__main__":
    main()
