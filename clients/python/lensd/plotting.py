"""Prediction-trajectory heat maps in the manner of tuned-lens's PredictionTrajectory plots:
layers up the y axis (the model's output on top), input tokens along the x axis, each cell the
row's top-1 token coloured by a statistic, and the top-k tokens with their probabilities on
hover. Interactive with plotly; a static PNG through matplotlib."""
from typing import Optional

import numpy as np


def _grid(result, statistic: str):
    if statistic not in result.statistics:
        raise ValueError(f"statistic: {statistic!r} was not computed (have: {result.statistics})")
    values = getattr(result, statistic)
    labels = result.row_labels()
    columns = [f"{j}: {result.input_tokens[p]}" for j, p in enumerate(result.positions)]
    return values, labels, columns


def heatmap(result, statistic: str = "entropy", k: int = 5, title: Optional[str] = None):
    """A plotly Figure of `result` (a DecodeResult) coloured by `statistic`."""
    import plotly.graph_objects as go

    values, labels, columns = _grid(result, statistic)
    k = min(k, result.top_ids.shape[-1])
    hover = np.empty(values.shape, dtype=object)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            tops = "<br>".join(f"{result.top_tokens[i, j, t]!r} {result.top_probs[i, j, t]:.3f}"
                               for t in range(k))
            hover[i, j] = f"layer {labels[i]}, {columns[j]}<br>{statistic} {values[i, j]:.3f}" \
                          f"<br>{tops}"
    figure = go.Figure(go.Heatmap(
        z=values, x=columns, y=labels, text=result.top_tokens[..., 0], texttemplate="%{text}",
        hovertext=hover, hoverinfo="text", colorscale="Blues",
        colorbar={"title": f"{statistic} ({result.units})"}))
    figure.update_layout(title=title or f"{result.lens} lens on {result.model}: {statistic}",
                         xaxis_title="input token", yaxis_title="layer")
    return figure


def heatmap_png(result, path: str, statistic: str = "entropy", title: Optional[str] = None,
                dpi: int = 120):
    """Writes the heat map as a PNG with matplotlib (no browser needed); returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, labels, columns = _grid(result, statistic)
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(1.1 * cols + 2.5, 0.5 * rows + 1.8))
    image = ax.imshow(values, cmap="Blues", aspect="auto", origin="lower")
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(rows):
        for j in range(cols):
            ax.text(j, i, str(result.top_tokens[i, j, 0]).replace("\n", "\\n"), ha="center",
                    va="center", fontsize=8,
                    color="white" if values[i, j] > middle else "black")
    ax.set_xticks(range(cols), columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rows), labels, fontsize=8)
    ax.set_xlabel("input token")
    ax.set_ylabel("layer")
    ax.set_title(title or f"{result.lens} lens on {result.model}: {statistic}")
    fig.colorbar(image, ax=ax, label=f"{statistic} ({result.units})")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return fig
