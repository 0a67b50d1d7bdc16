"""Reference outputs for lens evaluation: tuned-lens 0.2.0's own evaluation loop (`Eval.execute`
of tuned_lens/scripts/eval_loop.py, unmodified) on a random-init GPT-2 with the logit lens and a
tuned lens with random translators (saved by tuned-lens's save()), with the model, the lenses and
the batches handed over directly instead of through its hub/datasets loaders, and a fixed
nats-to-bits-per-byte ratio.

Writes <out>/model/, <out>/lens/, <out>/tokens.bin (uint16 [batches x batch, seq_len], in the
order evaluated), <out>/case.json (batch, seq_len, nats_to_bpb) and <out>/eval/
aggregate_metrics.json (tuned-lens's own output file)."""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers

import tuned_lens.scripts.eval_loop as eval_loop
import tuned_lens.scripts.ingredients as ing
from tuned_lens.nn.lenses import TunedLens

NATS_TO_BPB = 0.75
BATCH = 2
SEQ_LEN = 24
BATCHES = 5


class Loader(list):
    """The part of DataLoader2 the loop uses."""

    def seed(self, seed):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = transformers.GPT2Config(vocab_size=512, n_positions=64, n_embd=48, n_layer=4,
                                     n_head=4, initializer_range=0.4)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(out / "model", safe_serialization=True)
    lens = TunedLens.from_model(model)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for translator in lens.layer_translators:
            translator.weight.copy_(torch.randn(translator.weight.shape, generator=g) * 0.05)
            translator.bias.copy_(torch.randn(translator.bias.shape, generator=g) * 0.1)
    lens.save(out / "lens")
    tokens = torch.randint(512, (BATCHES * BATCH, SEQ_LEN), generator=g)
    tokens.numpy().astype(np.uint16).tofile(out / "tokens.bin")
    batches = Loader({"input_ids": tokens[i:i + BATCH]} for i in range(0, BATCHES * BATCH, BATCH))

    run = eval_loop.Eval(data=ing.Data(), model=ing.Model(name=str(out / "model")),
                         dist=ing.Distributed(per_gpu_batch_size=BATCH), output=out / "eval",
                         lens_name=str(out / "lens"), lens_types=["logit", "tuned"])
    run.data.load = lambda tokenizer: (list(batches), NATS_TO_BPB)
    run.dist.data_loader = lambda data: batches
    # Eval.execute asserts the tokenizer is truthy; the batches are already tokens.
    run.model.load = lambda device, must_use_cache=False: (model, object())
    run.execute()
    with open(out / "case.json", "w") as f:
        json.dump({"batch": BATCH, "seq_len": SEQ_LEN, "batches": BATCHES,
                   "nats_to_bpb": NATS_TO_BPB}, f)


if __name__ == "__main__":
    main()
