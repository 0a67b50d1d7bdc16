#!/usr/bin/env python3
"""Node attribution over SAE features: lensd against a token-trace-style Python reference, same
checkpoint, same SAEs, same prompt, same machine, one run.

Writes a random-init GPT-2 small (transformers save_pretrained; 12 layers, d_model 768, vocab
50257) and 12 SAELens 6.54 standard SAEs (random, save_model) at blocks.{0..11}.hook_resid_pre
into a model repository, then for a 64-token prompt:

  reference  transformers runs the model with the 12 SAEs spliced in the way token-trace's
             SAEPatcher does (features and errors as leaves, pass-through upstream gradient;
             tests/parity/attribution_reference.py), one forward and backward of the last-token
             loss, ie = value x grad for every active feature and every error dimension, all
             nodes ranked by |ie| (vectorised torch, no Python loop over nodes), top 50 kept.
  lensd      the real server (build/server/lensd, loopback, started here with the repository)
             answering NodeAttribution through the Python client: per-dimension error nodes,
             token-trace's sign, top 50.

Both use the same number of CPU threads and run one after the other. Prints the median time of
each over --iters calls after a warm-up, the speed-up, and how well the two top-50 lists agree.

    .venv/bin/python tests/bench/attribution_bench.py --lensd build/server/lensd
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "parity"))
from attribution_reference import Splice, attach, last_token_loss  # noqa: E402
from sae_lens.saes.sae import SAE  # noqa: E402  (stand-ins installed by attribution_reference)
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig  # noqa: E402

SITES = [f"blocks.{layer}.hook_resid_pre" for layer in range(12)]


def write_repository(root, d_sae):
    model_dir = root / "gpt2-small"
    if not (model_dir / "model.safetensors").exists():
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(model_dir, safe_serialization=True)
    for layer, hook in enumerate(SITES):
        folder = model_dir / "saes" / f"res{layer}"
        if (folder / "cfg.json").exists():
            continue
        sae = StandardSAE(StandardSAEConfig(d_in=768, d_sae=d_sae))
        sae.cfg.metadata.hook_name = hook
        sae.cfg.metadata.model_name = "gpt2-small"
        g = torch.Generator().manual_seed(100 + layer)
        with torch.no_grad():
            for name, p in sae.named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.dim() > 1 else 0.01))
        sae.save_model(str(folder))
    return model_dir


def reference_top(model, saes, tokens, top_n):
    """token-trace's recipe on transformers: splice, one backward, rank every node by |ie|."""
    splices = {hook: Splice(sae) for hook, sae in saes.items()}
    handles = [attach(model, hook, s) for hook, s in splices.items()]
    model.zero_grad(set_to_none=True)
    loss = last_token_loss(model, tokens)
    loss.backward()
    for h in handles:
        h.remove()
    ies, keys = [], []
    for i, s in enumerate(splices.values()):
        f_ie = (s.f[0] * s.f.grad[0]).detach()
        e_ie = (s.e[0] * s.e.grad[0]).detach()
        for error, ie in ((0, f_ie), (1, e_ie)):
            nz = torch.nonzero(ie)
            ies.append(ie[nz[:, 0], nz[:, 1]])
            keys.append(torch.stack([torch.full_like(nz[:, 0], i), torch.full_like(nz[:, 0], error),
                                     nz[:, 0], nz[:, 1]], 1))
    ie, key = torch.cat(ies), torch.cat(keys)
    order = ie.abs().argsort(descending=True)[:top_n]
    return loss.item(), [(tuple(key[j].tolist()), ie[j].item()) for j in order], len(ie)


def start_lensd(binary, repository, threads):
    work = repository.parent / "lensd-run"
    work.mkdir(exist_ok=True)
    port_file = work / "port.json"
    port_file.unlink(missing_ok=True)
    log = open(work / "lensd.log", "w")
    saes = ",".join(f"gpt2-small/res{layer}" for layer in range(12))
    process = subprocess.Popen(
        [binary, f"--model_repository={repository}", "--models=gpt2-small", f"--saes={saes}",
         "--address=127.0.0.1:0", "--metrics_address=127.0.0.1:0", f"--port_file={port_file}",
         f"--state_dir={work}/state", "--log_requests=false", f"--intra_op_threads={threads}"],
        stderr=log)
    for _ in range(1200):
        if port_file.exists() and port_file.stat().st_size > 0 and \
                "serving" in (work / "lensd.log").read_text():
            return process, f"127.0.0.1:{json.loads(port_file.read_text())['port']}"
        if process.poll() is not None:
            raise RuntimeError((work / "lensd.log").read_text())
        time.sleep(0.1)
    raise RuntimeError("lensd did not start")


def timed(fn, iters):
    fn()  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lensd", default=str(REPO / "build" / "server" / "lensd"))
    ap.add_argument("--workdir", default=str(REPO / "build" / "bench" / "attribution"))
    ap.add_argument("--d-sae", type=int, default=6144, help="features per SAE (8 x d_model)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--top-n", type=int, default=50)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    repository = pathlib.Path(args.workdir) / "repo"
    model_dir = write_repository(repository, args.d_sae)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 50257, (1, args.tokens), generator=g)

    model = GPT2LMHeadModel.from_pretrained(model_dir).float().eval()
    saes = {hook: SAE.load_from_disk(str(model_dir / "saes" / f"res{layer}"))
            for layer, hook in enumerate(SITES)}
    ref_s, (ref_loss, ref_nodes, ref_count) = timed(
        lambda: reference_top(model, saes, tokens, args.top_n), args.iters)
    del model, saes

    client_dir = pathlib.Path(args.workdir) / "python-client"  # the client, stubs generated
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--upgrade", "--target", str(client_dir),
                    str(REPO / "clients" / "python")], check=True)
    sys.path.insert(0, str(client_dir))
    import lensd
    process, address = start_lensd(args.lensd, repository, args.threads)
    try:
        with lensd.Client(address, token="", model="gpt2-small", timeout=600) as client:
            def call():
                return client.node_attribution(tokens[0].tolist(), top_n=args.top_n,
                                               per_dimension_errors=True, sign="token_trace")
            ours_s, result = timed(call, args.iters)
    finally:
        process.terminate()
        process.wait(timeout=60)
    site_index = {f"res{layer}": layer for layer in range(12)}
    ours = [((site_index[n.sae], int(n.act_type == "error"), n.token_idx, n.feature), n.effect)
            for n in result.nodes]
    same = len({k for k, _ in ours} & {k for k, _ in ref_nodes})
    ref_ie = dict(ref_nodes)
    worst = max((abs(v - ref_ie[k]) for k, v in ours if k in ref_ie), default=float("nan"))
    print(f"node attribution, GPT-2 small (random init), 12 SAEs x {args.d_sae} features at "
          f"resid_pre, {args.tokens} tokens, top {args.top_n}, {args.threads} CPU threads")
    print(f"  token-trace-style reference (transformers + SAELens splice): {ref_s * 1000:8.1f} ms"
          f"  ({ref_count} nonzero nodes)")
    print(f"  lensd NodeAttribution through the server:                  {ours_s * 1000:8.1f} ms"
          f"  ({result.nodes_considered} nodes considered)")
    print(f"  speed-up {ref_s / ours_s:.2f}x; loss {ref_loss:.6f} vs {result.metric:.6f}; "
          f"top-{args.top_n} overlap {same}/{args.top_n}, max |ie| difference {worst:.2e}")


if __name__ == "__main__":
    main()
