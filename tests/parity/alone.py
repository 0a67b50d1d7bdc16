"""What transformers gives each request of a padded batch when it runs alone.

transformers' dynamic RoPE ("dynamic" rope type) takes its base, and longrope its short or long
factors, from max(position_ids) + 1 of the whole call, so a right-padded row gets the base of the
batch's longest row, and its rotary module
keeps the largest frequencies it has seen. lensd answers each request as if it ran alone; this is
the reference for that: each row runs on its own tokens from the configured base (a one-token call
first resets transformers' cached frequencies), and the outputs are padded back into [B, T, ...].
Other models run the batch as it is: their rows do not depend on each other.
"""
import torch


def dynamic_rope(config):
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    params = params or {}
    return params.get("rope_type", params.get("type")) in ("dynamic", "longrope")


def pad(t, length):
    if t.dim() < 2 or t.shape[1] == length:
        return t
    pad = torch.zeros((t.shape[0], length - t.shape[1]) + tuple(t.shape[2:]), dtype=t.dtype)
    return torch.cat([t, pad], 1)


def per_request(model, ids, mask, fn):
    """fn(ids, mask) -> a tensor, or a list or dict of tensors, with batch and position dims
    first; returns fn's outputs for the batch, each row computed alone when that matters."""
    if not dynamic_rope(model.config):
        return fn(ids, mask)
    rows = []
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        with torch.no_grad():
            model(input_ids=ids[r:r + 1, :1])  # back to the configured base
        rows.append(fn(ids[r:r + 1, :n], mask[r:r + 1, :n]))
    T = ids.shape[1]
    first = rows[0]
    if isinstance(first, dict):
        return {k: torch.cat([pad(row[k], T) for row in rows]) for k in first}
    if isinstance(first, (list, tuple)):
        return [torch.cat([pad(row[i], T) for row in rows]) for i in range(len(first))]
    return torch.cat([pad(row, T) for row in rows])
