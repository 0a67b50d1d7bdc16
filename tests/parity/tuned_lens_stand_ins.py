"""Lets tuned-lens 0.2.0's scripts (train_loop, eval_loop) import in the test venv: the modules
only their data pipeline, argument parsing and multi-GPU sharding need (datasets, torchdata,
simple_parsing, torch's FSDP, which does not import on Python 3.11 with torch 1.13) are replaced
by empty stand-ins, and transformers 4.49's optimization module gets torch 2's name for
torch 1.13's _LRScheduler. Import it before tuned_lens.scripts; the reference scripts hand the
loops their data themselves."""
import dataclasses
import sys
import types

import torch
import transformers  # noqa: F401  (imported before the stand-ins: it probes for datasets)


def install_stand_ins():
    def field(*args, alias=None, action=None, nargs=None, **kwargs):
        if action == "store_true" and "default" not in kwargs:
            kwargs["default"] = False
        return dataclasses.field(*args, **kwargs)

    simple_parsing = types.ModuleType("simple_parsing")
    simple_parsing.field = field
    datasets = types.ModuleType("datasets")
    datasets.Dataset = datasets.DatasetDict = object
    datasets.load_dataset = None
    torchdata = types.ModuleType("torchdata")
    dataloader2 = types.ModuleType("torchdata.dataloader2")
    dataloader2.DataLoader2 = object
    datapipes = types.ModuleType("torchdata.datapipes")
    torchdata.dataloader2, torchdata.datapipes = dataloader2, datapipes
    # torch 1.13's FSDP does not import on Python 3.11 (a dataclass with a mutable default);
    # the loop uses it only to shard a model across GPUs.
    fsdp = types.ModuleType("torch.distributed.fsdp")
    fsdp.CPUOffload = fsdp.FullyShardedDataParallel = fsdp.MixedPrecision = object
    fsdp_wrap = types.ModuleType("torch.distributed.fsdp.wrap")
    fsdp_wrap.transformer_auto_wrap_policy = None
    sys.modules.update({"simple_parsing": simple_parsing, "datasets": datasets,
                        "torchdata": torchdata, "torchdata.dataloader2": dataloader2,
                        "torchdata.datapipes": datapipes, "torch.distributed.fsdp": fsdp,
                        "torch.distributed.fsdp.wrap": fsdp_wrap})


install_stand_ins()
torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler._LRScheduler
