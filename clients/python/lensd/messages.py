"""Request messages built from keyword arguments, shared by the synchronous and asyncio
clients."""
from typing import Optional, Sequence, Union

from lensd.v1 import lens_pb2, training_pb2, types_pb2

Prompt = Union[str, Sequence[int]]
Data = Union[str, Sequence[str]]

STATISTICS = {
    "entropy": lens_pb2.STATISTIC_ENTROPY,
    "forward_kl": lens_pb2.STATISTIC_FORWARD_KL,
    "cross_entropy": lens_pb2.STATISTIC_CROSS_ENTROPY,
    "target_rank": lens_pb2.STATISTIC_TARGET_RANK,
    "max_probability": lens_pb2.STATISTIC_MAX_PROBABILITY,
    "log_prob_diff": lens_pb2.STATISTIC_LOG_PROB_DIFF,
    "none": lens_pb2.STATISTIC_NONE,
}


def make_input(prompt: Prompt, add_special_tokens: bool = False) -> types_pb2.Input:
    """A text prompt (tokenized by the server) or token ids (used as they are)."""
    if isinstance(prompt, str):
        return types_pb2.Input(text=prompt, add_special_tokens=add_special_tokens)
    return types_pb2.Input(tokens=types_pb2.TokenIds(ids=[int(t) for t in prompt]))


def decode(model: str, prompt: Prompt, lens: str = "logit",
           layers: Optional[Sequence[int]] = None, positions: Optional[Sequence[int]] = None,
           top_k: int = 5, statistics: Optional[Sequence[str]] = None,
           targets: Optional[Sequence[int]] = None, anti_targets: Optional[Sequence[int]] = None,
           compare_lens: str = "", exclude_output: bool = False, resid_mid: bool = False,
           mask_input: bool = False, bits_per_byte: bool = False,
           interventions: Sequence = (), packed: bool = True) -> lens_pb2.DecodeRequest:
    """packed: the answer as arrays (DecodeResponse.grid), which DecodeResult reads without a
    message per cell; False asks for rows of cells."""
    request = lens_pb2.DecodeRequest(
        model=model, input=make_input(prompt), lens=lens, layers=list(layers or []),
        positions=list(positions or []), top_k=top_k, targets=list(targets or []),
        anti_targets=list(anti_targets or []), compare_lens=compare_lens,
        exclude_output=exclude_output, mask_input=mask_input, bits_per_byte=bits_per_byte,
        readout=lens_pb2.READOUT_RESID_MID if resid_mid else lens_pb2.READOUT_RESID_PRE,
        interventions=list(interventions), packed=packed)
    for name in statistics or []:
        if name not in STATISTICS:
            raise ValueError(f"statistics: {name!r} is not one of {sorted(STATISTICS)}")
        request.statistics.append(STATISTICS[name])
    return request


def generate(model: str, prompt: Prompt, lens: str = "logit", layer: Optional[int] = None,
             max_new_tokens: int = 32, greedy: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0, stop_tokens: Sequence[int] = (),
             early_exit: bool = False, interventions: Sequence = (),
             also_unedited: bool = False) -> lens_pb2.GenerateRequest:
    request = lens_pb2.GenerateRequest(
        model=model, input=make_input(prompt), lens=lens, max_new_tokens=max_new_tokens,
        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
        stop_tokens=list(stop_tokens), early_exit=early_exit, interventions=list(interventions),
        also_unedited=also_unedited)
    if layer is not None:
        request.layer = layer
    return request


def activations(model: str, prompt: Prompt, hook_points: Sequence[str],
                native_dtype: bool = False,
                interventions: Sequence = ()) -> lens_pb2.GetActivationsRequest:
    return lens_pb2.GetActivationsRequest(
        model=model, input=make_input(prompt), hook_points=list(hook_points),
        dtype="native" if native_dtype else "float32", interventions=list(interventions))


def _set_data(source: training_pb2.DataSource, data: Data):
    if isinstance(data, str):
        source.path = data
    else:
        source.texts.texts.extend(data)


def train_lens(model: str, lens_name: str, data: Data, **options) -> training_pb2.SubmitJobRequest:
    job = training_pb2.TrainLensJob(lens_name=lens_name, **options)
    _set_data(job.data, data)
    return training_pb2.SubmitJobRequest(model=model, train_lens=job)


def evaluate_lenses(model: str, data: Data, lenses: Sequence[str] = (),
                    **options) -> training_pb2.SubmitJobRequest:
    job = training_pb2.EvalLensJob(lenses=list(lenses), **options)
    _set_data(job.data, data)
    return training_pb2.SubmitJobRequest(model=model, eval_lens=job)
