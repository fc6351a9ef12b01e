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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import (
    Estimator,
    NoRemapError,
    UniformQuantizer,
    get_estimator,
    remap,
    ste_twin,
    unremap,
)
from ..core._remap import plan_for
from ..core._validate import integer, positive_float
from . import _optim
from ._fake_quant import WeightFakeQuant
from ._quantize import latent_weight, quantized_layers
from ._twin import reciprocal_slope_at, slope_points

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
            ends = torch.stack([w.min(), w.max()]).cpu().numpy()
            for step, est in self.stages:
                try:
                    with np.errstate(over="ignore"):  # an overflowing cosh reads as Q̂′ = 0
                        ste_twin(est, q, kind)  # type: ignore[arg-type]
                        mapped = remap(est, q, ends)  # also builds M's tables now, not mid-training
                        unremap(est, q, mapped)
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
        self.stage = schedule.index(self.steps)

    @property
    def current(self) -> Estimator:
        """The Q̂ in force."""
        return self.schedule.stages[self.stage][1]

    def step(self) -> bool:
        """Advance one step; True if the estimator changed."""
        self.steps += 1
        new = self.schedule.index(self.steps)
        if new == self.stage:
            return False
        self._change(self.stage, new)
        self.stage = new
        return True

    def _change(self, old: int, new: int) -> None:
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
        self.stage = self.schedule.index(self.steps)
        self._restore(self.stage)

    def _restore(self, stage: int) -> None:
        raise NotImplementedError


class ScheduledEstimator(_Follower):
    """Drives the Q̂-net's estimator through ``schedule`` (every quantized layer)."""

    def __init__(self, model: nn.Module, schedule: EstimatorSchedule, *, step: int = 0):
        _Follower.__init__(self, model, schedule, step)
        self.layers = quantized_layers(model)
        if not self.layers:
            raise ValueError("ScheduledEstimator: the model has no quantized layer; quantize_ it first")
        self._restore(self.stage)

    def _change(self, old: int, new: int) -> None:
        self._restore(new)

    def _restore(self, stage: int) -> None:
        for fq in self.layers.values():
            fq.estimator = self.schedule.stages[stage][1]


@dataclass(frozen=True)
class _TwinLayer:
    """One quantized layer of the twin, with its grid and, per stage, the twin estimator and α."""

    fq: WeightFakeQuant
    latent: nn.Parameter
    q: UniformQuantizer
    twins: tuple[Estimator, ...]
    alphas: tuple[float, ...]


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
        schedule.check(twin, self.kind)  # everything below is then known to exist
        self.layers = {}
        for name, fq in quantized_layers(twin).items():
            q = fq.quantizer()
            self.layers[name] = _TwinLayer(
                fq, latent_weight(twin, name), q,
                tuple(ste_twin(e, q, self.kind) for _, e in schedule.stages),  # type: ignore[arg-type]
                tuple(plan_for(e, q).alpha for _, e in schedule.stages))
        if not self.layers:
            raise ValueError("ScheduledTwin: the twin has no quantized layer")
        self._groups = _group_layers(optimizer, self.layers)

    def _change(self, old: int, new: int) -> None:
        est_old, est_new = self.schedule.stages[old][1], self.schedule.stages[new][1]
        ratios: dict[nn.Parameter, torch.Tensor] = {}
        with torch.no_grad():
            for L in self.layers.values():
                if self.kind == "sgd":  # in the layout's rows, where the core's quantizer applies
                    rows = L.fq.layout.rows(L.latent.detach()).to("cpu", _core_dtype(L.latent))
                    w_rows, mapped = _rebase(est_old, est_new, L.q, rows.numpy())
                    L.latent.copy_(L.fq.layout.unrows(torch.from_numpy(mapped)))
                    w = L.fq.layout.unrows(torch.from_numpy(w_rows)).to(L.latent.device)
                    zeros = (1.0 / L.alphas[old], 1.0 / L.alphas[new])
                else:
                    w, zeros = L.latent.detach(), (1.0, 1.0)
                if self.optimizer.state.get(L.latent):  # s = 1/Q̂′ at the Q̂-net's w, as at a switch
                    x_old = slope_points(est_old, L.fq, w)
                    x_new = x_old if est_new.units == est_old.units else slope_points(est_new, L.fq, w)
                    ratios[L.latent] = (reciprocal_slope_at(est_new, L.q, x_new, zeros[1])
                                        / reciprocal_slope_at(est_old, L.q, x_old, zeros[0]))
                L.fq.estimator = L.twins[new]
        _optim.scale_state_(self.optimizer, ratios)
        if self.kind == "sgd":
            for j, names in self._groups.items():
                L = self.layers[names[0]]
                _scale_lr(self.optimizer, self.scheduler, j, L.alphas[new] / L.alphas[old])

    def _restore(self, stage: int) -> None:
        for L in self.layers.values():
            L.fq.estimator = L.twins[stage]


def _core_dtype(w: torch.Tensor) -> torch.dtype:
    """The core maps float32 and float64; half precision goes through float64."""
    return w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float64


def _rebase(old: Estimator, new: Estimator, q: UniformQuantizer,
            w_twin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w, M_new(w)) with w = M_old⁻¹(w̃): the Q̂-net's weight and the twin's new weight."""
    w = _fast_inverse(old, q, w_twin) if _closed_binary(old) else unremap(old, q, w_twin)
    return w, remap(new, q, w)


def _closed_binary(est: Estimator) -> bool:
    return est.units == "weight" and est.weight_primitive is not None and not np.isfinite(est.support).any()


def _fast_inverse(est: Estimator, q: UniformQuantizer, y: np.ndarray) -> np.ndarray:
    """M⁻¹(y) of a binary estimator with a closed primitive P on ℝ (M = P, α = 1).

    Seed: P tabulated on 4097 nodes over [-R, R] (R doubled until P(±R) brackets y), inverted on a
    uniform grid of y and interpolated there (a gather, not a search per weight); then three
    Newton steps w ← w − (P(w) − y)·Q̂′(w) (M′ = 1/Q̂′) in float64. The core's exact bisection
    (:func:`~stequiv.core.unremap`) finishes the entries that did not converge or changed sign.
    """
    prim: Any = est.weight_primitive
    y64 = y.astype(np.float64).ravel()
    lo, hi = float(y64.min()), float(y64.max())
    radius = max(abs(lo), abs(hi), 1e-12)
    with np.errstate(over="ignore", invalid="ignore"):
        while not (prim(np.float64(radius)) >= hi and prim(np.float64(-radius)) <= lo):
            radius *= 2.0
        nodes = np.linspace(-radius, radius, 4097)
        y_grid = np.linspace(lo, hi, 4097)
        w_grid = np.interp(y_grid, prim(nodes), nodes)
        h = (hi - lo) / 4096 or 1.0
        pos = np.clip((y64 - lo) / h, 0.0, 4095.999)
        i = pos.astype(np.intp)
        w = w_grid[i] + (pos - i) * (w_grid[i + 1] - w_grid[i])
        for _ in range(3):
            w -= (prim(w) - y64) * est.derivative(w)
        residual = np.abs(prim(w) - y64)
    bad = ~(residual <= 1e-9 * np.maximum(np.abs(y64), 1e-30)) | ((w >= 0) != (y64 >= 0))
    out = w.astype(y.dtype).reshape(y.shape)
    if bad.any():
        flat = out.reshape(-1)
        flat[bad] = unremap(est, q, y.reshape(-1)[bad])
    return out


def _group_layers(opt: torch.optim.Optimizer, layers: Mapping[str, _TwinLayer]) -> dict[int, list[str]]:
    """``{group index: quantized layers in it}``; every layer's latent must be in the optimizer,
    and a group's layers must share α at every stage, so that one lr factor fits the group."""
    where = {id(p): j for j, g in enumerate(opt.param_groups) for p in g["params"]}
    groups: dict[int, list[str]] = {}
    for name, layer in layers.items():
        if id(layer.latent) not in where:
            raise ValueError(f"ScheduledTwin: the optimizer does not train layer {name!r}'s latent weight")
        groups.setdefault(where[id(layer.latent)], []).append(name)
    for j, names in groups.items():
        alphas = {n: layers[n].alphas for n in names}
        if len(set(alphas.values())) > 1:
            raise ValueError(f"ScheduledTwin: param group {j} holds layers whose α differ over the "
                             f"schedule ({alphas}); their learning rates would part: put them in "
                             "separate param groups")
    return groups


def _scale_lr(opt: torch.optim.Optimizer, sched: Scheduler | None, j: int, factor: float) -> None:
    """Learning rate of group j (and its schedule's base) × factor: α_old·η → α_new·η."""
    group = opt.param_groups[j]
    for key in ("lr", "initial_lr"):
        if key in group:
            group[key] *= factor
    _scale_scheduler(sched, j, factor)


def _scale_scheduler(sched: Scheduler | None, j: int, factor: float) -> None:
    if sched is None:
        return
    for attr in ("base_lrs", "_last_lr"):
        values = getattr(sched, attr, None)
        if values is not None:
            values[j] *= factor
    for inner in getattr(sched, "_schedulers", ()):
        _scale_scheduler(inner, j, factor)
