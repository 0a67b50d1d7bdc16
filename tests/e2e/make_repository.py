"""Builds the model repository the end-to-end tests serve:

  kjv-gpt2/                the demo model (its files, lenses and SAEs linked), with
    lenses/random-tuned/   a tuned lens with random translators, saved by tuned-lens's own save()
    saes/wrong-hook/       the demo SAE with cfg.json naming a hook of another width (512)
  slow-gpt2/               a larger random-init GPT-2 written by transformers' save_pretrained,
                           whose generation takes long enough to observe cancellation, deadlines
                           and unloading under load.
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from tuned_lens.nn.lenses import TunedLens


def link_children(source, out, skip=()):
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(source):
        link = os.path.join(out, name)
        if name not in skip and not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(source, name)), link)


def wrong_hook_sae(source, out):
    """The demo SAE (d_in 128) pointed at blocks.0.mlp.hook_post (width 512)."""
    link_children(source, out, skip=("cfg.json",))
    with open(os.path.join(source, "cfg.json")) as f:
        cfg = json.load(f)
    cfg["metadata"]["hook_name"] = "blocks.0.mlp.hook_post"
    with open(os.path.join(out, "cfg.json"), "w") as f:
        json.dump(cfg, f)


def demo_with_lens(source, out):
    if os.path.islink(os.path.join(out, "saes")):  # the layout of earlier builds
        os.unlink(os.path.join(out, "saes"))
    link_children(source, out, skip=("lenses", "saes"))
    os.makedirs(os.path.join(out, "lenses"), exist_ok=True)  # tests write lenses here
    link_children(os.path.join(source, "lenses"), os.path.join(out, "lenses"))
    link_children(os.path.join(source, "saes"), os.path.join(out, "saes"))
    wrong_hook_sae(os.path.join(source, "saes", "res3-topk"),
                   os.path.join(out, "saes", "wrong-hook"))
    lens_dir = os.path.join(out, "lenses", "random-tuned")
    if os.path.exists(os.path.join(lens_dir, "params.pt")):
        return
    model = transformers.AutoModelForCausalLM.from_pretrained(source)
    lens = TunedLens.from_model(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for translator in lens.layer_translators:
            translator.weight.copy_(torch.randn(translator.weight.shape, generator=g) * 0.05)
            translator.bias.copy_(torch.randn(translator.bias.shape, generator=g) * 0.1)
    lens.save(lens_dir)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    demo = os.path.join(args.out, "kjv-gpt2")
    if os.path.islink(demo):  # the layout of earlier builds: the whole folder linked
        os.unlink(demo)
    demo_with_lens(args.demo, demo)
    slow = os.path.join(args.out, "slow-gpt2")
    if not os.path.exists(os.path.join(slow, "model.safetensors")):
        torch.manual_seed(0)
        config = transformers.GPT2Config(vocab_size=4096, n_positions=2048, n_embd=512, n_layer=8,
                                         n_head=8, bos_token_id=4095, eos_token_id=4095)
        model = transformers.GPT2LMHeadModel(config)
        model.save_pretrained(slow, safe_serialization=True)
        shutil.copy(os.path.join(args.demo, "tokenizer.json"), slow)


if __name__ == "__main__":
    main()
