"""Random SAEs written by SAELens 6.54 (save_model) and sparsify 1.3 (save_to_disk), one folder per
architecture and option, with the libraries' own encode and decode of random inputs beside each
(reference.safetensors: x, features, reconstruction) for sae_parity_test.cc; and the demo model's
SAE as SAELens's SAE.load_from_disk reads it. sparsify decodes with its eager embedding_bag (its
Triton kernel needs a GPU; SPARSIFY_DISABLE_TRITON is its own switch).

Usage: sae_reference.py --out DIR --demo-sae deploy/models/kjv-gpt2/saes/res3-topk"""
import argparse
import json
import os
import shutil

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
import torch
from safetensors.torch import save_file

from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAE
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sparsify.config import SparseCoderConfig
from sparsify.sparse_coder import SparseCoder
from transformers import AutoModelForCausalLM, BloomConfig, GPTJConfig

D_IN, D_SAE = 16, 64


def randomize(module, seed):
    """Every parameter random (the libraries initialise biases to zero), thresholds positive."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            values = torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.1)
            if "threshold" in name:
                values = values.abs() + 0.05
            p.copy_(values)


def inputs(seed, shape=(2, 5, D_IN)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 1.5 + 0.3


def write_reference(folder, x, features, reconstruction):
    save_file({"x": x.contiguous(), "features": features.contiguous(),
               "reconstruction": reconstruction.contiguous()},
              os.path.join(folder, "reference.safetensors"))


def saelens_case(out, name, sae, seed, fold_scale=None, rewrite_cfg=None):
    folder = os.path.join(out, name)
    randomize(sae, seed)
    sae.save_model(folder)
    if rewrite_cfg is not None:
        with open(os.path.join(folder, "cfg.json")) as f:
            cfg = rewrite_cfg(json.load(f))
        with open(os.path.join(folder, "cfg.json"), "w") as f:
            json.dump(cfg, f)
    if fold_scale is not None:  # an unfolded training checkpoint: the scale beside the weights
        with open(os.path.join(folder, "activation_scaler.json"), "w") as f:
            json.dump({"scaling_factor": fold_scale}, f)
    # The reference is what SAELens itself loads from the folder.
    loaded = SAE.load_from_disk(folder)
    if fold_scale is not None:
        loaded.fold_activation_norm_scaling_factor(fold_scale)
    x = inputs(seed + 1)
    with torch.no_grad():
        features = loaded.encode(x)
        reconstruction = loaded.decode(features)
    write_reference(folder, x, features, reconstruction)
    return {"name": name, "dir": folder, "format": "saelens",
            "active": int((features != 0).sum())}


def sparsify_case(out, name, cfg, seed):
    folder = os.path.join(out, name)
    coder = SparseCoder(D_IN, cfg)
    randomize(coder, seed)
    coder.save_to_disk(folder)
    loaded = SparseCoder.load_from_disk(folder)
    x = inputs(seed + 1).view(-1, D_IN)
    with torch.no_grad():
        top_acts, top_indices, _ = loaded.encode(x)
        reconstruction = loaded.decode(top_acts, top_indices)
        if loaded.W_skip is not None:
            reconstruction = reconstruction + x @ loaded.W_skip.mT
        features = torch.zeros(x.shape[0], loaded.num_latents).scatter(-1, top_indices, top_acts)
    write_reference(folder, x, features, reconstruction)
    return {"name": name, "dir": folder, "format": "sparsify",
            "active": int((features != 0).sum())}


def demo_case(out, source, seed):
    """The demo model's SAE (deploy/training/train_demo_sae.py), read by SAELens's own loader:
    checks that the script writes a folder SAELens reads as lensd does."""
    folder = os.path.join(out, "demo_res3_topk")
    shutil.copytree(source, folder)
    loaded = SAE.load_from_disk(folder)
    assert loaded.cfg.architecture() == "topk", loaded.cfg
    assert loaded.cfg.metadata.hook_name == "blocks.3.hook_resid_pre", loaded.cfg.metadata
    g = torch.Generator().manual_seed(seed)
    x = loaded.b_dec.detach() + 4 * torch.randn((2, 5, loaded.cfg.d_in), generator=g)
    with torch.no_grad():
        features = loaded.encode(x)
        reconstruction = loaded.decode(features)
    write_reference(folder, x, features, reconstruction)
    return {"name": "demo_res3_topk", "dir": folder, "format": "saelens",
            "active": int((features != 0).sum())}


def model_case(out, name, config, hook_name, capture, seed):
    """An SAE on a small random model that transformers writes (families added after GPT-2):
    reference features are SAELens's encode of the activation at hook_name, captured from
    transformers' own forward by `capture(model, ids)`; the C++ test reads them through the
    served model (ServedSaes::Encode)."""
    folder = os.path.join(out, name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    model.save_pretrained(os.path.join(folder, "model"))
    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    randomize(sae, seed)
    sae.cfg.metadata.hook_name = hook_name
    sae.save_model(folder)
    loaded = SAE.load_from_disk(folder)
    assert loaded.cfg.metadata.hook_name == hook_name
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, config.vocab_size, (1, 9), generator=g)
    with torch.no_grad():
        x = capture(model, ids)
        features = loaded.encode(x)
        reconstruction = loaded.decode(features)
    write_reference(folder, x, features, reconstruction)
    return {"name": name, "dir": folder, "format": "saelens", "model": os.path.join(folder, "model"),
            "tokens": ids[0].tolist(), "active": int((features != 0).sum())}


def mlp_output(block):
    def capture(model, ids):
        seen = []
        handle = model.base_model.h[block].mlp.register_forward_hook(
            lambda m, args, output: seen.append(output))
        model(input_ids=ids)
        handle.remove()
        return seen[0]
    return capture


def pre_6_cfg(cfg):
    """The flat keys SAELens wrote before 6.0 (jbloom's GPT-2 SAEs look like this)."""
    return {"d_in": cfg["d_in"], "d_sae": cfg["d_sae"], "hook_point": "blocks.1.hook_resid_pre",
            "hook_point_layer": 1, "model_name": "tiny", "activation_fn_str": "relu",
            "dtype": "torch.float32", "context_size": 128}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--demo-sae", required=True, help="the demo model's SAE folder")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    torch.manual_seed(0)
    base = dict(d_in=D_IN, d_sae=D_SAE)
    cases = [
        saelens_case(args.out, "standard", StandardSAE(StandardSAEConfig(**base)), 10),
        saelens_case(args.out, "standard_no_b_dec_norm_rescale", StandardSAE(StandardSAEConfig(
            **base, apply_b_dec_to_input=False, normalize_activations="constant_norm_rescale")),
            20),
        saelens_case(args.out, "standard_layer_norm", StandardSAE(StandardSAEConfig(
            **base, normalize_activations="layer_norm")), 30),
        saelens_case(args.out, "standard_expected_average", StandardSAE(StandardSAEConfig(
            **base, normalize_activations="expected_average_only_in")), 40, fold_scale=2.5),
        saelens_case(args.out, "standard_pre_6_cfg", StandardSAE(StandardSAEConfig(**base)), 50,
                     rewrite_cfg=pre_6_cfg),
        saelens_case(args.out, "gated", GatedSAE(GatedSAEConfig(**base)), 60),
        saelens_case(args.out, "jumprelu", JumpReLUSAE(JumpReLUSAEConfig(**base)), 70),
        saelens_case(args.out, "topk", TopKSAE(TopKSAEConfig(**base, k=6)), 80),
        saelens_case(args.out, "topk_rescaled", TopKSAE(TopKSAEConfig(
            **base, k=6, rescale_acts_by_decoder_norm=True)), 90),
        sparsify_case(args.out, "sparsify_topk", SparseCoderConfig(num_latents=D_SAE, k=6), 100),
        sparsify_case(args.out, "sparsify_groupmax", SparseCoderConfig(
            num_latents=D_SAE, k=8, activation="groupmax"), 110),
        sparsify_case(args.out, "sparsify_skip", SparseCoderConfig(
            num_latents=D_SAE, k=6, skip_connection=True), 120),
        demo_case(args.out, args.demo_sae, 130),
        # On BLOOM's stream entering block 1 (hidden_states[1]) and GPT-J's MLP output of block 1.
        model_case(args.out, "bloom_resid_pre1", BloomConfig(
            vocab_size=64, hidden_size=D_IN, n_layer=2, n_head=4, initializer_range=0.2),
            "blocks.1.hook_resid_pre",
            lambda model, ids: model(input_ids=ids, output_hidden_states=True).hidden_states[1],
            140),
        model_case(args.out, "gptj_mlp_out1", GPTJConfig(
            vocab_size=64, n_embd=D_IN, n_layer=2, n_head=2, rotary_dim=4, n_positions=32,
            initializer_range=0.2), "blocks.1.hook_mlp_out", mlp_output(1), 150),
    ]
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    for case in cases:
        print(f"{case['name']}: {case['active']} active features")


if __name__ == "__main__":
    main()
