"""One net of a paired run and everything that trains it, with a loud stop on NaN or infinity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..parallel import all_finite, full, full_state, load_, refresh_
from ._task import cross_entropy

__all__ = ["Net", "NonFiniteError"]


class NonFiniteError(ValueError):
    """A loss, gradient or weight became NaN or infinite: the run stops before using it."""


@dataclass
class Net:
    """One net of a group and everything that trains it: the model, its optimizer and learning-rate
    schedule, the module that runs the forward pass (the DDP wrapper, or the model itself), and
    what keeps it on an estimator schedule (``qat.ScheduledEstimator`` / ``ScheduledTwin``, or None).

    Under FSDP2 (:mod:`~stequiv.experiments.parallel`) ``model`` is sharded in place, ``wrapped`` is the model itself, and
    ``replica`` is an unsharded copy on the CPU that :meth:`view` fills with the whole weights.
    """

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    wrapped: torch.nn.Module
    follower: Any = None
    replica: torch.nn.Module | None = None

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """The gradients of the batch's mean cross-entropy; returns the loss. The group may clip
        them before :meth:`step`.

        A non-finite loss or gradient raises :class:`NonFiniteError` before any step is taken
        (the gradients are all-reduced under DDP, so every rank sees the same verdict).
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(self.wrapped(x), y)
        loss.backward()
        value = loss.item()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not (all_finite(grads) and math.isfinite(value)):
            raise NonFiniteError(self._culprit(value))
        return value

    def step(self) -> None:
        """The optimizer, schedule and estimator-schedule step, on the gradients of :meth:`backward`."""
        self.check_step_size()
        self.optimizer.step()
        self.scheduler.step()
        if self.follower is not None:
            self.follower.step()

    def _culprit(self, loss: float) -> str:
        """What was not finite: the loss, else the first parameter with a non-finite gradient."""
        if not math.isfinite(loss):
            return f"the training loss of {self.name} is {loss}"
        name = next(n for n, p in self.model.named_parameters()
                    if p.grad is not None and not full(p.grad).isfinite().all())
        return f"the gradient of {self.name} is not finite in `{name}`"

    def check_step_size(self) -> None:
        """Refuse a learning rate that the weights' dtype cannot hold: torch would stop with
        "value cannot be converted to type float without overflow" inside the step."""
        for group in self.optimizer.param_groups:
            lr, dtypes = float(group["lr"]), {p.dtype for p in group["params"]}
            dtype = min(dtypes, key=lambda d: torch.finfo(d).max, default=torch.float64)
            if abs(lr) > torch.finfo(dtype).max:
                raise NonFiniteError(f"the learning rate of {self.name} is {lr:.3g}, beyond "
                                     f"{dtype}'s largest number {torch.finfo(dtype).max:.3g}, so "
                                     "its step overflows")

    def bad_weight(self) -> str | None:
        """The first parameter holding a NaN or infinity, if any."""
        return next((n for n, p in self.model.named_parameters() if not all_finite([p])), None)

    def view(self) -> torch.nn.Module:
        """The model with whole weights: the model itself, or under FSDP2 its replica refreshed
        from the shards (a collective: every rank calls it)."""
        return self.model if self.replica is None else refresh_(self.replica, self.model)

    def follow_to(self, step: int) -> None:
        """Put the estimator schedule at ``step`` (a resumed run), before the model's state loads:
        the model's checkpoint records the estimator it was saved with."""
        if self.follower is not None:
            self.follower.load_state_dict({"steps": step, "schedule": self.follower.schedule.to_dict()})

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer and schedule state, with whole tensors under FSDP2."""
        net, opt = full_state(self.model, self.optimizer)
        return {"net": net, "opt": opt, "sched": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_(self.model, self.optimizer, state["net"], state["opt"])
        self.scheduler.load_state_dict(state["sched"])
