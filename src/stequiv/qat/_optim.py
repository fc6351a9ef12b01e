r"""Optimizers and schedulers of a twin: which rule applies, and how their state maps.

**Learning rates** (Tables 1 and 2). Under an SGD-like optimizer the twin's quantized latent weights
train with :math:`\alpha\eta`; every other parameter (biases, float layers) keeps :math:`\eta`.
Parameter groups are split so that each new group holds parameters with one factor; the
scheduler's per-group lists (``base_lrs``, ``_last_lr``, ``lr_lambdas``) follow the split.

**State** for a switch in mid-training. Write the Q̂-net step as :math:`\Delta w = -\eta\,b` with
momentum buffer :math:`b = \mu b + \hat Q'(w)\nabla f`. Through M (Taylor, Eq. 10),
:math:`\Delta M(w) = M'(w)\,\Delta w = -\alpha\eta\,(M'(w)/\alpha)\,b`, and the twin steps
:math:`\Delta\tilde w = -\alpha\eta\,\tilde b` with :math:`\tilde b = \mu\tilde b + \nabla f`. So
:math:`\tilde b = s\,b` with :math:`s = M'(w)/\alpha = 1/\hat Q'(w)` makes the next step of the twin
equal the next step of the Q̂-net seen through M, to first order (Q̂′ changes by O(η) per step).
Where a vanishing estimator is zero, M is a translation, :math:`M' = 1`, so :math:`s = 1/\alpha`.

Under Adam-like optimizers the weights are not remapped; first moments scale like gradients and
second moments like squared gradients: :math:`\tilde m = m/\hat Q'(w)`, :math:`\tilde v = v/\hat Q'(w)^2`,
so :math:`\tilde m/\sqrt{\tilde v} = m/\sqrt v` and the next update agrees (exactly with ε = 0).
Where Q̂′ = 0 (outside a vanishing estimator's range) the twin's PWL gradient is zero too and the
moments are kept.

**Which optimizers** have a twin, and the state table of each, is :mod:`._optim_families` (one
rule per family, with the derivation: SGD, the Adam family and ε, RMSprop, Adagrad, Lion,
schedule-free, Muon, Adafactor, Shampoo/SOAP); :func:`find_rule` recognises an optimizer's
family and refuses those without a twin.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler as lrs

from ._optim_families import BY_CLASS, RULES
from ._optim_rules import OptimizerRule

__all__ = ["optimizer_kind", "optimizer_rule"]

SUPPORTED_SCHEDULERS = (
    lrs.LambdaLR, lrs.MultiplicativeLR, lrs.StepLR, lrs.MultiStepLR, lrs.ConstantLR, lrs.LinearLR,
    lrs.ExponentialLR, lrs.CosineAnnealingLR, lrs.PolynomialLR, lrs.SequentialLR,
)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _unwrap_step(cls: type) -> Any:
    step = getattr(cls, "step", None)
    return inspect.unwrap(step) if callable(step) else step


def find_rule(opt: torch.optim.Optimizer) -> OptimizerRule | None:
    """The family of ``opt``, or None when its update rule is not one this module knows."""
    for cls in type(opt).__mro__:
        rule = BY_CLASS.get(_qualname(cls))
        if rule is None:
            continue
        # unwrapped: torch wraps a class's step (profiling hook) when it is first instantiated
        keeps_step = _unwrap_step(type(opt)) is _unwrap_step(cls)
        has_keys = all(rule.group_keys <= g.keys() for g in opt.param_groups)
        return rule if keeps_step and has_keys else None
    return None


def _unknown(opt: torch.optim.Optimizer) -> ValueError:
    names = ", ".join(dict.fromkeys(c.rsplit(".", 1)[1] for r in RULES if r.has_twin
                                    for c in r.classes))
    return ValueError(
        f"the twin does not know optimizer {type(opt).__name__}; supported: {names} (this is "
        f"{_qualname(type(opt))}). An optimizer is recognised by its class and param-group keys; a "
        "subclass that overrides step() is unknown (its update rule is not known, so no twin is "
        "guessed)")


def resolve(opt: torch.optim.Optimizer, quantized: set[int], approximate: bool) -> OptimizerRule:
    """The rule for ``opt``; refuses (or, with ``approximate``, warns) where it has no twin."""
    rule = find_rule(opt)
    if rule is None:
        raise _unknown(opt)
    reasons = [] if rule.has_twin else [
        f"{type(opt).__name__} ({rule.family}) has no exact STE twin: {rule.reason}"]
    for i, group in enumerate(opt.param_groups):
        if any(id(p) in quantized for p in group["params"]):
            reasons += [r for check in rule.checks if (r := check(opt, i, group))]
    if not reasons:
        return rule
    drift = f" Measured: {rule.measured}." if rule.measured else ""
    message = " ".join(r if r.endswith(".") else f"{r}." for r in reasons) + drift
    if not approximate or not rule.kind:
        if not rule.kind:
            raise ValueError(f"{message} No nearest twin is built for it")
        raise ValueError(f"{message} Pass approximate=True to accept the nearest twin "
                         f"({rule.rule}) and its first-order drift")
    warnings.warn(f"approximate twin ({rule.rule}): {message}", UserWarning, stacklevel=4)
    return rule


def init_kwargs(opt: torch.optim.Optimizer, rule: OptimizerRule | None) -> dict[str, Any]:
    """Constructor arguments kept as attributes (``init_attrs``), to rebuild an equal optimizer."""
    if rule is None:
        return {}
    return {arg: getattr(opt, attr) for arg, attr in rule.init_attrs.items() if hasattr(opt, attr)}


def optimizer_kind(opt: torch.optim.Optimizer, *, approximate: bool = False) -> str:
    """``"sgd"`` (weights through M, α·η: Table 1) or ``"adam"`` (unchanged: Table 2).

    The family is recognised by :func:`find_rule`; an optimizer
    without an exact twin (Muon, Adafactor, Shampoo, ...) is refused with the reason, unless
    ``approximate=True`` (then a warning names its first-order drift).
    """
    return resolve(opt, set(), approximate).kind


def optimizer_rule(opt: torch.optim.Optimizer) -> OptimizerRule:
    """The family rule of ``opt`` (twin rule, verdict, reason), whether or not it has a twin;
    an unknown optimizer is an error."""
    rule = find_rule(opt)
    if rule is None:
        resolve(opt, set(), approximate=False)  # raises, naming the supported ones
    assert rule is not None
    return rule


def rebuild(opt: torch.optim.Optimizer, param_map: dict[int, torch.nn.Parameter],
            factor: Callable[[torch.nn.Parameter], float]) -> tuple[torch.optim.Optimizer, list[tuple[int, float]]]:
    """A new optimizer over the mapped parameters, each group split by learning-rate factor.

    Returns the optimizer and, per new group, ``(old group index, factor)``.
    """
    groups, origin = [], []
    for j, group in enumerate(opt.param_groups):
        by_factor: dict[float, list[torch.nn.Parameter]] = {}
        for p in group["params"]:
            by_factor.setdefault(factor(p), []).append(param_map[id(p)])
        for f, params in by_factor.items():
            new = {k: v for k, v in group.items() if k != "params"}
            new["params"] = params
            for key in ("lr", "initial_lr"):
                if key in new:
                    new[key] = new[key] * f
            groups.append(new)
            origin.append((j, f))
    accepted = inspect.signature(type(opt).__init__).parameters
    kwargs = {k: v for k, v in opt.defaults.items() if k in accepted and k != "params"}
    twin = type(opt)(groups, **kwargs, **init_kwargs(opt, find_rule(opt)))
    if hasattr(opt, "_opt_called"):
        twin._opt_called = opt._opt_called  # type: ignore[attr-defined]
    return twin, origin


def _factor(opt: torch.optim.Optimizer, p: torch.Tensor, key: str, value: Any,
            s: torch.Tensor | None) -> torch.Tensor | None:
    """The factor ``s**power`` for state ``key`` of parameter p (the family's state table of
    :mod:`._optim_families`), in the state's dtype, or None where the state is copied unscaled."""
    if not torch.is_tensor(value) or s is None:
        return None
    rule = find_rule(opt)
    if rule is None or key not in rule.state:
        known = sorted(rule.state) if rule else []
        raise ValueError(f"{type(opt).__name__} holds state {key!r} that the twin does not "
                         f"know how to map; known: {known}. Convert before the first step")
    power = rule.state[key]
    if power is None:
        return None
    if value.shape != p.shape:
        raise ValueError(f"{type(opt).__name__}'s state {key!r} has shape {tuple(value.shape)}, "
                         f"not the parameter's {tuple(p.shape)}: it cannot be scaled per weight")
    # s**power before the cast: in half precision s² can overflow where s does not
    return (s if power == 1 else s**power).to(value.dtype)


def map_state(opt: torch.optim.Optimizer, twin: torch.optim.Optimizer,
              param_map: dict[int, torch.nn.Parameter],
              scale: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
    """Copy per-parameter state into ``twin``, scaled by ``scale(p)**power`` (None: unscaled)."""
    for p, state in opt.state.items():
        s = scale(p)
        new_state: dict[str, Any] = {}
        for key, value in state.items():
            factor = _factor(opt, p, key, value, s)
            new_state[key] = copy.deepcopy(value) if factor is None else value * factor
        twin.state[param_map[id(p)]] = new_state


def scale_state_(opt: torch.optim.Optimizer, scales: dict[torch.nn.Parameter, torch.Tensor]) -> None:
    """In place: the state of each parameter p in ``scales`` times ``scales[p]**power`` (the
    rule of :func:`map_state`, for an optimizer that keeps its parameters); others untouched."""
    for p, s in scales.items():
        for key, value in opt.state[p].items():
            factor = _factor(opt, p, key, value, s)
            if factor is not None:
                value.mul_(factor)


def rebuild_scheduler(sched: lrs.LRScheduler, twin_opt: torch.optim.Optimizer,
                      origin: list[tuple[int, float]]) -> lrs.LRScheduler:
    """A copy of ``sched`` driving ``twin_opt``, its per-group lists following the group split."""
    if not isinstance(sched, SUPPORTED_SCHEDULERS):
        names = ", ".join(c.__name__ for c in SUPPORTED_SCHEDULERS)
        raise ValueError(f"the twin does not know scheduler {type(sched).__name__}; supported: {names}")
    twin = copy.copy(sched)
    twin.optimizer = twin_opt
    for attr in ("base_lrs", "_last_lr"):
        if hasattr(sched, attr):
            old = getattr(sched, attr)
            setattr(twin, attr, [old[j] * f for j, f in origin])
    if hasattr(sched, "lr_lambdas"):
        twin.lr_lambdas = [sched.lr_lambdas[j] for j, _ in origin]  # type: ignore[attr-defined]
    if isinstance(sched, lrs.SequentialLR) and isinstance(twin, lrs.SequentialLR):  # a copy of it
        twin._schedulers = [rebuild_scheduler(s, twin_opt, origin) for s in sched._schedulers]
    _track_step_calls(twin_opt)
    return twin


def _track_step_calls(opt: torch.optim.Optimizer) -> None:
    """Mark ``opt.step`` the way LRScheduler does, so its call-order check keeps working."""
    if hasattr(opt.step, "_wrapped_by_lr_sched"):
        return
    step = opt.step

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opt._opt_called = True  # type: ignore[attr-defined]
        return step(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True
    opt.step = wrapper
