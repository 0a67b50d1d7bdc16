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
Each in float32 and in bfloat16 (model and lens loaded in that dtype; tuned-lens's unembeddings
return float32 logits, which PredictionTrajectory needs for numpy), beside the rate of the
unembedding's matrix product in the same dtype, measured in the same run: lensd's achieved rate
counts the FLOPs the decode must do (forward, translators, unembeddings).

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
    trajectories(model, lens, prompts)
    return time.perf_counter() - start


def float32_logits(model, lens):
    """PredictionTrajectory hands log-probs to numpy, which has no bfloat16: with weights in
    bfloat16, the model's and the lens's logits are handed on in float32 (as lensd's statistics
    take them): a forward hook on the model's unembedding, and a wrapper of lens.forward (which
    PredictionTrajectory calls directly)."""
    model.get_output_embeddings().register_forward_hook(lambda module, i, output: output.float())
    lens_forward = lens.forward
    lens.forward = lambda h, idx: lens_forward(h, idx).float()


def trajectories(model, lens, prompts):
    for ids in prompts:
        targets = ids[1:] + [ids[0]]
        traj = PredictionTrajectory.from_lens_and_model(lens, model, ids, targets=targets)
        traj.entropy(), traj.forward_kl(), traj.cross_entropy(), traj.max_probability()
        top = np.argpartition(-traj.log_probs, 5, axis=-1)[..., :5]
        values = np.take_along_axis(traj.log_probs, top, -1)
        np.take_along_axis(top, np.argsort(-values, -1), -1)


def matmul_rate(rows, d_model, vocab, dtype, repeats=6):
    """Best-of-`repeats` FLOP/s of the unembedding's shape, [rows, d] x [d, vocab], in `dtype`
    through the same libtorch: at::linear (oneDNN for bfloat16, the BLAS for float32) and, where
    this torch has it, oneDNN's float32 matmul (mkldnn::_linear_pointwise, what lensd runs for
    float32); the faster of the two."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, d_model, generator=g).to(dtype)
    w = torch.randn(vocab, d_model, generator=g).to(dtype)
    products = [lambda: torch.nn.functional.linear(a, w)]
    if dtype == torch.float32 and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        products.append(lambda: torch.ops.mkldnn._linear_pointwise(a, w, None, "none", [], ""))
    best = float("inf")
    for product in products:
        product()
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - start)
    return 2.0 * rows * d_model * vocab / best


def decode_flops(config, tokens):
    """Multiply-adds x 2 an all-layer tuned-lens decode must do: the forward pass, then per layer
    the translator (d x d) and the unembedding (d x vocab), and the model's own unembedding."""
    d, layers, vocab = config.n_embd, config.n_layer, config.vocab_size
    inner = config.n_inner or 4 * d
    per_block = 4 * d * d + 2 * d * inner  # q, k, v, out projections and the MLP
    forward = 2 * tokens * layers * per_block
    lenses = 2 * tokens * layers * (d * d + d * vocab)
    return forward + lenses + 2 * tokens * d * vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of lensd-decode-bench")
    ap.add_argument("--workdir", default="build/bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="prompts per lensd Decode call")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = os.path.join(args.workdir, "gpt2-small")
    lens_dir = os.path.join(args.workdir, "gpt2-small-lens")
    if not os.path.exists(os.path.join(folder, "config.json")):
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(GPT2Config()).save_pretrained(folder, safe_serialization=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    if not os.path.exists(os.path.join(lens_dir, "params.pt")):
        lens = TunedLens.from_model(model)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for t in lens.layer_translators:
                t.weight.copy_(torch.randn(t.weight.shape, generator=g) * 0.02)
        lens.save(lens_dir)

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, model.config.vocab_size, (args.seq,), generator=g).tolist()
               for _ in range(args.prompts)]
    cfg = model.config
    flops = decode_flops(cfg, args.prompts * args.seq)
    print(f"all-layer decoding, GPT-2-small shape (12 layers + output, vocab 50257), tuned lens, "
          f"{args.prompts} prompts x {args.seq} tokens, {args.threads} CPU threads; matmul: "
          f"[{args.batch * args.seq} x {cfg.n_embd}] x [{cfg.n_embd} x {cfg.vocab_size}], best of 6\n")
    print(f"{'dtype':10} {'tuned-lens tok/s':>17} {'lensd tok/s':>12} {'speedup':>8} "
          f"{'lensd GFLOP/s':>14} {'matmul GFLOP/s':>15} {'of matmul':>10}")
    rows = []
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        m = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        lens = TunedLens.from_model_and_pretrained(m, lens_dir).to(dtype).eval()
        if dtype != torch.float32:
            float32_logits(m, lens)
        theirs = args.prompts * args.seq / tuned_lens_seconds(m, lens, prompts)
        ours = json.loads(subprocess.run(
            [args.bench, f"--model={folder}", f"--lens={lens_dir}", f"--threads={args.threads}",
             f"--prompts={args.prompts}", f"--batch={args.batch}", f"--seq={args.seq}",
             f"--dtype={name}"], check=True, capture_output=True, text=True).stdout)["tokens_per_s"]
        rate = matmul_rate(args.batch * args.seq, cfg.n_embd, cfg.vocab_size, dtype)
        achieved = flops / (args.prompts * args.seq / ours)
        rows.append((name, achieved, rate))
        print(f"{name:10} {theirs:17.0f} {ours:12.0f} {ours / theirs:7.2f}x "
              f"{achieved / 1e9:14.1f} {rate / 1e9:15.1f} {achieved / rate:9.0%}")
    best = max(rows, key=lambda r: r[1])
    print(f"\nlensd's best dtype ({best[0]}) runs at {best[1] / max(r[2] for r in rows):.0%} of the "
          f"best matmul rate measured ({max(r[2] for r in rows) / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
