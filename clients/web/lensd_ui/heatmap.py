"""The prediction-trajectory heat map as an HTML table (no browser-side code): layers up the page
with the model's output on top, input tokens across, each cell the row's top-1 token coloured by a
statistic, and the top-k tokens with their probabilities in the cell's hover text. Cells carry
data-layer, data-position, data-token (the token as a JSON string: the page's sanitizer trims
attribute values, JSON's quotes keep a token's spaces) and data-value attributes, so the page can
be read back exactly (the browser tests do)."""
import html
import json
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

# Matplotlib's "Blues", sampled at 0, 0.25, 0.5, 0.75 and 1.
_BLUES = [(247, 251, 255), (198, 219, 239), (107, 174, 214), (33, 113, 181), (8, 48, 107)]
_MISSING = "#e0e0e0"

# Statistics where a larger value means a better prediction; the scale is the same either way,
# the legend says which end is which.
HIGHER_IS_MORE_CONFIDENT = {"max_probability"}


def colour(fraction: float) -> Tuple[str, str]:
    """(background, text colour) at `fraction` (0..1) of the Blues scale."""
    if not math.isfinite(fraction):
        return _MISSING, "#000000"
    x = min(max(fraction, 0.0), 1.0) * (len(_BLUES) - 1)
    i = min(int(x), len(_BLUES) - 2)
    t = x - i
    rgb = [round(a + (b - a) * t) for a, b in zip(_BLUES[i], _BLUES[i + 1])]
    text = "#ffffff" if fraction > 0.55 else "#000000"
    return "#{:02x}{:02x}{:02x}".format(*rgb), text


def value_range(results: Sequence, statistic: str) -> Tuple[float, float]:
    """The finite min and max of `statistic` over several decodes (one colour scale for lenses
    shown side by side)."""
    values = [getattr(r, statistic)[np.isfinite(getattr(r, statistic))] for r in results
              if statistic in r.statistics]
    values = [v for v in values if v.size]
    if not values:
        return 0.0, 1.0
    low = float(min(v.min() for v in values))
    high = float(max(v.max() for v in values))
    return low, high if high > low else low + 1.0


def show_token(text: str) -> str:
    """A token as a cell shows it: newlines and tabs escaped, spaces kept."""
    return text.replace("\n", "\\n").replace("\t", "\\t")


def _hover(result, i: int, j: int, statistic: str, k: int, label: str) -> str:
    position = int(result.positions[j])
    lines = [f"layer {label}, position {position} {result.input_tokens[position]!r}"]
    value = getattr(result, statistic)[i, j] if statistic in result.statistics else float("nan")
    lines.append(f"{statistic} {value:.4f} {result.units}")
    for t in range(min(k, result.top_ids.shape[-1])):
        if result.top_ids[i, j, t] < 0:
            break
        lines.append(f"{result.top_tokens[i, j, t]!r} {result.top_probs[i, j, t]:.4f}")
    return "\n".join(lines)


def table(result, statistic: str, k: int = 5,
          scale: Optional[Tuple[float, float]] = None) -> str:
    """The heat map of `result` (a lensd.DecodeResult) coloured by `statistic`, as HTML."""
    low, high = scale or value_range([result], statistic)
    labels = result.row_labels()
    head = "".join(
        f'<th data-position="{int(p)}" style="padding:2px 6px;white-space:pre">'
        f"{html.escape(show_token(result.input_tokens[int(p)]))}</th>"
        for p in result.positions)
    rows: List[str] = []
    for i in reversed(range(len(labels))):
        cells = []
        for j in range(len(result.positions)):
            value = (float(getattr(result, statistic)[i, j]) if statistic in result.statistics
                     else float("nan"))
            background, ink = colour((value - low) / (high - low))
            token = str(result.top_tokens[i, j, 0]) if result.top_ids[i, j, 0] >= 0 else ""
            cells.append(
                f'<td class="lensd-cell" data-layer="{labels[i]}" '
                f'data-position="{int(result.positions[j])}" '
                f'data-token="{html.escape(json.dumps(token), quote=True)}" data-value="{value!r}" '
                f'title="{html.escape(_hover(result, i, j, statistic, k, labels[i]), quote=True)}"'
                f' style="background:{background};color:{ink};padding:2px 6px;'
                f'white-space:pre;font-family:monospace;font-size:12px;text-align:center">'
                f"{html.escape(show_token(token))}</td>")
        rows.append(f'<tr data-layer="{labels[i]}"><th style="padding:2px 6px">{labels[i]}</th>'
                    f'{"".join(cells)}</tr>')
    direction = ("more confident" if statistic in HIGHER_IS_MORE_CONFIDENT else "less confident"
                 if statistic in ("entropy", "forward_kl", "cross_entropy", "target_rank")
                 else "larger")
    low_colour, _ = colour(0.0)
    high_colour, _ = colour(1.0)
    legend = (f'<div style="font-size:12px;margin-top:4px">{html.escape(statistic)} '
              f'({html.escape(result.units)}): '
              f'<span style="background:{low_colour};padding:0 6px">{low:.3g}</span> to '
              f'<span style="background:{high_colour};color:#fff;padding:0 6px">{high:.3g}</span>'
              f" (darker: {direction})</div>")
    return (f'<div class="lensd-heatmap" data-lens="{html.escape(result.lens, quote=True)}" '
            f'data-statistic="{html.escape(statistic, quote=True)}" style="overflow-x:auto">'
            f'<div style="font-weight:600;margin-bottom:4px">{html.escape(result.lens)} lens on '
            f"{html.escape(result.model)}</div>"
            f'<table style="border-collapse:collapse"><thead><tr><th>layer</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{legend}</div>')
