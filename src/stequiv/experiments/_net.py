"""One net of a paired run and everything that trains it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["Net"]


@dataclass
class Net:
    """One net of a group and everything that trains it: the model, its optimizer and learning-rate
    schedule, the module that runs the forward pass (the DDP wrapper, or the model itself), and
    what keeps it on an estimator schedule (``qat.ScheduledEstimator`` / ``ScheduledTwin``, or None).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    wrapped: torch.nn.Module
    follower: Any = None

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One SGD/Adam step on the batch's mean cross-entropy; returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.wrapped(x), y)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.follower is not None:
            self.follower.step()
        return loss.item()

    def follow_to(self, step: int) -> None:
        """Put the estimator schedule at ``step`` (a resumed run), before the model's state loads:
        the model's checkpoint records the estimator it was saved with."""
        if self.follower is not None:
            self.follower.load_state_dict({"steps": step, "schedule": self.follower.schedule.to_dict()})

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.model.state_dict(), "opt": self.optimizer.state_dict(),
                "sched": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["opt"])
        self.scheduler.load_state_dict(state["sched"])
