"""SAE features and attribution: request builders and results shaped for notebooks.

NodeAttributionResult.to_dataframe() has token-trace's columns (module_name, layer, module_type,
token_idx, token_str, act_type, feature, value, grad, ie) plus sae, baseline and effect, so code
written for token-trace's DataFrame reads lensd's.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from lensd.messages import Prompt, make_input
from lensd.v1 import attribution_pb2, lens_pb2, types_pb2

METRICS = {"loss": types_pb2.METRIC_KIND_LOSS, "logit": types_pb2.METRIC_KIND_LOGIT,
           "log_prob": types_pb2.METRIC_KIND_LOG_PROB, "prob": types_pb2.METRIC_KIND_PROB,
           "logit_diff": types_pb2.METRIC_KIND_LOGIT_DIFF}
BASELINES = {"zero": attribution_pb2.BASELINE_ZERO, "mean": attribution_pb2.BASELINE_MEAN,
             "patch": attribution_pb2.BASELINE_PATCH,
             "mean_per_position": attribution_pb2.BASELINE_MEAN_PER_POSITION}
METHODS = {"attribution_patching": attribution_pb2.METHOD_ATTRIBUTION_PATCHING,
           "integrated_gradients": attribution_pb2.METHOD_INTEGRATED_GRADIENTS,
           "exact": attribution_pb2.METHOD_EXACT}
SIGNS = {"patch_effect": attribution_pb2.SIGN_CONVENTION_PATCH_EFFECT,
         "token_trace": attribution_pb2.SIGN_CONVENTION_TOKEN_TRACE}
LAYER_MODES = {"direct_logit": lens_pb2.LAYER_ATTRIBUTION_MODE_DIRECT_LOGIT,
               "logit_lens": lens_pb2.LAYER_ATTRIBUTION_MODE_LOGIT_LENS,
               "logit_lens_frozen": lens_pb2.LAYER_ATTRIBUTION_MODE_LOGIT_LENS_FROZEN}


def _choose(field: str, value: str, choices: Dict[str, int]) -> int:
    if value not in choices:
        raise ValueError(f"{field}: {value!r} is not one of {sorted(choices)}")
    return choices[value]


def metric(kind: str = "loss", positions: Sequence[int] = (), target: Optional[int] = None,
           foil: Optional[int] = None) -> types_pb2.Metric:
    """The scalar gradients and effects are taken of: loss (the next token's cross-entropy;
    default the last token's prediction), logit, log_prob, prob (of `target`; default the
    model's top-1) or logit_diff (target minus foil)."""
    m = types_pb2.Metric(kind=_choose("metric", kind, METRICS), positions=list(positions))
    if target is not None:
        m.target = target
    if foil is not None:
        m.foil = foil
    return m


def encode_sae(model: str, prompt: Prompt, saes: Sequence[str] = (), top_k: int = 16,
               threshold: float = 0.0, exclude_special_tokens: Optional[bool] = None
               ) -> attribution_pb2.EncodeSaeRequest:
    request = attribution_pb2.EncodeSaeRequest(model=model, input=make_input(prompt),
                                               saes=list(saes), top_k=top_k, threshold=threshold)
    if exclude_special_tokens is not None:
        request.exclude_special_tokens = exclude_special_tokens
    return request


def node_attribution(model: str, prompt: Prompt, saes: Sequence[str] = (),
                     metric_kind: str = "loss", positions: Sequence[int] = (),
                     target: Optional[int] = None, foil: Optional[int] = None,
                     baseline: str = "zero", patch: Optional[Prompt] = None,
                     reference: Sequence[Prompt] = (), method: str = "attribution_patching",
                     ig_steps: Optional[int] = None, per_dimension_errors: bool = False,
                     sign: str = "patch_effect", top_n: int = 0, min_abs_effect: float = 0.0,
                     exclude_special_tokens: Optional[bool] = None
                     ) -> attribution_pb2.NodeAttributionRequest:
    request = attribution_pb2.NodeAttributionRequest(
        model=model, input=make_input(prompt), saes=list(saes),
        metric=metric(metric_kind, positions, target, foil),
        baseline=_choose("baseline", baseline, BASELINES),
        method=_choose("method", method, METHODS),
        error_nodes=(attribution_pb2.ERROR_NODES_PER_DIMENSION if per_dimension_errors
                     else attribution_pb2.ERROR_NODES_CONTRACTED),
        sign_convention=_choose("sign", sign, SIGNS), top_n=top_n, min_abs_effect=min_abs_effect)
    if patch is not None:
        request.patch.CopyFrom(make_input(patch))
    for prompt_ in reference:
        request.reference.append(make_input(prompt_))
    if ig_steps is not None:
        request.ig_steps = ig_steps
    if exclude_special_tokens is not None:
        request.exclude_special_tokens = exclude_special_tokens
    return request


def layer_attribution(model: str, prompt: Prompt, position: Optional[int] = None,
                      target: Optional[int] = None, foil: Optional[int] = None,
                      mode: str = "direct_logit", per_head: bool = False
                      ) -> lens_pb2.LayerAttributionRequest:
    request = lens_pb2.LayerAttributionRequest(model=model, input=make_input(prompt),
                                               mode=_choose("mode", mode, LAYER_MODES),
                                               per_head=per_head)
    for name, value in (("position", position), ("target", target), ("foil", foil)):
        if value is not None:
            setattr(request, name, value)
    return request


class SaeFeatures:
    """One SAE's features on a prompt. Attributes: sae, hook_point, tokens (texts), l0,
    error_norm, fvu ([positions] arrays), fvu_total, and features(p) -> [(index, activation)]."""

    def __init__(self, message, tokens: List[str]):
        self.message = message
        self.sae, self.hook_point, self.tokens = message.sae, message.hook_point, tokens
        self.l0 = np.array(message.l0, dtype=np.int64)
        self.error_norm = np.array(message.error_norm, dtype=np.float32)
        self.fvu = np.array(message.fvu, dtype=np.float32)
        self.fvu_total = message.fvu_total

    def features(self, position: int):
        o = self.message.offsets
        return list(zip(self.message.indices[o[position]:o[position + 1]],
                        self.message.values[o[position]:o[position + 1]]))

    def dense(self, d_sae: int) -> np.ndarray:
        """The reported features as a [positions, d_sae] array (zeros elsewhere)."""
        out = np.zeros((len(self.tokens), d_sae), dtype=np.float32)
        for p in range(len(self.tokens)):
            for index, value in self.features(p):
                out[p, index] = value
        return out

    def to_dataframe(self):
        """One row per (position, reported feature): sae, hook_point, token_idx, token_str,
        feature, activation."""
        import pandas as pd
        rows = [{"sae": self.sae, "hook_point": self.hook_point, "token_idx": p,
                 "token_str": self.tokens[p], "feature": int(i), "activation": float(v)}
                for p in range(len(self.tokens)) for i, v in self.features(p)]
        return pd.DataFrame.from_records(rows, columns=["sae", "hook_point", "token_idx",
                                                        "token_str", "feature", "activation"])


class SaeEncoding:
    """An EncodeSae response: tokens, and per SAE (by name) its SaeFeatures."""

    def __init__(self, response):
        self.response = response
        self.tokens = [t.text for t in response.tokens]
        self.token_ids = [t.id for t in response.tokens]
        self.saes = {s.sae: SaeFeatures(s, self.tokens) for s in response.saes}

    def __getitem__(self, sae: str) -> SaeFeatures:
        return self.saes[sae]

    def to_dataframe(self):
        import pandas as pd
        return pd.concat([s.to_dataframe() for s in self.saes.values()], ignore_index=True)


NODE_COLUMNS = ["sae", "module_name", "layer", "module_type", "token_idx", "token_str",
                "act_type", "feature", "value", "baseline", "grad", "effect", "ie", "abs_effect"]


class NodeAttributionResult:
    """A NodeAttribution response. Attributes: tokens, target (id, text), metric,
    patched_metric and total_effect (None unless baseline="patch"), sum_of_effects,
    nodes_considered, nodes (the messages, largest |effect| first)."""

    def __init__(self, response, sign: str):
        self.response = response
        self.sign = sign
        self.tokens = [t.text for t in response.tokens]
        self.target = (response.target.id, response.target.text)
        self.metric = response.metric
        self.patched_metric = response.patched_metric if response.HasField(
            "patched_metric") else None
        self.total_effect = response.total_effect if response.HasField("total_effect") else None
        self.sum_of_effects = response.sum_of_effects
        self.nodes_considered = response.nodes_considered
        self.nodes = list(response.nodes)

    def to_dataframe(self):
        """token-trace's columns, one row per node. `ie` is token-trace's value x grad
        (for a zero baseline; (value - baseline) x grad otherwise) whatever the request's sign
        convention; `effect` is in the request's convention."""
        import pandas as pd
        flip = -1.0 if self.sign == "patch_effect" else 1.0
        rows = [{"sae": n.sae, "module_name": n.module_name, "layer": n.layer,
                 "module_type": n.module_type, "token_idx": n.token_idx,
                 "token_str": n.token_str, "act_type": n.act_type, "feature": n.feature,
                 "value": n.value, "baseline": n.baseline, "grad": n.grad, "effect": n.effect,
                 "ie": flip * n.effect, "abs_effect": n.abs_effect} for n in self.nodes]
        return pd.DataFrame.from_records(rows, columns=NODE_COLUMNS)

    def __repr__(self) -> str:
        return (f"NodeAttributionResult(metric={self.metric:.4f}, target={self.target[1]!r}, "
                f"nodes={len(self.nodes)} of {self.nodes_considered})")


class LayerAttributionResult:
    """A LayerAttribution response: labels, values (np array), bias, logit, position, target."""

    def __init__(self, response):
        self.response = response
        self.tokens = [t.text for t in response.tokens]
        self.position = response.position
        self.target = (response.target.id, response.target.text)
        self.labels = list(response.labels)
        self.values = np.array(response.values, dtype=np.float64)
        self.bias, self.logit = response.bias, response.logit

    def to_dataframe(self):
        import pandas as pd
        return pd.DataFrame({"component": self.labels, "value": self.values})
