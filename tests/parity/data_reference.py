"""Reference chunking: tuned-lens 0.2.0's own chunk_and_tokenize (tuned_lens/data.py) over a
`datasets.Dataset` of documents (also written as .jsonl) with the demo model's tokenizer
(transformers' PreTrainedTokenizerFast over its tokenizer.json).

Writes <out>/docs.jsonl, <out>/chunks.u32 (the chunks in order) and <out>/data.json
({"chunk_len", "num_chunks", "nats_to_bits_per_byte"})."""
import argparse
import json
import random
from pathlib import Path

import datasets
import numpy as np
import transformers
from tuned_lens.data import chunk_and_tokenize


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    words = ["the", "LORD", "said", "unto", "Moses", "and", "God", "created", "heaven", "earth",
             "light", "waters", "ü", "naïve", "—", "שָׁלוֹם", "\n", "  ", "<|endoftext|>", "1:1"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(4500)]
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d, "id": len(d)}, ensure_ascii=False) + "\n")
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=args.tokenizer,
                                                     eos_token="<|endoftext|>")
    tokenizer.model_max_length = 10**9
    data, nats_to_bpb = chunk_and_tokenize(datasets.Dataset.from_dict({"text": docs}), tokenizer,
                                           num_proc=1, max_length=64)
    chunks = np.array(data["input_ids"], dtype=np.uint32)
    chunks.tofile(out / "chunks.u32")
    with open(out / "data.json", "w") as f:
        json.dump({"chunk_len": 64, "num_chunks": int(chunks.shape[0]),
                   "nats_to_bits_per_byte": nats_to_bpb}, f)


if __name__ == "__main__":
    main()
