#!/usr/bin/env python3
"""Trains lensd's embedded demo model: a small GPT-2 on the King James Bible.

The text comes from Debian's bible-kjv package (public domain), printed by its `bible` command.
The script trains a byte-level BPE tokenizer with the Hugging Face `tokenizers` library and a
GPT-2 with `transformers`, then writes a Hugging Face folder (config.json, model.safetensors,
tokenizer.json, training_log.json, README.md) that lensd serves as it is.

    .venv/bin/python deploy/training/train_demo_model.py --out deploy/models/kjv-gpt2

Deterministic for a given seed, thread count and library versions.
"""
import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel

EOS = "<|endoftext|>"


def read_chapters():
    """Returns [(title, text)] for each of the 1,189 chapters, verse numbers removed."""
    raw = subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    chapters, title, verses, expected = [], None, [], 1
    previous_blank = True
    for line in raw.splitlines():
        if not line.strip():
            previous_blank = True
            continue
        verse = re.match(r"^\s*(\d+) (.*)$", line)
        if previous_blank and not line.startswith(" "):  # "Genesis 1", "1 Kings 3", ...
            if title:
                chapters.append((title, " ".join(verses)))
            title, verses, expected = line.strip(), [], 1
        elif verse and int(verse.group(1)) == expected:
            verses.append(verse.group(2).strip())
            expected += 1
        else:
            verses[-1] += " " + line.strip()
        previous_blank = False
    chapters.append((title, " ".join(verses)))
    return chapters


def train_tokenizer(docs, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def token_stream(tok, docs):
    eos = tok.token_to_id(EOS)
    ids = []
    for enc in tok.encode_batch(docs):
        ids.append(eos)
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


def evaluate(model, data, seq_len, batches=20):
    model.eval()
    starts = torch.linspace(0, len(data) - seq_len - 2, batches * 8).long()
    losses = []
    with torch.no_grad():
        for chunk in starts.split(8):
            x = torch.stack([data[s:s + seq_len] for s in chunk])
            losses.append(model(x, labels=x).loss.item())
    model.train()
    return sum(losses) / len(losses)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="output model folder")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--seq-len", type=int, default=128, help="training sequence length")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    chapters = read_chapters()
    docs = [f"{title}\n\n{text}" for title, text in chapters]
    held_out = [d for i, d in enumerate(docs) if i % 20 == 19]
    train_docs = [d for i, d in enumerate(docs) if i % 20 != 19]

    tok = train_tokenizer(train_docs, args.vocab_size)
    train = token_stream(tok, train_docs)
    valid = token_stream(tok, held_out)
    utf8_bytes = sum(len(d.encode()) for d in train_docs)
    print(f"{len(chapters)} chapters, {len(train)} training tokens, {len(valid)} held-out tokens, "
          f"{utf8_bytes / len(train):.2f} bytes/token", flush=True)

    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=args.context,
                        n_embd=args.d_model, n_layer=args.layers, n_head=args.heads,
                        bos_token_id=tok.token_to_id(EOS), eos_token_id=tok.token_to_id(EOS),
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, args.steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / args.steps)))

    log = {"args": vars(args), "train_tokens": len(train), "valid_tokens": len(valid),
           "bytes_per_token": utf8_bytes / len(train), "curve": []}
    start, seen = time.time(), 0
    for step in range(args.steps):
        idx = torch.randint(0, len(train) - args.seq_len - 1, (args.batch,))
        x = torch.stack([train[i:i + args.seq_len] for i in idx])
        loss = model(x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        seen += x.numel()
        if step % 250 == 0 or step == args.steps - 1:
            val = evaluate(model, valid, args.seq_len)
            point = {"step": step, "tokens": seen, "train_loss": round(loss.item(), 4),
                     "valid_loss": round(val, 4), "minutes": round((time.time() - start) / 60, 2)}
            log["curve"].append(point)
            print(json.dumps(point), flush=True)

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "training_log.json"), "w") as f:
        json.dump(log, f, indent=1)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
