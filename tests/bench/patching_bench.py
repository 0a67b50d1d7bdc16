#!/usr/bin/env python3
"""Activation-patching sweep: lensd's engine against transformer_lens.patching, same weights, same
inputs, same CPU threads, one run.

The sweep is TransformerLens's get_act_patch_resid_pre (resid_pre x every layer x every position,
denoising: the corrupted run with the clean run's stream patched in at one (layer, position) per
run), with the metric logit(target) - logit(foil) at the last position, on a random-init GPT-2
checkpoint of the GPT-2-small shape (12 layers, d_model 768, vocab 50257; save_pretrained) and
24-token inputs.
  transformer_lens:  patching.get_act_patch_resid_pre on a HookedTransformer holding the same
                     weights unprocessed (tests/parity/intervention_reference.py's hooked());
                     its time includes run_with_cache of the clean input, which it needs;
  lensd:             lensd-patching-bench, engine::PatchActivations as the ActivationPatching RPC
                     runs it (clean and corrupted passes included).
Prints both times, the speedup and the largest difference between the two grids.

    .venv/bin/python tests/bench/patching_bench.py --bench build/tests/bench/lensd-patching-bench
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
from intervention_reference import hooked  # noqa: E402
from transformer_lens import patching  # noqa: E402

SHAPES = {
    "gpt2-small": dict(),
    "demo": dict(vocab_size=4096, n_positions=256, n_embd=128, n_layer=6, n_head=4),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="the lensd-patching-bench binary")
    parser.add_argument("--shape", default="gpt2-small", choices=sorted(SHAPES))
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.GPT2Config(**SHAPES[args.shape], resid_pdrop=0, embd_pdrop=0,
                                     attn_pdrop=0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, config.vocab_size, (1, args.tokens), generator=g)
    corrupted = clean.clone()
    corrupted[0, 3] = (clean[0, 3] + 1) % config.vocab_size
    target, foil = 11, 13
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        tl = hooked(hf)

        def metric(logits):
            return logits[0, -1, target] - logits[0, -1, foil]

        with torch.no_grad():
            start = time.perf_counter()
            _, cache = tl.run_with_cache(clean)
            theirs = patching.get_act_patch_resid_pre(tl, corrupted, cache, metric)
            tl_seconds = time.perf_counter() - start
        out = subprocess.run(
            [args.bench, f"--model={folder}", f"--threads={args.threads}",
             f"--clean={json.dumps(clean[0].tolist())}",
             f"--corrupted={json.dumps(corrupted[0].tolist())}", f"--target={target}",
             f"--foil={foil}"], check=True, capture_output=True, text=True).stdout
    ours = json.loads(out)
    grid = torch.tensor(ours["grid"]).view(ours["shape"])
    diff = (grid - theirs).abs().max().item()
    print(f"resid_pre patching sweep, {args.shape} shape, {args.tokens} tokens, "
          f"{config.n_layer} x {args.tokens} = {ours['patched_runs']} patched runs, "
          f"{args.threads} threads")
    print(f"  transformer_lens.patching  {tl_seconds:8.2f} s  ({ours['patched_runs']} forwards)")
    print(f"  lensd engine               {ours['seconds']:8.2f} s  ({ours['forward_passes']} "
          f"batched passes)")
    print(f"  speedup x{tl_seconds / ours['seconds']:.1f}; max |grid difference| {diff:.2e}")


if __name__ == "__main__":
    main()
