"""Lets SAELens 6.18 and sparsify 1.3 import their SAE modules in the test venv (Debian's torch
1.13, no transformer_lens): the packages' __init__ files pull in the training runners, datasets
and TransformerLens's HookedTransformer, so the package modules are created bare (their
submodules load from the installed files as usual) and TransformerLens's HookPoint, an identity
module with hook registration that the SAEs call on every intermediate value, is an identity
module. sparsify's utils import accelerate for multi-GPU training only. torch 1.13 raises when a
CUDA bfloat16 autocast is built on a CPU-only torch (torch 2 disables it); sparsify builds one at
import, so bfloat16 support is reported and the autocast then disables itself (no CUDA).
Import this before sae_lens.saes or sparsify.sparse_coder."""
import importlib.util
import logging
import sys
import types

import torch
import transformers  # noqa: F401  (imported before the stand-ins: it probes for accelerate)


def _bare_package(name, **attributes):
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"{name} is not installed (deploy/setup.sh installs it)")
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    for key, value in attributes.items():
        setattr(module, key, value)
    sys.modules[name] = module


def install_stand_ins():
    if "sae_lens" in sys.modules:
        return

    class HookPoint(torch.nn.Module):
        def forward(self, x):
            return x

    class HookedRootModule(torch.nn.Module):
        def setup(self):
            pass

    hook_points = types.ModuleType("transformer_lens.hook_points")
    hook_points.HookPoint = HookPoint
    hook_points.HookedRootModule = HookedRootModule
    transformer_lens = types.ModuleType("transformer_lens")
    transformer_lens.hook_points = hook_points
    accelerate = types.ModuleType("accelerate")
    accelerate_utils = types.ModuleType("accelerate.utils")
    accelerate_utils.send_to_device = None
    sys.modules.update({"transformer_lens": transformer_lens,
                        "transformer_lens.hook_points": hook_points,
                        "accelerate": accelerate, "accelerate.utils": accelerate_utils})
    if not torch.cuda.is_available():
        torch.cuda.is_bf16_supported = lambda *args, **kwargs: True
    from importlib.metadata import version
    _bare_package("sae_lens", __version__=version("sae-lens"),
                  logger=logging.getLogger("sae_lens"))
    _bare_package("sparsify")
    # sae_lens/__init__.py registers the inference architectures; do the same here.
    from sae_lens.registry import register_sae_class
    from sae_lens.saes import gated_sae, jumprelu_sae, standard_sae, topk_sae
    register_sae_class("standard", standard_sae.StandardSAE, standard_sae.StandardSAEConfig)
    register_sae_class("gated", gated_sae.GatedSAE, gated_sae.GatedSAEConfig)
    register_sae_class("topk", topk_sae.TopKSAE, topk_sae.TopKSAEConfig)
    register_sae_class("jumprelu", jumprelu_sae.JumpReLUSAE, jumprelu_sae.JumpReLUSAEConfig)
