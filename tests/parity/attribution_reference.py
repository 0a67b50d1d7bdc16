"""A token-trace-style node attribution reference (attribution.md §1.3, §2) on the random-init
GPT-2 checkpoint of model_reference.py: Hugging Face transformers runs the model, SAELens 6.54
SAEs (random, written by save_model) are spliced in at blocks.{0,1,2}.hook_resid_pre,
blocks.1.hook_attn_out and blocks.2.hook_mlp_out the way token-trace's SAEPatcher does (features
and the detached error are leaves; the gradient reaching the upstream network is the gradient at
the site's output, unchanged), the metric is token-trace's last-token loss, and every node's
ie = value x grad (per error dimension, as token-trace). Also checks that the splice changes
neither the loss nor any parameter gradient (token-trace's tests/test_sae_patcher.py).

Writes <out>/saes/<site>/ (SAE folders), <out>/reference.json (tokens, loss, the top 60 nodes by
|ie|, and per site the activation and gradient sums for the completeness identity).

Usage: attribution_reference.py --model DIR --out DIR"""
import argparse
import json
import os
import shutil

import torch
from transformers import GPT2LMHeadModel

from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAE
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

D_SAE = 128
SITES = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre",
         "blocks.1.hook_attn_out", "blocks.2.hook_mlp_out"]


def make_sae(hook, d_in, seed):
    g = torch.Generator().manual_seed(seed)
    meta = {"hook_name": hook, "model_name": "gpt2-tiny", "prepend_bos": True}
    if "attn_out" in hook:
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=D_SAE, k=12))
    elif "mlp_out" in hook:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=D_SAE))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=D_SAE))
    sae.cfg.metadata.hook_name = meta["hook_name"]
    sae.cfg.metadata.model_name = meta["model_name"]
    sae.cfg.metadata.prepend_bos = True
    with torch.no_grad():
        for name, p in sae.named_parameters():
            scale = 0.2 if p.dim() > 1 else 0.05
            values = torch.randn(p.shape, generator=g) * scale
            if "threshold" in name:
                values = values.abs() * 0.2
            p.copy_(values)
    return sae


def module_for(model, hook):
    layer = int(hook.split(".")[1])
    block = model.transformer.h[layer]
    if hook.endswith("hook_resid_pre"):
        return block, True
    return (block.attn if hook.endswith("hook_attn_out") else block.mlp), False


class Splice:
    """token-trace's SAEPatcher: y = x^ + e with f and e leaves, pass-through upstream gradient."""

    def __init__(self, sae):
        self.sae = sae
        self.f = None
        self.e = None
        self.a = None

    def __call__(self, a):
        self.a = a.detach()
        f = self.sae.encode(a.detach()).detach().requires_grad_(True)
        x_hat = self.sae.decode(f)
        e = (a.detach() - x_hat.detach()).requires_grad_(True)
        self.f, self.e = f, e
        y = x_hat + e
        # forward value a, gradient to the upstream network = dm/dy (pass-through)
        return a + (y - y.detach())


def attach(model, hook, splice):
    module, pre = module_for(model, hook)
    if pre:
        return module.register_forward_pre_hook(lambda m, args: (splice(args[0]),) + args[1:])

    def post(m, args, output):
        if isinstance(output, tuple):
            return (splice(output[0]),) + output[1:]
        return splice(output)
    return module.register_forward_hook(post)


def last_token_loss(model, tokens):
    logits = model(tokens).logits
    return -torch.log_softmax(logits[0, -2], -1)[tokens[0, -1]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(os.path.join(args.out, "saes"))
    model = GPT2LMHeadModel.from_pretrained(args.model).float().eval()
    d = model.config.n_embd
    saes = {}
    for i, hook in enumerate(SITES):
        folder = os.path.join(args.out, "saes", hook)
        make_sae(hook, d, 1000 + i).save_model(folder)
        saes[hook] = SAE.load_from_disk(folder)  # what SAELens reads back
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, model.config.vocab_size, (1, 12), generator=g)

    # Unmodified model: loss and parameter gradients.
    model.zero_grad()
    clean_loss = last_token_loss(model, tokens)
    clean_loss.backward()
    clean_grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    splices = {hook: Splice(sae) for hook, sae in saes.items()}
    handles = [attach(model, hook, s) for hook, s in splices.items()]
    loss = last_token_loss(model, tokens)
    loss.backward()
    for h in handles:
        h.remove()
    assert torch.equal(loss.detach(), clean_loss.detach()), "the splice changed the loss"
    worst = max((p.grad - clean_grads[n]).abs().max().item() for n, p in model.named_parameters())
    assert worst <= 1e-6, f"the splice changed a parameter gradient by {worst}"

    rows = []
    sites = {}
    for hook, s in splices.items():
        f, gf = s.f[0].detach(), s.f.grad[0]
        e, ge = s.e[0].detach(), s.e.grad[0]
        for t in range(f.shape[0]):
            for i in torch.nonzero(f[t]).flatten().tolist():
                rows.append({"site": hook, "position": t, "act_idx": i, "error": False,
                             "value": f[t, i].item(), "grad": gf[t, i].item(),
                             "ie": (f[t, i] * gf[t, i]).item()})
            for j in range(d):
                ie = (e[t, j] * ge[t, j]).item()
                if ie != 0:
                    rows.append({"site": hook, "position": t, "act_idx": D_SAE + j, "error": True,
                                 "value": e[t, j].item(), "grad": ge[t, j].item(), "ie": ie})
        grad_at_site = ge  # dm/dy at the site = dm/da (pass-through)
        sites[hook] = {
            "ie_sum_by_position": [sum(r["ie"] for r in rows if r["site"] == hook and
                                       r["position"] == t) for t in range(f.shape[0])],
            "a_minus_b_dec_dot_grad": ((s.a[0] - saes[hook].b_dec) * grad_at_site).sum(-1).tolist(),
        }
    rows.sort(key=lambda r: -abs(r["ie"]))
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"tokens": tokens[0].tolist(), "loss": loss.item(), "sites": sites,
                   "nodes": rows[:60], "num_nodes": len(rows),
                   "splice_max_grad_change": worst}, f, indent=1)
    print(f"loss {loss.item():.6f}; {len(rows)} nodes with ie != 0; splice max grad change {worst}")


if __name__ == "__main__":
    main()
