"""The partners of the Q̂-net as a registry: one entry per partner kind of the protocol.

Each :class:`PartnerKind` says everything the engine needs to know about one kind of partner
(:data:`~stequiv.experiments.config.PARTNERS`, named by the protocol's rows):

* ``build`` — the partner from the Q̂-net's current weights, optimizer and schedule;
* ``role`` — how it is named in progress output and error messages (a NaN loss names it);
* ``label`` — its label in ``final.json`` and the tables;
* ``follows`` — how it keeps up with an estimator schedule: as a Q̂-net (``"estimator"``: it
  uses Q̂ itself), as a twin (``"twin"``), or not at all (``None``).

A new partner is one entry here and one name in the protocol; nothing switches on the names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ... import qat
from ...core import get_estimator, ste_twin
from ..config import ACTIVATION_SWAP, LR_TWEAK, PARTNERS, PROTOCOL, STE, ExperimentConfig, PairSpec
from ._setup import clone_with_lr

__all__ = ["PARTNER_KINDS", "PartnerKind", "build_partner", "describe_partner", "follower",
           "partner_role"]

Follows = Literal["estimator", "twin"] | None
Built = tuple[nn.Module, torch.optim.Optimizer, Any]


@dataclass(frozen=True)
class PartnerKind:
    """One kind of partner: how it is built, named, labelled, and kept on a schedule."""

    name: str
    build: Callable[[ExperimentConfig, PairSpec, nn.Module, torch.optim.Optimizer, Any], Built]
    role: Callable[[ExperimentConfig], str]
    label: Callable[[ExperimentConfig, PairSpec, nn.Module], str]
    follows: Callable[[PairSpec], Follows]


def _twin(config: ExperimentConfig, spec: PairSpec, model: nn.Module,
          opt: torch.optim.Optimizer, sched: Any) -> Built:
    """The STE twin with the experiment's adjustments (weights through M, lr × α)."""
    row = PROTOCOL[spec.experiment]
    twin = qat.to_ste(model, opt, sched, remap_weights=row.remap, scale_lr=row.scale_lr)
    assert twin.optimizer is not None  # given an optimizer, to_ste converts it
    return twin.model, twin.optimizer, twin.scheduler


def _twin_label(config: ExperimentConfig, spec: PairSpec, model: nn.Module) -> str:
    layer = next(iter(qat.quantized_layers(model).values()))
    twin = ste_twin(layer.estimator, layer.quantizer(), spec.optimizer)  # type: ignore[arg-type]
    return f"{twin.describe()} twin ({spec.experiment})"


def _twin_follows(spec: PairSpec) -> Follows:
    """A twin with both of Theorem 5.1's adjustments follows as a twin; the ablations, which drop
    one or both, do not follow (their drift is what they measure)."""
    row = PROTOCOL[spec.experiment]
    return "twin" if row.remap and row.scale_lr else None


def _tweak(config: ExperimentConfig, spec: PairSpec, model: nn.Module,
           opt: torch.optim.Optimizer, sched: Any) -> Built:
    """The Q̂-net itself, every learning rate × ``lr_tweak``."""
    return clone_with_lr(model, opt, sched, config.lr_tweak)


def _swap(config: ExperimentConfig, spec: PairSpec, model: nn.Module,
          opt: torch.optim.Optimizer, sched: Any) -> Built:
    """Section 8: the same net with ``activation_swap_to`` on its activations (no twin exists)."""
    net, net_opt, net_sched = clone_with_lr(model, opt, sched, 1.0)
    for aq in qat.activation_quantizers(net).values():
        aq.estimator = get_estimator(config.activation_swap_to)
    return net, net_opt, net_sched


PARTNER_KINDS: dict[str, PartnerKind] = {kind.name: kind for kind in (
    PartnerKind(STE, _twin, role=lambda config: "the STE twin", label=_twin_label,
                follows=_twin_follows),
    PartnerKind(LR_TWEAK, _tweak, role=lambda config: "the Q̂-net with lr × lr_tweak",
                label=lambda config, spec, model: PROTOCOL[LR_TWEAK].describe(config.lr_tweak),
                follows=lambda spec: "estimator"),
    PartnerKind(ACTIVATION_SWAP, _swap,
                role=lambda config: (f"the Q̂-net with activation estimator "
                                     f"{config.activation_swap_to!r}"),
                label=lambda config, spec, model: PROTOCOL[ACTIVATION_SWAP].describe(config.lr_tweak),
                follows=lambda spec: "estimator"),
)}
assert tuple(PARTNER_KINDS) == PARTNERS, "one registry entry per partner of the protocol"


def build_partner(config: ExperimentConfig, spec: PairSpec, model: nn.Module,
                  opt: torch.optim.Optimizer, sched: Any) -> Built:
    """The partner of the Q̂-net, from its current weights and optimizer state: ``(model,
    optimizer, scheduler)`` (see :data:`PARTNER_KINDS`)."""
    return PARTNER_KINDS[spec.partner].build(config, spec, model, opt, sched)


def describe_partner(config: ExperimentConfig, spec: PairSpec, model: nn.Module) -> str:
    """A label for net b: the configured lr-tweak, or the STE twin's estimator."""
    return PARTNER_KINDS[spec.partner].label(config, spec, model)


def partner_role(config: ExperimentConfig, spec: PairSpec) -> str:
    """How net b is named in progress output and errors, e.g. ``the STE twin``."""
    return PARTNER_KINDS[spec.partner].role(config)


def follower(schedule: qat.EstimatorSchedule | None, spec: PairSpec | None, net: nn.Module,
             opt: torch.optim.Optimizer, sched: Any, step: int) -> Any:
    """What keeps ``net`` on the schedule: the Q̂-net (``spec`` None) and its Q̂ copies (lr-tweak,
    activation-swap) follow the estimator, the STE twins (baseline, lr-sweep) follow as twins;
    the ablations (unadjusted, m-only, alpha-only), which drop the adjustments, do not follow."""
    if schedule is None:
        return None
    how = "estimator" if spec is None else PARTNER_KINDS[spec.partner].follows(spec)
    if how == "estimator":
        return qat.ScheduledEstimator(net, schedule, step=step)
    if how == "twin":
        return qat.ScheduledTwin(net, opt, schedule, scheduler=sched, step=step)
    return None
