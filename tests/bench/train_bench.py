#!/usr/bin/env python3
"""Tuned-lens training throughput: lensd's engine against tuned-lens's own training loop, same
checkpoint, same data in the same order, same hyper-parameters, same CPU threads, one run.

tuned-lens: Train.execute of tuned_lens/scripts/train_loop.py (0.2.0, unmodified), with its data
            pipeline replaced by the same micro-batches, as tests/parity/train_reference.py runs
            it; --precision float32 turns its bfloat16 autocast off, bfloat16 keeps it (what its
            loop does on a GPU);
lensd:      lensd-train-bench, RunLensTraining as a training job runs it, at the same precision.
Both train a KL lens (the default) on a random-init GPT-2 checkpoint (save_pretrained). The first
step is a warm-up; throughput is tokens per second over the remaining steps.

    .venv/bin/python tests/bench/train_bench.py --bench build/tests/bench/lensd-train-bench
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
import train_reference  # noqa: E402  (tuned-lens's Train with its data given)
import tuned_lens.scripts.ingredients as ing  # noqa: E402
import tuned_lens.scripts.train_loop as train_loop  # noqa: E402

SHAPES = {
    "gpt2-small": dict(),  # 12 layers, d_model 768, vocab 50257
    "demo": dict(vocab_size=4096, n_positions=256, n_embd=128, n_layer=6, n_head=4),
}


class TimedTrain(train_reference.ReferenceTrain):
    """ReferenceTrain that also records when each optimizer step ends."""

    def _log(self, opt, step, losses, tuned_lens, nats_to_bpb):
        super()._log(opt, step, losses, tuned_lens, nats_to_bpb)
        self.step_ends.append(time.perf_counter())


def tuned_lens_step_ends(model_dir, tokens, args, work):
    batches = [{"input_ids": tokens[i:i + args.micro_batch]}
               for i in range(0, len(tokens), args.micro_batch)]
    train = TimedTrain(
        model=ing.Model(name=model_dir), data=ing.Data(), opt=ing.Optimizer(),
        dist=ing.Distributed(per_gpu_batch_size=args.micro_batch),
        output=Path(work) / "tuned-lens-lens", num_steps=args.steps,
        tokens_per_step=args.tokens_per_step, loss=train_loop.LossChoice("kl"),
        batches=batches, model_dir=model_dir)
    train.step_ends = []
    start = time.perf_counter()
    train.execute()
    return [t - start for t in train.step_ends], train.recorded[-1]


def throughput(step_ends, tokens_per_step):
    timed = step_ends[-1] - step_ends[0]  # steps 2..N
    return tokens_per_step * (len(step_ends) - 1) / timed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of lensd-train-bench")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--tokens-per-step", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.precision == "float32":
        train_loop.th.autocast = lambda *a, **k: contextlib.nullcontext()
    else:
        train_loop.th.autocast = train_reference.AUTOCAST
    work = tempfile.mkdtemp(prefix="lensd-train-bench-")
    try:
        model_dir = os.path.join(work, "model")
        torch.manual_seed(0)
        config = transformers.GPT2Config(**SHAPES[args.shape])
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(
            model_dir, safe_serialization=True)
        sequences = args.steps * args.tokens_per_step // args.seq
        g = torch.Generator().manual_seed(1)
        tokens = torch.randint(config.vocab_size, (sequences, args.seq), generator=g)
        tokens_file = os.path.join(work, "tokens.u16")
        tokens.numpy().astype(np.uint16).tofile(tokens_file)
        os.makedirs(os.path.join(work, "lensd"))
        ours = json.loads(subprocess.run(
            [args.bench, f"--model={model_dir}", f"--tokens={tokens_file}",
             f"--workdir={os.path.join(work, 'lensd')}", f"--threads={args.threads}",
             f"--seq={args.seq}", f"--steps={args.steps}",
             f"--tokens_per_step={args.tokens_per_step}", f"--micro_batch={args.micro_batch}",
             f"--precision={args.precision}"],
            check=True, capture_output=True, text=True).stdout)
        their_ends, their_losses = tuned_lens_step_ends(model_dir, tokens, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    theirs = throughput(their_ends, args.tokens_per_step)
    mine = throughput(ours["step_ends"], args.tokens_per_step)
    print(f"tuned-lens training (KL), {args.shape} shape ({config.n_layer} layers, d_model "
          f"{config.n_embd}, vocab {config.vocab_size}), {args.steps} steps of "
          f"{args.tokens_per_step} tokens ({args.micro_batch} x {args.seq} per forward pass), "
          f"{args.threads} CPU threads, {args.precision}; first step not timed\n")
    print(f"{'':28} {'tokens/s':>10} {'s/step':>8}")
    for name, rate in (("tuned-lens (Python)", theirs), ("lensd engine", mine)):
        print(f"{name:28} {rate:10.0f} {args.tokens_per_step / rate:8.2f}")
    gap = max(abs(a - b) / max(abs(b), 1e-12) for a, b in
              zip(ours["final_layer_losses"], their_losses))
    print(f"\nspeedup {mine / theirs:.2f}x; last-step per-layer losses agree within "
          f"{gap:.1e} relative")


if __name__ == "__main__":
    main()
