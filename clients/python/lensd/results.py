"""Results shaped for notebooks: a decode as numpy arrays (rows x positions) and a pandas
DataFrame, generated tokens, and tensors assembled from streamed chunks."""
import dataclasses
import html
from typing import Dict, List, Optional, Sequence

import numpy as np

# DecodeCell's optional statistics, in the order the DataFrame lists them.
STATISTICS = ("entropy", "forward_kl", "cross_entropy", "target_rank", "max_probability",
              "log_prob_diff", "kl_to_compare", "symmetric_kl_to_compare",
              "max_abs_prob_diff_to_compare")


class DecodeResult:
    """A Decode response as arrays. Rows are lens layers 0..L-1 (the residual stream entering each
    block) and, unless excluded, the model's own output (row L); columns are the decoded input
    positions.

    Attributes:
        response: the lensd.v1.DecodeResponse itself.
        model, lens, units: as the server reports them ("nats" or "bits_per_byte").
        input_ids, input_tokens: the whole input, as ids and token texts.
        layers: [rows] layer index of each row (L for the output row); is_output: [rows] bool.
        positions: [positions] input positions decoded.
        top_ids, top_probs: [rows, positions, k] most likely tokens first (-1 / 0 past a cell's k).
        top_tokens: [rows, positions, k] their texts.
        targets: [positions] the target token scored at each position (-1 for none).
        <statistic>: [rows, positions] float arrays (NaN where not computed) for each name in
            STATISTICS that the server computed, e.g. result.entropy.
    """

    def __init__(self, response):
        self.response = response
        self.model = response.model
        self.lens = response.lens
        self.units = response.units
        self.input_ids = np.array([t.id for t in response.input_tokens], dtype=np.int64)
        self.input_tokens = [t.text for t in response.input_tokens]
        self.statistics: List[str] = []
        if response.HasField("grid"):
            values = self._read_grid(response.grid)
        else:
            values = self._read_cells(list(response.rows))
        for name in STATISTICS:
            if name in values and not np.all(np.isnan(values[name])):
                self.statistics.append(name)
                setattr(self, name, values[name])

    def _read_grid(self, grid) -> Dict[str, np.ndarray]:
        """A packed answer (DecodeRequest.packed): one array per field."""
        self.layers = np.array(grid.layers, dtype=np.int64)
        self.is_output = self.layers == grid.num_layers
        self.positions = np.array(grid.positions, dtype=np.int64)
        self.targets = np.array(grid.targets, dtype=np.int64)
        self.top_ids = tensor_array(grid.top_ids)
        self.top_probs = tensor_array(grid.top_probs)
        texts = dict(grid.token_texts)
        ids, where = np.unique(self.top_ids, return_inverse=True)
        table = np.array([texts.get(int(i), "") for i in ids] + [""], dtype=object)
        self.top_tokens = table[where].reshape(self.top_ids.shape)
        return {name: tensor_array(t).astype(np.float64) for name, t in grid.statistics.items()}

    def _read_cells(self, rows) -> Dict[str, np.ndarray]:
        """An answer as rows of cells."""
        self.layers = np.array([r.layer for r in rows], dtype=np.int64)
        self.is_output = np.array([r.is_output for r in rows], dtype=bool)
        cells = list(rows[0].cells) if rows else []
        self.positions = np.array([c.position for c in cells], dtype=np.int64)
        self.targets = np.array([c.target for c in cells], dtype=np.int64)
        shape = (len(rows), len(cells))
        k = max((len(c.top) for r in rows for c in r.cells), default=0)
        self.top_ids = np.full(shape + (k,), -1, dtype=np.int64)
        self.top_probs = np.zeros(shape + (k,), dtype=np.float32)
        self.top_tokens = np.full(shape + (k,), "", dtype=object)
        values = {name: np.full(shape, np.nan) for name in STATISTICS}
        for i, row in enumerate(rows):
            for j, cell in enumerate(row.cells):
                for t, top in enumerate(cell.top):
                    self.top_ids[i, j, t] = top.id
                    self.top_probs[i, j, t] = top.prob
                    self.top_tokens[i, j, t] = top.text
                for name in STATISTICS:
                    if cell.HasField(name):
                        values[name][i, j] = getattr(cell, name)
        return values

    def row_labels(self) -> List[str]:
        """"0", "1", ..., "output"."""
        return ["output" if o else str(l) for l, o in zip(self.layers, self.is_output)]

    def to_dataframe(self):
        """One row per (layer, position): layer, is_output, position, input_token, target,
        top_token, top_prob (the most likely), top_tokens and top_probs (lists of k), and every
        statistic computed. Needs pandas (pip install "lensd[notebook]")."""
        import pandas as pd

        records = []
        for i, layer in enumerate(self.layers):
            for j, position in enumerate(self.positions):
                k = int(np.sum(self.top_ids[i, j] >= 0))
                record = {
                    "layer": int(layer), "is_output": bool(self.is_output[i]),
                    "position": int(position), "input_token": self.input_tokens[position],
                    "target": int(self.targets[j]),
                    "top_token": self.top_tokens[i, j, 0] if k else None,
                    "top_prob": float(self.top_probs[i, j, 0]) if k else np.nan,
                    "top_tokens": list(self.top_tokens[i, j, :k]),
                    "top_probs": [float(p) for p in self.top_probs[i, j, :k]],
                }
                for name in self.statistics:
                    record[name] = float(getattr(self, name)[i, j])
                records.append(record)
        return pd.DataFrame.from_records(records)

    def heatmap(self, statistic: str = "entropy", k: int = 5, title: Optional[str] = None):
        """An interactive plotly heat map (lensd.plotting.heatmap)."""
        from lensd import plotting
        return plotting.heatmap(self, statistic, k, title)

    def save_heatmap_png(self, path: str, statistic: str = "entropy",
                         title: Optional[str] = None):
        """The heat map as a PNG file, through matplotlib (lensd.plotting.heatmap_png)."""
        from lensd import plotting
        return plotting.heatmap_png(self, path, statistic, title)

    def _repr_html_(self) -> str:
        """The top-1 token of each cell, layers down and positions across (as lensctl decode)."""
        head = "".join(f"<th>{html.escape(self.input_tokens[p])}</th>" for p in self.positions)
        body = []
        for i, label in enumerate(self.row_labels()):
            cells = "".join(
                f"<td title='{html.escape(', '.join(self.top_tokens[i, j, :5]))}'>"
                f"{html.escape(str(self.top_tokens[i, j, 0]))} {self.top_probs[i, j, 0]:.2f}</td>"
                for j in range(len(self.positions)))
            body.append(f"<tr><th>{label}</th>{cells}</tr>")
        return (f"<p>{html.escape(self.lens)} lens on {html.escape(self.model)}</p>"
                f"<table><tr><th>layer</th>{head}</tr>{''.join(body)}</table>")

    def __repr__(self) -> str:
        return (f"DecodeResult(model={self.model!r}, lens={self.lens!r}, rows={len(self.layers)}, "
                f"positions={len(self.positions)}, statistics={self.statistics})")


@dataclasses.dataclass(frozen=True)
class GeneratedToken:
    """One token of a generation, as it is produced."""
    step: int
    id: int
    text: str
    finished: bool = False
    finish_reason: str = ""
    # On the last token, with also_unedited: the continuation without the interventions.
    unedited_ids: Sequence[int] = ()
    unedited_text: str = ""

    @staticmethod
    def from_message(m) -> "GeneratedToken":
        return GeneratedToken(m.step, m.token.id, m.token.text, m.finished, m.finish_reason,
                              tuple(t.id for t in m.unedited_tokens), m.unedited_text)


_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64,
                 "int32": np.int32}


def tensor_array(tensor) -> np.ndarray:
    """A lensd.v1.Tensor as a numpy array (read-only, sharing the message's bytes)."""
    if tensor.dtype not in _NUMPY_DTYPES:
        raise ValueError(f"unknown dtype {tensor.dtype!r}")
    return np.frombuffer(tensor.data, dtype=_NUMPY_DTYPES[tensor.dtype]).reshape(
        tuple(tensor.shape))


def assemble(chunks) -> Dict[str, np.ndarray]:
    """Tensors from a stream of lensd.v1.TensorChunk, by name (bfloat16 widened to float32,
    exactly, since numpy has no bfloat16)."""
    parts: Dict[str, bytearray] = {}
    meta: Dict[str, tuple] = {}
    for chunk in chunks:
        buffer = parts.setdefault(chunk.name, bytearray())
        if chunk.offset != len(buffer):
            raise ValueError(f"{chunk.name}: chunk at byte {chunk.offset}, expected {len(buffer)}")
        buffer.extend(chunk.data)
        meta[chunk.name] = (chunk.dtype, tuple(chunk.shape))
    out = {}
    for name, buffer in parts.items():
        dtype, shape = meta[name]
        if dtype == "bfloat16":
            bits = np.frombuffer(bytes(buffer), dtype=np.uint16).astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
        elif dtype in _NUMPY_DTYPES:
            out[name] = np.frombuffer(bytes(buffer), dtype=_NUMPY_DTYPES[dtype]).reshape(shape)
        else:
            raise ValueError(f"{name}: unknown dtype {dtype!r}")
    return out


def as_torch(arrays: Dict[str, np.ndarray], enabled: Optional[bool]):
    """The arrays as torch tensors when `enabled` (None: when torch is importable)."""
    if enabled is False:
        return arrays
    try:
        import torch
    except ImportError:
        if enabled:
            raise
        return arrays
    return {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}
