"""The README example: the per-layer top-1 tokens of a prompt through a lens, then a greedy
generation read out at layer 3, against the server at $LENSD_ADDRESS with $LENSD_TOKEN.

    python examples/top1.py tuned "And God said, Let there be light: and there was"
"""
import sys

import lensd

lens = sys.argv[1] if len(sys.argv) > 1 else "logit"
prompt = " ".join(sys.argv[2:]) or "And God said, Let there be light: and there was"
with lensd.Client() as client:
    result = client.decode(prompt, lens=lens, top_k=1)
    for i, label in enumerate(result.row_labels()):
        print(f"{label:<7} {' | '.join(result.top_tokens[i, :, 0])}")
    tokens = client.generate(prompt, lens=lens, layer=3, greedy=True, max_new_tokens=12)
    print(prompt + "".join(t.text for t in tokens))
