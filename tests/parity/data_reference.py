"""Reference chunking: tuned-lens 0.2.0's own chunk_and_tokenize (tuned_lens/data.py) on a
.jsonl of documents with the demo model's tokenizer (transformers' PreTrainedTokenizerFast over
its tokenizer.json). The `datasets` library is not installed (see tests/requirements-nodeps.txt):
a minimal stand-in Dataset runs chunk_and_tokenize's own batching function over batches of 2048
documents exactly as Dataset.map(batched=True, batch_size=2048) calls it.

Writes <out>/docs.jsonl, <out>/chunks.u32 (the chunks in order) and <out>/data.json
({"chunk_len", "num_chunks", "nats_to_bits_per_byte"})."""
import argparse
import json
import random
import sys
import types
from pathlib import Path

import numpy as np
import transformers

datasets = types.ModuleType("datasets")
datasets.Dataset = type("Dataset", (), {})
datasets.DatasetDict = type("DatasetDict", (), {})
sys.modules["datasets"] = datasets

from tuned_lens.data import chunk_and_tokenize  # noqa: E402


class StandInDataset:
    """The part of datasets.Dataset that chunk_and_tokenize uses."""

    def __init__(self, columns):
        self.columns = columns
        self.column_names = list(columns)

    def map(self, fn, batched, batch_size, num_proc, remove_columns, load_from_cache_file):
        assert batched
        rows = len(next(iter(self.columns.values())))
        out = {}
        for start in range(0, rows, batch_size):
            batch = {k: v[start:start + batch_size] for k, v in self.columns.items()}
            for k, v in fn(batch).items():
                out.setdefault(k, []).extend(v)
        return StandInDataset(out)

    def __getitem__(self, key):
        return self.columns[key]

    def with_format(self, format, columns):
        return self


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
    data, nats_to_bpb = chunk_and_tokenize(StandInDataset({"text": docs}), tokenizer,
                                           num_proc=1, max_length=64)
    chunks = np.array(data["input_ids"], dtype=np.uint32)
    chunks.tofile(out / "chunks.u32")
    with open(out / "data.json", "w") as f:
        json.dump({"chunk_len": 64, "num_chunks": int(chunks.shape[0]),
                   "nats_to_bits_per_byte": nats_to_bpb}, f)


if __name__ == "__main__":
    main()
