#!/usr/bin/env python3
"""Trains the demo model's sparse autoencoder: a TopK SAE on the residual stream entering block 3
of deploy/models/kjv-gpt2 (TransformerLens's blocks.3.hook_resid_pre, transformers'
hidden_states[3]), written as a SAELens 6 folder (cfg.json + sae_weights.safetensors) that
lensd and SAELens's SAE.load_from_disk both read.

The activations come from the model (transformers, the same weights lensd serves) run on the demo
text's training chapters (Debian's bible-kjv, as deploy/training/train_demo_model.py) in 128-token
chunks. The SAE is SAELens's TopK architecture: f = ReLU of the k largest entries of
(x - b_dec) W_enc + b_enc (the rest zero), x_hat = f W_dec + b_dec; trained with Adam on the
squared reconstruction error with decoder rows kept at unit norm (Gao et al. 2024, without their
auxiliary loss for dead latents).

    .venv/bin/python deploy/training/train_demo_sae.py --out deploy/models/kjv-gpt2/saes/res3-topk

Deterministic for a given seed, thread count and library versions.
"""
import argparse
import json
import os
import sys
import time

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_demo_model import read_chapters, token_stream  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def activations(model_dir, layer, seq_len, chunks, seed):
    """[chunks x seq_len, d_model] activations at hidden_states[layer] of training chunks."""
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    docs = [f"{title}\n\n{text}" for i, (title, text) in enumerate(read_chapters()) if i % 20 != 19]
    data = token_stream(tok, docs)
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    g = torch.Generator().manual_seed(seed)
    starts = torch.randperm(len(data) // seq_len, generator=g)[:chunks] * seq_len
    out = []
    with torch.no_grad():
        for batch in starts.split(64):
            x = torch.stack([data[s:s + seq_len] for s in batch])
            out.append(model(x, output_hidden_states=True).hidden_states[layer].flatten(0, 1))
    return torch.cat(out)


def encode(x, p, k):
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="the SAE folder to write")
    ap.add_argument("--model", default=os.path.join(ROOT, "deploy/models/kjv-gpt2"))
    ap.add_argument("--layer", type=int, default=3, help="block whose input is read")
    ap.add_argument("--d-sae", type=int, default=1024)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--chunks", type=int, default=4000, help="128-token training chunks")
    ap.add_argument("--batch", type=int, default=4096, help="activations per step")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    start = time.time()
    acts = activations(args.model, args.layer, 128, args.chunks, args.seed)
    held_out, train = acts[:8192], acts[8192:]
    d_in = acts.shape[1]
    print(f"{len(train)} training activations, {len(held_out)} held out, d_in {d_in} "
          f"({time.time() - start:.0f} s)", flush=True)

    w_dec = torch.randn(args.d_sae, d_in)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    p = {"W_enc": w_dec.t().clone(), "b_enc": torch.zeros(args.d_sae), "W_dec": w_dec,
         "b_dec": train.mean(0)}
    for t in p.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(p.values(), lr=args.lr)
    variance = (held_out - held_out.mean(0)).pow(2).sum(-1).mean()

    def evaluate():
        with torch.no_grad():
            f = encode(held_out, p, args.k)
            err = (f @ p["W_dec"] + p["b_dec"] - held_out).pow(2).sum(-1).mean()
            return (err / variance).item(), f

    log = []
    fired = torch.zeros(args.d_sae, dtype=torch.bool)
    for step in range(args.steps):
        x = train[torch.randint(0, len(train), (args.batch,))]
        f = encode(x, p, args.k)
        loss = (f @ p["W_dec"] + p["b_dec"] - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p["W_dec"] /= p["W_dec"].norm(dim=1, keepdim=True)
            fired |= (f > 0).any(0)
        if step % 200 == 0 or step == args.steps - 1:
            fvu, _ = evaluate()
            log.append({"step": step, "train_mse": loss.item(), "held_out_fvu": fvu})
            print(f"step {step}: mse {loss.item():.4f}, held-out FVU {fvu:.4f}", flush=True)
    fvu, f = evaluate()
    dead = int((~(f > 0).any(0)).sum())
    print(f"held-out FVU {fvu:.4f}, {dead} of {args.d_sae} latents never fire on the held-out "
          f"set ({time.time() - start:.0f} s)", flush=True)

    os.makedirs(args.out, exist_ok=True)
    save_file({name: t.detach().contiguous() for name, t in p.items()},
              os.path.join(args.out, "sae_weights.safetensors"))
    cfg = {"d_in": d_in, "d_sae": args.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "reshape_activations": "none", "k": args.k, "rescale_acts_by_decoder_norm": False,
           "architecture": "topk",
           "metadata": {"sae_lens_version": "6.18.0", "model_name": "kjv-gpt2",
                        "hook_name": f"blocks.{args.layer}.hook_resid_pre",
                        "hook_head_index": None, "prepend_bos": False,
                        "exclude_special_tokens": False, "dataset_path": "bible-kjv",
                        "context_size": 128}}
    with open(os.path.join(args.out, "cfg.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    with open(os.path.join(args.out, "training_log.json"), "w") as fh:
        arguments = dict(vars(args), model=os.path.relpath(args.model, ROOT))
        json.dump({"args": arguments, "held_out_fvu": fvu, "dead_latents": dead,
                   "seconds": time.time() - start, "curve": log}, fh, indent=2)


if __name__ == "__main__":
    main()
