"""Activation patching through lensd: the ActivationPatching RPC's request and its grids as numpy
arrays, pandas DataFrames and plotly heat maps (layers by positions, as TransformerLens users
draw them with imshow).

    result = client.activation_patching(clean, corrupted, lensd.attribution.metric(
        "logit_diff", target=mary, foil=john), sweeps=["resid_pre", "attn_out", "z_all_pos"])
    result["resid_pre"].normalized      # [layers, positions]: 1 where the patch restores clean
    result.heatmap("resid_pre")         # plotly Figure

A sweep too long to hold a stream open for runs as a durable job instead:

    job = client.submit_patching(clean, corrupted, metric, sweeps=["z"], watch=True)
    result = lensd.patching.from_job(job)   # the same PatchingResult
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from lensd.messages import Prompt, make_input
from google.protobuf import json_format

from lensd.v1 import patching_pb2, types_pb2

SITES = {
    "resid_pre": patching_pb2.PATCHING_SITE_RESID_PRE,
    "resid_mid": patching_pb2.PATCHING_SITE_RESID_MID,
    "resid_post": patching_pb2.PATCHING_SITE_RESID_POST,
    "attn_out": patching_pb2.PATCHING_SITE_ATTN_OUT,
    "mlp_out": patching_pb2.PATCHING_SITE_MLP_OUT,
    "z": patching_pb2.PATCHING_SITE_Z,
    "q": patching_pb2.PATCHING_SITE_Q,
    "k": patching_pb2.PATCHING_SITE_K,
    "v": patching_pb2.PATCHING_SITE_V,
    "pattern": patching_pb2.PATCHING_SITE_PATTERN,
}
DIRECTIONS = {"denoising": patching_pb2.PATCHING_DIRECTION_DENOISING,
              "noising": patching_pb2.PATCHING_DIRECTION_NOISING}


def sweep(name: str) -> patching_pb2.PatchingSweep:
    """"resid_pre", "attn_out", "z", ... by position; with "_all_pos" ("z_all_pos"), every
    position at once."""
    site, all_positions = (name[:-8], True) if name.endswith("_all_pos") else (name, False)
    if site not in SITES:
        raise ValueError(f"sweeps: {name!r} is not one of {sorted(SITES)} (optionally + _all_pos)")
    return patching_pb2.PatchingSweep(site=SITES[site], all_positions=all_positions)


def request(model: str, clean: Prompt, corrupted: Prompt, metric: types_pb2.Metric,
            sweeps: Sequence[str] = ("resid_pre",), direction: str = "denoising",
            layers: Sequence[int] = (), positions: Sequence[int] = ()
            ) -> patching_pb2.ActivationPatchingRequest:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: {direction!r} is not one of {sorted(DIRECTIONS)}")
    return patching_pb2.ActivationPatchingRequest(
        model=model, clean=make_input(clean), corrupted=make_input(corrupted), metric=metric,
        direction=DIRECTIONS[direction], sweeps=[sweep(s) for s in sweeps], layers=list(layers),
        positions=list(positions))


class Grid:
    """One sweep: `metric` and `normalized` arrays with dims (("layer", "position"[, "head"]),
    or ("layer"[, "head"]) for all positions)."""

    def __init__(self, message, result):
        self.name = message.name
        self.dims = list(message.dims)
        self.metric = np.asarray(message.metric, dtype=np.float32).reshape(tuple(message.shape))
        self.normalized = np.asarray(message.normalized,
                                     dtype=np.float32).reshape(tuple(message.shape))
        self._result = result

    def to_dataframe(self):
        """One row per cell: layer, position (token), head as the grid has them, metric,
        normalized."""
        import pandas as pd

        index = np.indices(self.metric.shape).reshape(len(self.dims), -1)
        frame = {}
        for axis, name in enumerate(self.dims):
            if name == "layer":
                frame["layer"] = np.asarray(self._result.layers)[index[axis]]
            elif name == "position":
                positions = np.asarray(self._result.positions)[index[axis]]
                frame["position"] = positions
                frame["token"] = [self._result.clean_tokens[p] for p in positions]
            else:
                frame[name] = index[axis]
        frame["metric"] = self.metric.reshape(-1)
        frame["normalized"] = self.normalized.reshape(-1)
        return pd.DataFrame(frame)


class PatchingResult:
    """The grids of an ActivationPatching call, by name ("resid_pre", "z_all_pos", ...)."""

    def __init__(self, message: patching_pb2.ActivationPatchingResult):
        self.message = message
        self.clean_tokens: List[str] = [t.text for t in message.clean_tokens]
        self.corrupted_tokens: List[str] = [t.text for t in message.corrupted_tokens]
        self.clean_metric = message.clean_metric
        self.corrupted_metric = message.corrupted_metric
        self.target = message.target.id
        self.layers = list(message.layers)
        self.positions = list(message.positions)
        self.grids: Dict[str, Grid] = {g.name: Grid(g, self) for g in message.grids}
        self.patched_runs = message.patched_runs
        self.forward_passes = message.forward_passes

    def __getitem__(self, name: str) -> Grid:
        return self.grids[name]

    def heatmap(self, name: str, normalized: bool = True, head: Optional[int] = None,
                title: Optional[str] = None):
        """A plotly Figure: layers up the y axis, positions (tokens) or heads along x, each cell
        the normalized effect (or the metric). A by-position head grid needs `head`."""
        import plotly.graph_objects as go

        grid = self.grids[name]
        values = grid.normalized if normalized else grid.metric
        if grid.dims == ["layer", "position", "head"]:
            if head is None:
                raise ValueError(f"{name}: choose a head (0..{values.shape[2] - 1})")
            values = values[:, :, head]
        if values.ndim == 1:
            values = values[:, None]
        if "position" in grid.dims:
            columns = [f"{p}: {self.clean_tokens[p]}" for p in self.positions]
        elif "head" in grid.dims:
            columns = [f"head {h}" for h in range(values.shape[1])]
        else:
            columns = ["all positions"]
        label = "normalized effect" if normalized else "metric"
        figure = go.Figure(go.Heatmap(
            z=values, x=columns, y=[str(layer) for layer in self.layers], colorscale="RdBu",
            zmid=0 if not normalized else None, zmin=-1 if normalized else None,
            zmax=1 if normalized else None, colorbar={"title": label}))
        figure.update_layout(title=title or f"activation patching: {name} ({label})",
                             xaxis_title="position" if "position" in grid.dims else "head",
                             yaxis_title="layer")
        return figure

    def heatmap_png(self, name: str, path: str, normalized: bool = True,
                    head: Optional[int] = None, dpi: int = 120):
        """The same grid as a PNG with matplotlib (no browser needed); returns the figure."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure = self.heatmap(name, normalized, head)  # checks the name and head
        heat = figure.data[0]
        values = np.asarray(heat.z, dtype=np.float32)
        fig, ax = plt.subplots(figsize=(0.7 * values.shape[1] + 2.5, 0.45 * values.shape[0] + 1.8))
        image = ax.imshow(values, cmap="RdBu", aspect="auto", origin="lower",
                          vmin=-1 if normalized else None, vmax=1 if normalized else None)
        ax.set_xticks(range(values.shape[1]), list(heat.x), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(values.shape[0]), list(heat.y), fontsize=8)
        ax.set_xlabel(figure.layout.xaxis.title.text)
        ax.set_ylabel("layer")
        ax.set_title(figure.layout.title.text, fontsize=10)
        fig.colorbar(image, ax=ax, label="normalized effect" if normalized else "metric")
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return fig

    def __repr__(self):
        return (f"PatchingResult(grids={list(self.grids)}, clean_metric={self.clean_metric:.4f},"
                f" corrupted_metric={self.corrupted_metric:.4f}, runs={self.patched_runs})")


def from_job(job) -> PatchingResult:
    """The grids of a finished patching job (Training.SubmitJob activation_patching): its
    result_json read back as the ActivationPatchingResult it is."""
    if job.kind != "patch":
        raise ValueError(f"job {job.id} is a {job.kind!r} job, not a patching one")
    if not job.result_json:
        raise ValueError(f"job {job.id} has no result yet (state {job.state}: {job.reason})")
    message = patching_pb2.ActivationPatchingResult()
    json_format.Parse(job.result_json, message)
    return PatchingResult(message)
