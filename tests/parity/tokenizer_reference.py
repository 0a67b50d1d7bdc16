#!/usr/bin/env python3
"""Reference encodings for the tokenizer parity test, computed by the `tokenizers` library.

For each tokenizer.json under --fixtures, writes <out>/<family>.jsonl: one line per test string
with the ids, tokens and character offsets of encode(text) and the text of decode(ids) with and
without special tokens. The strings (at least --count per family) are generated from a fixed seed
and mix prose, code, many scripts, emoji, whitespace runs, digits, contractions and the family's
special tokens.
"""
import argparse
import json
import os
import random

from tokenizers import Tokenizer

PROSE = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "The quick brown fox jumps over the lazy dog.",
    "It's what you'll see: I'm sure they've said we'd go, and YOU'LL agree she's RIGHT.",
    "Mr. O'Neil paid $1,234.56 on 2024-03-15 at 10:45pm (approx. 3.5% off).",
]
CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    '{"key": [1, 2.5e-3, null, true], "nested": {"a": "b\\n"}}',
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%foo%';",
    "    if x != None:\r\n        print(f\"{x!r:>10}\")\r\n",
    "<div class=\"x\">&amp; &lt;tag&gt;</div>",
]
SCRIPTS = [
    (0x00C0, 0x017F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x05D0, 0x05EA), (0x0620, 0x064A),
    (0x0900, 0x097F), (0x0E01, 0x0E5B), (0x3041, 0x3096), (0x30A1, 0x30FA), (0x4E00, 0x4FFF),
    (0xAC00, 0xAD00), (0x2200, 0x22FF), (0x2190, 0x21FF), (0x1D400, 0x1D4FF), (0x0300, 0x036F),
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🤖", "🧑‍💻", "☃", "✨", "🏳️‍🌈", "👋🏻"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2028", "\v", "\f", "\x85",
          "\u200b", "   \n  ", " \t "]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "A\u030a", "\u1e9b\u0323", "\uFB01", "\u2126",
             "\u00c5", "\u212b", "ｆｕｌｌ", "①②", "ﬀ"]


def random_script_text(rng, n):
    lo, hi = rng.choice(SCRIPTS)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(n))


def fragment(rng, specials):
    kind = rng.randrange(11)
    if kind == 0:
        s = rng.choice(PROSE)
        i, j = sorted(rng.sample(range(len(s) + 1), 2))
        return s[i:j]
    if kind == 1:
        return rng.choice(CODE)
    if kind == 2:
        return random_script_text(rng, rng.randint(1, 8))
    if kind == 3:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if kind == 4:
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 4)))
    if kind == 5:
        return str(rng.randint(0, 10 ** rng.randint(1, 15))) + rng.choice(["", ".", ",5", "e10", "%"])
    if kind == 6:
        return rng.choice(specials) if specials else "<|endoftext|>"
    if kind == 7:
        return rng.choice(COMBINING)
    if kind == 8:
        return rng.choice(["'s", "'T", "'re", "'VE", "'m", "'ll", "'D", "’s", "n't", "o'clock"])
    if kind == 9:
        return rng.choice(["<s", "</s", "<|end", "<0x41>", "<unk>", "<", ">", "|", "▁", "Ġ", "Ċ"])
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
                   for _ in range(rng.randint(1, 12)))
    return rng.choice(["", " "]) + word


def test_strings(rng, specials, count):
    fixed = ["", " ", "  ", "\n", "a", " leading", "trailing ", "  both  ", "\t\ttabs",
             "no-space" + "x" * 300, "\r\n\r\n", "aaaa" * 50, "1" * 40, "<s></s>" + "".join(specials[:3])]
    out = list(fixed)
    while len(out) < count:
        pieces = [fragment(rng, specials) for _ in range(rng.randint(1, 6))]
        joiner = rng.choice(["", " ", "", "\n"])
        out.append(joiner.join(pieces))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fixtures", required=True, help="folder with <family>/tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=2100)
    ap.add_argument("--extra", action="append", default=[],
                    help="name=path of another tokenizer.json (the demo model's)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    paths = {f: os.path.join(args.fixtures, f, "tokenizer.json") for f in os.listdir(args.fixtures)}
    paths.update(dict(e.split("=", 1) for e in args.extra))
    for family, path in sorted(paths.items()):
        if not os.path.exists(path):
            continue
        tok = Tokenizer.from_file(path)
        specials = [t.content for t in tok.get_added_tokens_decoder().values()]
        rng = random.Random(f"lensd-{family}")
        with open(os.path.join(args.out, f"{family}.jsonl"), "w", encoding="utf-8") as f:
            for text in test_strings(rng, specials, args.count):
                enc = tok.encode(text)
                f.write(json.dumps({
                    "text": text, "ids": enc.ids, "tokens": enc.tokens,
                    "offsets": [list(o) for o in enc.offsets],
                    "special_tokens_mask": enc.special_tokens_mask,
                    "ids_no_special": tok.encode(text, add_special_tokens=False).ids,
                    "decoded": tok.decode(enc.ids, skip_special_tokens=True),
                    "decoded_with_special": tok.decode(enc.ids, skip_special_tokens=False),
                }) + "\n")


if __name__ == "__main__":
    main()
