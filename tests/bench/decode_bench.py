#!/usr/bin/env python3
"""All-layer decoding throughput: lensd's engine against tuned-lens, same checkpoint, same lens,
same CPU threads, one run.

A GPT-2-small-shaped random checkpoint (transformers save_pretrained) and a tuned lens with random
translators (tuned-lens save()). Each prompt of 128 random tokens is decoded at every layer plus
the model's output with the top-5 tokens, entropy, forward KL, cross-entropy of the next token
and max probability:
  tuned-lens: PredictionTrajectory.from_lens_and_model per prompt, then its statistics
              (entropy(), forward_kl(), cross_entropy(), max_probability()) and the top-5 tokens
              the way its labels compute them (argpartition, then sort);
  lensd:      lensd-decode-bench, Decode over batches of prompts.

    .venv/bin/python tests/bench/decode_bench.py --bench build/tests/bench/lensd-decode-bench
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, GPT2Config
from tuned_lens.nn.lenses import TunedLens
from tuned_lens.plotting import PredictionTrajectory


def tuned_lens_seconds(model, lens, prompts):
    start = time.perf_counter()
    for ids in prompts:
        targets = ids[1:] + [ids[0]]
        traj = PredictionTrajectory.from_lens_and_model(lens, model, ids, targets=targets)
        traj.entropy(), traj.forward_kl(), traj.cross_entropy(), traj.max_probability()
        top = np.argpartition(-traj.log_probs, 5, axis=-1)[..., :5]
        values = np.take_along_axis(traj.log_probs, top, -1)
        np.take_along_axis(top, np.argsort(-values, -1), -1)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of lensd-decode-bench")
    ap.add_argument("--workdir", default="build/bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="prompts per lensd Decode call")
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = os.path.join(args.workdir, "gpt2-small")
    lens_dir = os.path.join(args.workdir, "gpt2-small-lens")
    if not os.path.exists(os.path.join(folder, "config.json")):
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(GPT2Config()).save_pretrained(folder, safe_serialization=True)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    if not os.path.exists(os.path.join(lens_dir, "params.pt")):
        lens = TunedLens.from_model(model)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for t in lens.layer_translators:
                t.weight.copy_(torch.randn(t.weight.shape, generator=g) * 0.02)
        lens.save(lens_dir)
    lens = TunedLens.from_model_and_pretrained(model, lens_dir).eval()

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, model.config.vocab_size, (args.seq,), generator=g).tolist()
               for _ in range(args.prompts)]
    ours = json.loads(subprocess.run(
        [args.bench, f"--model={folder}", f"--lens={lens_dir}", f"--threads={args.threads}",
         f"--prompts={args.prompts}", f"--batch={args.batch}", f"--seq={args.seq}"],
        check=True, capture_output=True, text=True).stdout)
    theirs = args.prompts / tuned_lens_seconds(model, lens, prompts)
    print(f"all-layer decoding, GPT-2-small shape (12 layers + output, vocab 50257), tuned lens, "
          f"{args.prompts} prompts x {args.seq} tokens, {args.threads} CPU threads\n")
    print(f"{'':28} {'prompts/s':>10} {'tokens/s':>10}")
    print(f"{'tuned-lens (Python)':28} {theirs:10.3f} {theirs * args.seq:10.0f}")
    print(f"{'lensd engine':28} {ours['prompts_per_s']:10.3f} {ours['tokens_per_s']:10.0f}")
    print(f"\nspeedup {ours['prompts_per_s'] / theirs:.2f}x")


if __name__ == "__main__":
    main()
