"""Run under ``torchrun --nproc-per-node 2``: CpuSyncBatchNorm2d under DDP against BatchNorm2d
on the whole batch in one process. Rank 0 writes the largest differences to ``argv[1]`` (JSON).

Not collected by pytest; tests/test_distributed.py launches it.
"""

import copy
import json
import sys

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from stequiv.experiments import end_worker_process, setup_distributed
from stequiv.experiments.parallel import convert_sync_batchnorm


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def main(out: str) -> None:
    dist = setup_distributed("cpu")
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(1)) * 3 + 1
    y = torch.arange(8) % 3
    reference = model()
    ref_out = reference(x)
    F.cross_entropy(ref_out, y).backward()
    synced = convert_sync_batchnorm(copy.deepcopy(model()), dist.device)
    ddp = DistributedDataParallel(synced)
    shard = slice(dist.rank * 4, dist.rank * 4 + 4)
    out_local = ddp(x[shard])
    F.cross_entropy(out_local, y[shard]).backward()
    diffs = {"output": (out_local - ref_out[shard]).abs().max().item()}
    for (name, p), q in zip(reference.named_parameters(), synced.parameters(), strict=True):
        diffs[f"grad {name}"] = (p.grad - q.grad).abs().max().item()
    for (name, b), c in zip(reference.named_buffers(), synced.buffers(), strict=True):
        diffs[f"buffer {name}"] = (b.double() - c.double()).abs().max().item()
    diffs["class"] = type(synced[1]).__name__
    if dist.is_main:
        with open(out, "w") as f:
            json.dump(diffs, f)
    dist.close()


if __name__ == "__main__":
    main(sys.argv[1])
    end_worker_process()  # under torchrun: exit without gloo's teardown (see its docstring)
