"""PyTorch's own distributed engine, as the experiments use it (torchrun + DistributedDataParallel).

Under ``torchrun`` the environment names the rank and world size; the process group uses gloo on
CPU and NCCL on CUDA. Outside torchrun everything runs in one process with no process group.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Dist", "end_worker_process", "setup_distributed"]


@dataclass(frozen=True)
class Dist:
    """Rank, world size and device of this process."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP-wrap ``model`` when running on several processes."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over ranks (float64)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics)."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group after every rank got here. A process that exits with gloo's
        threads still running can abort in teardown ("terminate called without an active
        exception"), failing a run that finished."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("`device` is 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if choice != "cpu":
        raise ValueError(f"`device` must be 'auto', 'cpu' or 'cuda', got {choice!r}")
    return torch.device("cpu")


def setup_distributed(device: str = "auto") -> Dist:
    """Join the torchrun process group if there is one; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return Dist(rank, world, dev)


def end_worker_process(code: int = 0) -> None:
    """End a torchrun worker now, without the interpreter's teardown; outside torchrun, return.

    After :meth:`Dist.close` gloo's worker threads can still own tensors; when the interpreter's
    finalisation destroys them the process aborts (SIGABRT, "terminate called without an active
    exception"), under load about one run in ten — a failed exit after a run whose files are all
    written. The outputs are flushed first; nothing else of the teardown is needed by a worker.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
