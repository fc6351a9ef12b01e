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
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler as lrs

__all__ = ["STATE_POWERS", "optimizer_kind"]

SGD_LIKE: tuple[type[torch.optim.Optimizer], ...] = (torch.optim.SGD,)
ADAM_LIKE: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad,
    torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam,
)
# How each per-parameter state tensor scales with the gradient: state ↦ state · s**power.
STATE_POWERS: dict[str, int] = {
    "momentum_buffer": 1, "exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2, "exp_inf": 1,
    "square_avg": 2, "grad_avg": 1, "sum": 2,
}
SCALAR_STATE = {"step", "mu_product"}
# RMSprop's momentum buffer accumulates normalised steps g/(√v + ε): invariant to the scale.
INVARIANT_STATE = {(torch.optim.RMSprop, "momentum_buffer")}
SUPPORTED_SCHEDULERS = (
    lrs.LambdaLR, lrs.MultiplicativeLR, lrs.StepLR, lrs.MultiStepLR, lrs.ConstantLR, lrs.LinearLR,
    lrs.ExponentialLR, lrs.CosineAnnealingLR, lrs.PolynomialLR, lrs.SequentialLR,
)


def optimizer_kind(opt: torch.optim.Optimizer) -> str:
    """``"sgd"`` (non-adaptive: Table 1) or ``"adam"`` (adaptive: Table 2)."""
    if isinstance(opt, SGD_LIKE):
        return "sgd"
    if isinstance(opt, ADAM_LIKE):
        return "adam"
    names = ", ".join(c.__name__ for c in SGD_LIKE + ADAM_LIKE)
    raise ValueError(f"the twin does not know optimizer {type(opt).__name__}; supported: {names}")


def check_weight_decay(opt: torch.optim.Optimizer, quantized: set[int]) -> None:
    """Refuse weight decay on quantized weights where it breaks the correspondence."""
    if isinstance(opt, torch.optim.AdamW):
        return  # decoupled decay acts on identical weights in both nets (Table 2): exact
    for i, group in enumerate(opt.param_groups):
        if group.get("weight_decay", 0) and any(id(p) in quantized for p in group["params"]):
            raise ValueError(
                f"param group {i} applies weight_decay={group['weight_decay']} to quantized "
                f"weights under {type(opt).__name__}: coupled decay λw enters the gradient and is "
                "not mapped by M (the twin would need λ·M⁻¹(w̃)/Q̂′), so the twins would diverge. "
                "Put quantized weights in a group with weight_decay=0, or use AdamW (decoupled "
                "decay is exact)"
            )


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
    twin = type(opt)(groups, **{k: v for k, v in opt.defaults.items() if k in accepted and k != "params"})
    if hasattr(opt, "_opt_called"):
        twin._opt_called = opt._opt_called  # type: ignore[attr-defined]
    return twin, origin


def _factor(opt: torch.optim.Optimizer, p: torch.Tensor, key: str, value: Any,
            s: torch.Tensor | None) -> torch.Tensor | None:
    """The factor ``s**power`` for state ``key`` of parameter p, in the state's dtype, or None
    where the state is unscaled (scalars, invariant state, no scale)."""
    if (not torch.is_tensor(value) or key in SCALAR_STATE or s is None
            or (type(opt), key) in INVARIANT_STATE or value.shape != p.shape):
        return None
    power = STATE_POWERS.get(key)
    if power is None:
        raise ValueError(f"{type(opt).__name__} holds state {key!r} that the twin does not "
                         f"know how to map; known: {sorted(STATE_POWERS)}")
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
