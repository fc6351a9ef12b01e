r"""Which optimizers have an STE twin: one :class:`OptimizerRule` per update-rule family.

An optimizer is recognised (:func:`~._optim.find_rule`) by its class's ``module.QualName``
(walking the MRO, so a subclass that keeps its parent's ``step`` is recognised too) and by its
param-group keys; a class that overrides ``step``, or whose groups lack the family's keys, is
unknown and refused, never guessed. Optional packages (``lion_pytorch``, ``schedulefree``,
``heavyball``, ``pytorch_optimizer``) are named by strings in :mod:`._optim_families` and never
imported.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

__all__ = ["OptimizerRule"]

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
