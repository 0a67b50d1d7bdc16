#!/usr/bin/env python3
"""Forward-pass throughput: lensd's engine against transformers, same checkpoint, same threads.

Writes random-init checkpoints with transformers' save_pretrained (a GPT-2 small and a
Llama-style model with grouped-query attention), then for each times full forwards (logits at
every position) of a batch of random prompts with lensd-forward-bench and with transformers in
this process, both with the same number of CPU threads, and prints tokens/s for each.

    .venv/bin/python tests/bench/forward_bench.py --bench build/tests/bench/lensd-forward-bench
"""
import argparse
import json
import os
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

CONFIGS = {
    "gpt2-small (124M)": GPT2Config(),
    "llama-style GQA (d=1024, 8 layers, 131M)": LlamaConfig(
        vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
        num_attention_heads=16, num_key_value_heads=4),
}


def transformers_tokens_per_s(model, batch, seq, iters, vocab):
    torch.manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, seq))
    with torch.inference_mode():
        for _ in range(2):
            model(tokens).logits.sum().item()
        start = time.perf_counter()
        for _ in range(iters):
            model(tokens).logits.sum().item()
        seconds = time.perf_counter() - start
    return batch * seq * iters / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of lensd-forward-bench")
    ap.add_argument("--workdir", default="build/bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"forward throughput, batch {args.batch} x {args.seq} tokens, {args.threads} CPU threads, "
          f"float32, torch {torch.__version__}\n")
    print(f"{'model':44} {'lensd tok/s':>12} {'transformers tok/s':>19} {'speedup':>8}")
    for name, config in CONFIGS.items():
        folder = os.path.join(args.workdir, name.split(" ")[0])
        if not os.path.exists(os.path.join(folder, "config.json")):
            torch.manual_seed(0)
            AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
        ours = json.loads(subprocess.run(
            [args.bench, f"--model={folder}", f"--threads={args.threads}", f"--batch={args.batch}",
             f"--seq={args.seq}", f"--iters={args.iters}"],
            check=True, capture_output=True, text=True).stdout)
        theirs = transformers_tokens_per_s(model, args.batch, args.seq, args.iters, config.vocab_size)
        print(f"{name:44} {ours['tokens_per_s']:12.0f} {theirs:19.0f} "
              f"{ours['tokens_per_s'] / theirs:7.2f}x")
        del model


if __name__ == "__main__":
    main()
