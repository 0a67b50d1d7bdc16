"""Loads a lens folder written by lensd with tuned-lens's own TunedLens.from_model_and_pretrained
and writes, for the given token ids, every layer's lens logits as raw float32 [layers, tokens,
vocab] to --out: the outputs the Python library gives for lensd's file."""
import argparse

import numpy as np
import torch
import transformers
from tuned_lens.nn.lenses import TunedLens


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--lens", required=True)
    parser.add_argument("--tokens", required=True, help="comma-separated token ids")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model).eval()
    lens = TunedLens.from_model_and_pretrained(model, args.lens)
    ids = torch.tensor([[int(t) for t in args.tokens.split(",")]])
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states[:-1]
        logits = torch.stack([lens(h, idx=i)[0] for i, h in enumerate(hidden)])
    logits.float().numpy().astype(np.float32).tofile(args.out)


if __name__ == "__main__":
    main()
