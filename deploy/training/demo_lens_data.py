#!/usr/bin/env python3
"""Writes the demo model's text as .jsonl for lensd's training and evaluation jobs: the same
chapters as deploy/training/train_demo_model.py (Debian's bible-kjv, verse numbers removed), the
training chapters to kjv-train.jsonl and every 20th (held out) to kjv-heldout.jsonl.

    .venv/bin/python deploy/training/demo_lens_data.py --out DIR
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_demo_model import read_chapters  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="the folder to write the two files into")
    args = ap.parse_args()
    docs = [f"{title}\n\n{text}" for title, text in read_chapters()]
    os.makedirs(args.out, exist_ok=True)
    for name, keep in (("kjv-train.jsonl", lambda i: i % 20 != 19),
                       ("kjv-heldout.jsonl", lambda i: i % 20 == 19)):
        with open(os.path.join(args.out, name), "w") as f:
            for i, doc in enumerate(docs):
                if keep(i):
                    f.write(json.dumps({"text": doc}) + "\n")


if __name__ == "__main__":
    main()
