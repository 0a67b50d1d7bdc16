"""Reference outputs for lens training: tuned-lens 0.2.0's own training loop (`Train.execute` of
tuned_lens/scripts/train_loop.py, unmodified) on random-init checkpoints, with:

  * the data handed over as a fixed sequence of micro-batches (written to tokens.bin, uint16, in
    the order used), instead of tuned-lens's datasets/torchdata pipeline, so that lensd trains on
    the same data in the same order;
  * bfloat16 autocast turned off, so both sides compute in float32 on the CPU, except in the
    "kl_bf16" case, which keeps the loop's `th.autocast("cpu", dtype=th.bfloat16)` as it is;
  * the per-layer losses of every step recorded where the loop hands them to its logger.

Per case it writes <out>/<case>/: model/ (save_pretrained), tokens.bin, case.json (options and
per-step per-layer losses), lens/ (the trained lens, saved by tuned-lens's own save()), and
warm/ (the warm-start lens, for the case that uses one).
"""
import argparse
import contextlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import transformers

import tuned_lens.scripts.ingredients as ing
import tuned_lens.scripts.train_loop as train_loop
from tuned_lens.nn.lenses import TunedLens

AUTOCAST = train_loop.th.autocast


class ReferenceTrain(train_loop.Train):
    """tuned-lens's Train with its data given and its losses recorded."""

    def __init__(self, *args, batches, model_dir, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = batches
        self.model_dir = model_dir
        self.recorded = []

    def setup(self):
        model = transformers.AutoModelForCausalLM.from_pretrained(self.model_dir)
        model.eval().requires_grad_(False)
        lens = self.get_lens(model)
        params = [p for p in lens.parameters() if p.requires_grad]
        opt = self.opt.create_optim(params)
        scheduler = self.opt.create_scheduler(opt, self.num_steps)
        state = train_loop.State(dataloader=self.batches, lens=lens, opt=opt,
                                 scheduler=scheduler, wandb_id=None, nats_to_bpb=1.0)
        grad_acc_steps = self.calculate_gradient_accumulation_steps(
            self.batches[0]["input_ids"].shape[1])
        return state, model, grad_acc_steps

    def _log(self, opt, step, losses, tuned_lens, nats_to_bpb):
        layers = len(losses)
        self.recorded.append([float(np.mean(losses[f"translator_{i}"])) for i in range(layers)])


def make_model(kind, path):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=512, n_positions=64, n_embd=48, n_layer=4,
                                         n_head=4, initializer_range=0.4)
    else:
        config = transformers.LlamaConfig(vocab_size=512, hidden_size=48, intermediate_size=96,
                                          num_hidden_layers=3, num_attention_heads=4,
                                          num_key_value_heads=2, max_position_embeddings=64,
                                          initializer_range=0.4)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path, safe_serialization=True)
    return model


CASES = {
    # name: (model, options)
    "kl": ("gpt2", dict(loss="kl", num_steps=24, micro_batch=2, grad_acc=2, seq_len=32)),
    "ce": ("llama", dict(loss="ce", num_steps=20, micro_batch=1, grad_acc=3, seq_len=24)),
    "bias_only_warm": ("gpt2", dict(loss="kl", num_steps=20, micro_batch=2, grad_acc=1,
                                    seq_len=32, bias_only=True, warm=True, lr_scale=2.0)),
    "kl_bf16": ("gpt2", dict(loss="kl", num_steps=20, micro_batch=2, grad_acc=2, seq_len=32,
                             autocast=True)),
}


def run_case(name, out):
    kind, o = CASES[name]
    train_loop.th.autocast = (AUTOCAST if o.get("autocast") else
                              lambda *args, **kwargs: contextlib.nullcontext())
    case_dir = Path(out) / name
    model_dir = case_dir / "model"
    model = make_model(kind, model_dir)
    g = torch.Generator().manual_seed(1)
    sequences = o["num_steps"] * o["grad_acc"] * o["micro_batch"]
    tokens = torch.randint(model.config.vocab_size, (sequences, o["seq_len"]), generator=g)
    tokens.numpy().astype(np.uint16).tofile(case_dir / "tokens.bin")
    batches = [{"input_ids": tokens[i:i + o["micro_batch"]]}
               for i in range(0, sequences, o["micro_batch"])]
    warm = None
    if o.get("warm"):
        lens = TunedLens.from_model(model)
        with torch.no_grad():
            for translator in lens.layer_translators:
                translator.weight.copy_(torch.randn(translator.weight.shape, generator=g) * 0.05)
                translator.bias.copy_(torch.randn(translator.bias.shape, generator=g) * 0.1)
        warm = case_dir / "warm"
        lens.save(warm)
    train = ReferenceTrain(
        model=ing.Model(name=str(model_dir)), data=ing.Data(),
        opt=ing.Optimizer(lr_scale=o.get("lr_scale", 1.0)),
        dist=ing.Distributed(per_gpu_batch_size=o["micro_batch"]),
        output=case_dir / "lens", num_steps=o["num_steps"],
        tokens_per_step=o["grad_acc"] * o["micro_batch"] * o["seq_len"],
        loss=train_loop.LossChoice(o["loss"]), bias_only=o.get("bias_only", False),
        lens_name_or_path=str(warm) if warm else None,
        batches=batches, model_dir=str(model_dir))
    train.execute()
    with open(case_dir / "case.json", "w") as f:
        json.dump({"options": o, "sequences": sequences, "losses": train.recorded}, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in CASES:
        os.makedirs(Path(args.out) / name, exist_ok=True)
        run_case(name, args.out)


if __name__ == "__main__":
    main()
