"""Interventions: edits of activations at TransformerLens hook points while the model runs.

Pass a list of them as `interventions=[...]` to decode, stream_decode, generate and activations;
they apply in order. Tensors may be numpy arrays, torch tensors or nested lists (float32 on the
wire); a [width] vector applies at every selected position.

    import lensd
    from lensd import interventions as iv
    client.generate("And God said", interventions=[iv.steer("blocks.1.hook_resid_pre", v, 4.0)])
    client.decode(prompt, interventions=[iv.ablate_heads(2, [0, 3])])
    client.decode(corrupted, interventions=[iv.patch("blocks.1.hook_resid_post", clean,
                                                     positions=[4])])
"""
from typing import Optional, Sequence

import numpy as np

from lensd.messages import Prompt, make_input
from lensd.v1 import interventions_pb2, types_pb2

SPANS = {
    "all": interventions_pb2.INTERVENTION_SPAN_ALL,
    "prompt": interventions_pb2.INTERVENTION_SPAN_PROMPT,
    "generated": interventions_pb2.INTERVENTION_SPAN_GENERATED,
}

Positions = Optional[Sequence[int]]


def tensor(values) -> types_pb2.Tensor:
    """A float32 wire tensor of an array, a torch tensor or nested lists."""
    if hasattr(values, "detach"):  # torch, without importing it
        values = values.detach().float().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    return types_pb2.Tensor(dtype="float32", shape=list(array.shape), data=array.tobytes())


def _base(hook_point: str, positions: Positions, heads: Positions,
          span: str) -> interventions_pb2.Intervention:
    if span not in SPANS:
        raise ValueError(f"span: {span!r} is not one of {sorted(SPANS)}")
    return interventions_pb2.Intervention(hook_point=hook_point, positions=list(positions or []),
                                          heads=list(heads or []), span=SPANS[span])


def set_value(hook_point: str, value, positions: Positions = None, heads: Positions = None,
              span: str = "all") -> interventions_pb2.Intervention:
    """Replace the selection by `value` (broadcast)."""
    out = _base(hook_point, positions, heads, span)
    out.set.CopyFrom(tensor(value))
    return out


def steer(hook_point: str, vector, coefficient: float = 1.0, positions: Positions = None,
          heads: Positions = None, span: str = "all") -> interventions_pb2.Intervention:
    """Add coefficient x vector (steering); in generate, at every step of `span`."""
    out = _base(hook_point, positions, heads, span)
    out.add.vector.CopyFrom(tensor(vector))
    out.add.coefficient = coefficient
    return out


def scale(hook_point: str, factor: float, positions: Positions = None, heads: Positions = None,
          span: str = "all") -> interventions_pb2.Intervention:
    """Multiply the selection by `factor`."""
    out = _base(hook_point, positions, heads, span)
    out.scale = factor
    return out


def ablate(hook_point: str, positions: Positions = None, heads: Positions = None,
           mean=None, reference: Optional[Sequence[Prompt]] = None, per_position: bool = False,
           span: str = "all") -> interventions_pb2.Intervention:
    """Zero-ablation; with `mean` (a tensor) or `reference` (prompts whose mean is taken, over
    every token, or per position with `per_position`), mean-ablation."""
    out = _base(hook_point, positions, heads, span)
    if mean is None and reference is None:
        out.zero = True
        return out
    if mean is not None:
        out.mean.value.CopyFrom(tensor(mean))
    for prompt in reference or []:
        out.mean.reference.append(make_input(prompt))
    out.mean.per_position = per_position
    return out


def ablate_heads(layer: int, heads: Sequence[int], positions: Positions = None,
                 mean=None, reference: Optional[Sequence[Prompt]] = None,
                 span: str = "all") -> interventions_pb2.Intervention:
    """Ablate attention heads of `layer`: their hook_z set to zero (or to a mean)."""
    return ablate(f"blocks.{layer}.attn.hook_z", positions, heads, mean, reference, span=span)


def patch(hook_point: str, source: Prompt, positions: Positions = None,
          heads: Positions = None, span: str = "all") -> interventions_pb2.Intervention:
    """Activation patching: the value the hook point takes on `source` (positions align)."""
    out = _base(hook_point, positions, heads, span)
    out.patch.CopyFrom(make_input(source))
    return out


def project_out(hook_point: str, directions, positions: Positions = None,
                heads: Positions = None, span: str = "all") -> interventions_pb2.Intervention:
    """Remove the component in the span of `directions` ([k, width] or [width])."""
    out = _base(hook_point, positions, heads, span)
    out.project_out.CopyFrom(tensor(directions))
    return out


def keep_only(hook_point: str, directions, positions: Positions = None,
              heads: Positions = None, span: str = "all") -> interventions_pb2.Intervention:
    """Keep only the component in the span of `directions`."""
    out = _base(hook_point, positions, heads, span)
    out.keep_only.CopyFrom(tensor(directions))
    return out


def clamp_sae(sae: str, feature: int, value: float, positions: Positions = None,
              span: str = "all") -> interventions_pb2.Intervention:
    """Clamp one feature of a loaded SAE to `value` at its hook point (through the decoder; the
    SAE's error term is kept)."""
    out = _base("", positions, None, span)
    out.sae_clamp.sae = sae
    out.sae_clamp.feature = feature
    out.sae_clamp.value = value
    return out
