r"""Which optimizers have an STE twin: one :class:`OptimizerRule` per update-rule family.

An optimizer is recognised by its class's ``module.QualName`` (walking the MRO, so a subclass
that keeps its parent's ``step`` is recognised too) and by its param-group keys; a class that
overrides ``step``, or whose groups lack the family's keys, is unknown and refused, never guessed.
Optional packages (``lion_pytorch``, ``schedulefree``, ``heavyball``, ``pytorch_optimizer``) are
named by strings here and never imported.

Write :math:`q = \hat Q'(w) > 0` per coordinate and :math:`g = \nabla_{Q(w)} f`: the Q̂-net's
gradient is :math:`q g`, the STE twin's :math:`g` (its PWL slope is 1 where q > 0). A twin of
``kind`` ``"sgd"`` trains :math:`M(w)` with :math:`\alpha\eta`; one of kind ``"adam"`` trains w
itself with η. The verdicts (derivations in :mod:`._optim_families`):

``exact``
    the next step after :func:`~stequiv.to_ste` equals the Q̂-net's (float precision; Adam-like
    rules up to the ε effect). Along a run q drifts by O(η) per step, so Ē grows as η².
``second order``
    the next step agrees up to the Taylor remainder :math:`\tfrac12 M''\Delta w^2 = O(\eta^2)`.
``first order``
    the nearest twin's step differs by O(η): a relative error that does not shrink with η. No
    twin: refused unless ``approximate=True``.
``fails``
    no nearest twin is built (schedule-free SGD): refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["OptimizerRule", "find_rule", "resolve"]

GroupCheck = Callable[[torch.optim.Optimizer, int, dict], "str | None"]


@dataclass(frozen=True)
class OptimizerRule:
    r"""How one optimizer family converts.

    ``kind``: the (nearest) twin, ``"sgd"`` (M, α·η) or ``"adam"`` (unchanged). ``state``: per
    state key, the power of :math:`s = 1/\hat Q'` (SGD: :math:`M'/\alpha`) its tensor is scaled
    by, or None where it is copied unchanged (scalars, invariant or weight-valued state).
    ``verdict``/``reason``/``measured``: the order of agreement, why, and the measured Ē slope.
    ``checks``: per param group, a reason the group has no exact twin (coupled decay, ...).
    ``init_attrs``: constructor arguments the optimizer keeps as attributes, not in ``defaults``.
    """

    family: str
    classes: tuple[str, ...]
    group_keys: frozenset[str]
    kind: str
    rule: str
    verdict: str
    state: Mapping[str, int | None]
    reason: str = ""
    measured: str = ""
    checks: tuple[GroupCheck, ...] = ()
    init_attrs: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_twin(self) -> bool:
        return self.verdict in ("exact", "second order")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def find_rule(opt: torch.optim.Optimizer) -> OptimizerRule | None:
    """The family of ``opt``, or None when its update rule is not one this module knows."""
    from ._optim_families import BY_CLASS

    for cls in type(opt).__mro__:
        rule = BY_CLASS.get(_qualname(cls))
        if rule is None:
            continue
        keeps_step = getattr(type(opt), "step", None) is getattr(cls, "step", None)
        has_keys = all(rule.group_keys <= g.keys() for g in opt.param_groups)
        return rule if keeps_step and has_keys else None
    return None


def _unknown(opt: torch.optim.Optimizer) -> ValueError:
    from ._optim_families import RULES

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
