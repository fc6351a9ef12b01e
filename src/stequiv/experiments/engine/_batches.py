"""The data side of the engine: the train/validation splits, the batches each rank trains on,
and the evaluation of a net over a whole split."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, DistributedSampler

from ...data import Split
from ..config import ExperimentConfig
from ..parallel import Dist
from ._task import correct, cross_entropy

__all__ = ["TrainData", "evaluate", "index_batches"]


@dataclass(frozen=True)
class TrainData:
    """The train and validation splits."""

    train: Split
    val: Split


def index_batches(n: int, config: ExperimentConfig, dist: Dist, epoch: int) -> list[list[int]]:
    """This rank's share of each global batch of ``epoch`` (same global batches for any world size)."""
    if config.batch_size % dist.world_size:
        raise ValueError(f"`batch_size` {config.batch_size} must be divisible by the number of "
                         f"processes {dist.world_size}")
    per_rank = config.batch_size // dist.world_size
    # One permutation of the data per epoch, dealt out to ranks round-robin: rank r's k-th
    # local batch holds positions r, r+W, ... of global batch k.
    sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank,
                                 shuffle=True, seed=config.seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(BatchSampler(sampler, per_rank, drop_last=True))


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Split, dist: Dist, batch: int = 1000,
             workers: int = 0) -> dict[str, float]:
    """Accuracy and mean cross-entropy over every target of ``data`` (sharded over ranks, then
    summed): one per image, or one per position of each text window (:mod:`._task`).

    BatchNorm buffers are first taken from rank 0 (under DDP each rank's running statistics
    drift by its own last local update), so every shard is evaluated by the same model. Every
    rank runs the same number of forward passes (a rank with fewer batches repeats its first
    one, uncounted): an FSDP2 forward all-gathers the weights with every other rank.
    """
    was_training = model.training
    model.eval()
    dist.broadcast_buffers(model)
    loss = right = count = 0.0
    shards = [list(range(start, min(start + batch, len(data))))
              for start in range(dist.rank * batch, len(data), batch * dist.world_size)]
    rounds = -(-len(data) // (batch * dist.world_size))
    counted = [True] * len(shards) + [False] * (rounds - len(shards))
    shards += [list(range(min(batch, len(data))))] * (rounds - len(shards))
    for (x, y), keep in zip(data.batches(shards, 0, workers), counted, strict=True):
        x, y = x.to(dist.device), y.to(dist.device)
        out = model(x)
        if keep:
            loss += cross_entropy(out, y, reduction="sum").item()
            right += correct(out, y).item()
            count += y.numel()
    loss, right, count = dist.all_sum([loss, right, count])
    model.train(was_training)
    return {"acc": right / count, "loss": loss / count}
