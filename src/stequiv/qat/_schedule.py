r"""Evolving estimators: a Q̂ that follows a schedule over training, and the STE twin that follows it.

An :class:`EstimatorSchedule` is a piecewise-constant estimator over optimizer steps: stage i uses
:math:`\hat Q_i` from step :math:`s_i` on (:math:`s_0 = 0`). IR-Net's EDE (Qin et al. 2020) is one:
per epoch e of E, :math:`t = T_{min}\,10^{(e/E)\log_{10}(T_{max}/T_{min})}` and :math:`k = \max(1/t, 1)`
(:meth:`EstimatorSchedule.ir_net`); an annealed DSQ α is another (:meth:`EstimatorSchedule.anneal`).

**The twin** (Section 7: an evolving estimator is "an effective shifting of the weights according
to M"). Between changes the pair is an ordinary Q̂-net / STE-twin pair. At a change
:math:`\hat Q_{old}\to\hat Q_{new}` the Q̂-net keeps its latent w and its optimizer state; the twin
must become the twin of the *new* Q̂-net at the same w:

* SGD-like: :math:`\tilde w \leftarrow M_{new}(M_{old}^{-1}(\tilde w))`, learning rate
  :math:`\alpha_{old}\eta \to \alpha_{new}\eta`, momentum :math:`\tilde b \leftarrow \tilde b\,
  s_{new}(w)/s_{old}(w)` with :math:`s = 1/\hat Q'` (1/α where Q̂′ = 0), since a switch sets
  :math:`\tilde b = b\,s(w)` (:mod:`._optim`);
* Adam-like: :math:`\tilde w = w` stays, moments scale by :math:`(\hat Q'_{old}/\hat Q'_{new})^p`
  (p = 1 first moments, 2 second moments); the learning rate stays η.

The twin's own estimator becomes :func:`~stequiv.core.ste_twin` of the new Q̂ (the STE, or
Appendix G's PWL, whose ends move with M).

**Refused at set-up** (:meth:`EstimatorSchedule.check`): a stage whose parameters leave the
estimator's allowed range, a stage with no map M (Q̂′ negative, or vanishing inside a bin, e.g. a
tanh sharpened until sech² underflows), or a stage whose M sends a current weight to ±∞.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import Estimator, NoRemapError, get_estimator, remap, ste_twin, unremap
from ..core._remap import plan_for
from ..core._validate import integer, positive_float
from . import _optim
from ._fake_quant import WeightFakeQuant
from ._quantize import latent_weight, quantized_layers
from ._twin import _reciprocal_slope

__all__ = ["EstimatorSchedule", "ScheduledEstimator", "ScheduledTwin"]

Scheduler = torch.optim.lr_scheduler.LRScheduler


@dataclass(frozen=True)
class EstimatorSchedule:
    """A piecewise-constant estimator over steps: ``stages[i] = (first_step, estimator)``.

    The first stage starts at step 0; first steps increase strictly. Estimators are resolved by
    :func:`~stequiv.core.get_estimator` (a name, a dict or an instance).
    """

    stages: tuple[tuple[int, Estimator], ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("`stages` must hold at least one (first_step, estimator) pair")
        resolved = []
        for i, (step, est) in enumerate(self.stages):
            integer(f"stages[{i}] first step", step, minimum=0)
            resolved.append((int(step), get_estimator(est)))
        steps = [s for s, _ in resolved]
        if steps[0] != 0 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"`stages` first steps must start at 0 and increase strictly, got {steps}")
        object.__setattr__(self, "stages", tuple(resolved))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def ir_net(cls, total_steps: int, stages: int, t_min: float = 0.1, t_max: float = 10.0) -> EstimatorSchedule:
        r"""IR-Net's EDE schedule: stage e of E (an epoch in the source) from step ⌊e·T/E⌉ with
        :math:`t = T_{min}(T_{max}/T_{min})^{e/E}`, :math:`k = \max(1/t, 1)`."""
        integer("total_steps", total_steps, minimum=1)
        integer("stages", stages, minimum=1)
        t_min, t_max = positive_float("t_min", t_min), positive_float("t_max", t_max)
        out = []
        for e in range(stages):
            t = t_min * 10 ** ((e / stages) * math.log10(t_max / t_min))
            out.append((round(e * total_steps / stages), {"name": "ede", "t": t, "k": max(1.0 / t, 1.0)}))
        return cls(_distinct(out, total_steps, stages))

    @classmethod
    def anneal(cls, estimator: str | Mapping[str, Any] | Estimator, param: str, start: float,
               end: float, total_steps: int, stages: int, spacing: str = "log") -> EstimatorSchedule:
        """``param`` of ``estimator`` from ``start`` (stage 0) to ``end`` (last stage), evenly in
        ``"log"`` or ``"linear"`` spacing, stage i from step ⌊i·T/stages⌉ (e.g. DSQ's α)."""
        integer("total_steps", total_steps, minimum=1)
        integer("stages", stages, minimum=1)
        if spacing not in ("log", "linear"):
            raise ValueError(f"`spacing` must be 'log' or 'linear', got {spacing!r}")
        if spacing == "log" and not (start > 0 and end > 0):
            raise ValueError(f"`spacing='log'` needs start, end > 0, got {start}, {end}; use 'linear'")
        base = get_estimator(estimator)
        if param not in base.params:
            raise ValueError(f"{base.name} has no parameter {param!r}; its parameters are {sorted(base.params)}")
        out = []
        for i in range(stages):
            f = i / (stages - 1) if stages > 1 else 0.0
            value = start * (end / start) ** f if spacing == "log" else start + (end - start) * f
            out.append((round(i * total_steps / stages), {**base.to_dict(), param: value}))
        return cls(_distinct(out, total_steps, stages))

    # ------------------------------------------------------------------ queries
    def index(self, step: int) -> int:
        """The stage in force at ``step``."""
        return max(i for i, (s, _) in enumerate(self.stages) if s <= step)

    def at(self, step: int) -> Estimator:
        """The estimator in force at ``step``."""
        return self.stages[self.index(step)][1]

    def check(self, model: nn.Module, kind: str) -> None:
        """Refuse a schedule that a twin cannot follow on ``model``'s quantized layers (see module)."""
        for name, fq in quantized_layers(model).items():
            q = fq.quantizer()
            w = latent_weight(model, name).detach()
            ends = np.array([w.min().item(), w.max().item()], dtype=np.float64)
            for step, est in self.stages:
                try:
                    with np.errstate(over="ignore"):  # an overflowing cosh reads as Q̂′ = 0
                        ste_twin(est, q, kind)  # type: ignore[arg-type]
                        mapped = remap(est, q, ends)
                    if not np.all(np.isfinite(mapped)):
                        raise NoRemapError(f"M of {est.describe()} is not finite at the weights' "
                                           f"range [{ends[0]:.4g}, {ends[1]:.4g}]")
                except (NoRemapError, ValueError) as err:
                    raise ValueError(f"schedule stage from step {step} on layer {name!r}: {err}. "
                                     "No STE twin can follow it; end the schedule before this "
                                     "stage (e.g. a smaller final t or a larger DSQ α)") from err

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` inverts it."""
        return {"stages": [[s, e.to_dict()] for s, e in self.stages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EstimatorSchedule:
        """Inverse of :meth:`to_dict`."""
        if set(data) != {"stages"}:
            raise ValueError(f"an EstimatorSchedule dict has exactly the key 'stages', got {sorted(data)}")
        return cls(tuple((int(s), get_estimator(e)) for s, e in data["stages"]))


def _distinct(stages: list[tuple[int, dict]], total_steps: int, count: int) -> tuple:
    """Build each stage's estimator (naming the stage if its parameters are out of range)."""
    if len({s for s, _ in stages}) != len(stages):
        raise ValueError(f"{count} stages do not fit in {total_steps} steps; use at most {total_steps}")
    out = []
    for step, spec in stages:
        try:
            out.append((step, get_estimator(spec)))
        except ValueError as err:
            raise ValueError(f"schedule stage from step {step} ({spec}): {err}; keep the schedule "
                             "inside the estimator's allowed range") from err
    return tuple(out)


class _Follower:
    """Counts optimizer steps and calls :meth:`_change` when the schedule's stage changes.

    Call :meth:`step` once after every ``optimizer.step()`` (like an lr scheduler).
    """

    def __init__(self, model: nn.Module, schedule: EstimatorSchedule, step: int):
        self.model, self.schedule = model, schedule
        self.steps = integer("step", step, minimum=0)
        self.current = schedule.at(self.steps)

    def step(self) -> bool:
        """Advance one step; True if the estimator changed."""
        self.steps += 1
        new = self.schedule.at(self.steps)
        if new == self.current:
            return False
        self._change(self.current, new)
        self.current = new
        return True

    def _change(self, old: Estimator, new: Estimator) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The step count and the schedule (a checkpoint refuses another schedule on load)."""
        return {"steps": self.steps, "schedule": self.schedule.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the saved step; the model's weights and optimizer are restored separately.

        Load this before the model's ``state_dict``: it puts the saved step's estimator on every
        layer, and the model's checkpoint records (and checks) the estimator it was saved with.
        """
        if state["schedule"] != self.schedule.to_dict():
            raise ValueError("the checkpoint was written with another estimator schedule; resume "
                             "with the schedule that wrote it")
        self.steps = int(state["steps"])
        self.current = self.schedule.at(self.steps)
        self._restore(self.current)

    def _restore(self, est: Estimator) -> None:
        raise NotImplementedError


class ScheduledEstimator(_Follower):
    """Drives the Q̂-net's estimator through ``schedule`` (every quantized layer)."""

    def __init__(self, model: nn.Module, schedule: EstimatorSchedule, *, step: int = 0):
        _Follower.__init__(self, model, schedule, step)
        self.layers = quantized_layers(model)
        if not self.layers:
            raise ValueError("ScheduledEstimator: the model has no quantized layer; quantize_ it first")
        self._restore(self.current)

    def _change(self, old: Estimator, new: Estimator) -> None:
        self._restore(new)

    def _restore(self, est: Estimator) -> None:
        for fq in self.layers.values():
            fq.estimator = est


@dataclass(frozen=True)
class _TwinLayer:
    fq: WeightFakeQuant
    latent: nn.Parameter


class ScheduledTwin(_Follower):
    """Keeps an STE twin (from :func:`~stequiv.qat.to_ste` at ``step``) the twin of a scheduled Q̂-net.

    Args:
        twin: the twin model; ``optimizer`` (and ``scheduler``, if any) train it.
        schedule: the Q̂-net's schedule; ``step``: the step the twin was built at.

    Raises:
        ValueError: at set-up, if a stage cannot be followed (:meth:`EstimatorSchedule.check`), or
            if one parameter group holds layers whose lr factors would part.
    """

    def __init__(self, twin: nn.Module, optimizer: torch.optim.Optimizer, schedule: EstimatorSchedule,
                 *, scheduler: Scheduler | None = None, step: int = 0):
        _Follower.__init__(self, twin, schedule, step)
        self.kind = _optim.optimizer_kind(optimizer)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.layers = {n: _TwinLayer(fq, latent_weight(twin, n)) for n, fq in quantized_layers(twin).items()}
        if not self.layers:
            raise ValueError("ScheduledTwin: the twin has no quantized layer")
        schedule.check(twin, self.kind)
        self._groups = _group_layers(optimizer, self.layers, schedule)

    def _change(self, old: Estimator, new: Estimator) -> None:
        ratios: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for L in self.layers.values():
                q = L.fq.quantizer()
                if self.kind == "sgd":
                    w = _through(unremap, old, q, L.latent)
                    a_old, a_new = plan_for(old, q).alpha, plan_for(new, q).alpha
                    s_old, s_new = (_reciprocal_slope(e, L.fq, q, 1.0 / a)(w)
                                    for e, a in ((old, a_old), (new, a_new)))
                    L.latent.copy_(_through(remap, new, q, w))
                else:
                    s_old, s_new = (_reciprocal_slope(e, L.fq, q, 1.0)(L.latent) for e in (old, new))
                ratios[id(L.latent)] = s_new / s_old
                L.fq.estimator = ste_twin(new, q, self.kind)  # type: ignore[arg-type]
        _optim.map_state(self.optimizer, self.optimizer, _identity(self.optimizer),
                         lambda p: ratios.get(id(p)))
        if self.kind == "sgd":
            self._scale_lrs(old, new)

    def _scale_lrs(self, old: Estimator, new: Estimator) -> None:
        """Learning rate α_old·η → α_new·η in every group holding quantized latents (and its schedule)."""
        for j, names in self._groups.items():
            q = self.layers[names[0]].fq.quantizer()
            factor = plan_for(new, q).alpha / plan_for(old, q).alpha
            group = self.optimizer.param_groups[j]
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] *= factor
            _scale_scheduler(self.scheduler, j, factor)

    def _restore(self, est: Estimator) -> None:
        for L in self.layers.values():
            L.fq.estimator = ste_twin(est, L.fq.quantizer(), self.kind)  # type: ignore[arg-type]


def _identity(opt: torch.optim.Optimizer) -> dict[int, nn.Parameter]:
    return {id(p): p for g in opt.param_groups for p in g["params"]}


def _through(fn: Callable[..., np.ndarray], est: Estimator, q: Any, w: torch.Tensor) -> torch.Tensor:
    out = fn(est, q, w.detach().to("cpu").numpy())
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=w.device, dtype=w.dtype)


def _group_layers(opt: torch.optim.Optimizer, layers: Mapping[str, _TwinLayer],
                  schedule: EstimatorSchedule) -> dict[int, list[str]]:
    """``{group index: quantized layers in it}``; every layer's latent must be in the optimizer,
    and a group's layers must share α at every stage, so that one lr factor fits the group."""
    where = {id(p): j for j, g in enumerate(opt.param_groups) for p in g["params"]}
    groups: dict[int, list[str]] = {}
    for name, layer in layers.items():
        if id(layer.latent) not in where:
            raise ValueError(f"ScheduledTwin: the optimizer does not train layer {name!r}'s latent weight")
        groups.setdefault(where[id(layer.latent)], []).append(name)
    for j, names in groups.items():
        for step, est in schedule.stages:
            alphas = {n: plan_for(est, layers[n].fq.quantizer()).alpha for n in names}
            if len(set(alphas.values())) > 1:
                raise ValueError(f"ScheduledTwin: param group {j} holds layers with different α "
                                 f"under the stage from step {step} ({alphas}); their learning "
                                 "rates would part: put them in separate param groups")
    return groups


def _scale_scheduler(sched: Scheduler | None, j: int, factor: float) -> None:
    if sched is None:
        return
    for attr in ("base_lrs", "_last_lr"):
        values = getattr(sched, attr, None)
        if values is not None:
            values[j] *= factor
    for inner in getattr(sched, "_schedulers", ()):
        _scale_scheduler(inner, j, factor)
