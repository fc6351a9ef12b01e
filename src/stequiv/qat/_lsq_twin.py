r"""The STE twin of a Q̂-net with learned Δ: it follows the Q̂-net's Δ (docs/design.md, "Learned step sizes").

With T the grid map (M in bin units), :math:`M(w;\Delta) = \Delta\,(T(w/\Delta - z) + z)`. A Δ step
of the Q̂-net moves M(w; Δ) at fixed w, which no step of an STE net reproduces, and Δ's own
gradient differs between the nets at first order, :math:`\gamma\sum g[(T(v) + z) - (v + z)\hat Q'(v)]`,
so a twin that learns Δ̃ with its own (STE) gradient drifts at first order. The twin that the
derivation justifies is *told* the Q̂-net's Δ: :func:`~stequiv.qat.to_ste` freezes the twin's Δ̃
(``requires_grad=False``: its optimizer skips it), and after every optimizer step of both nets
:meth:`LearnedStepTwin.step` sets Δ̃ := Δ and treats the change as a change of Q̂ (as
:class:`~stequiv.qat.ScheduledTwin` does at a schedule stage, but with the grid moving):

* SGD-like: :math:`\tilde w \leftarrow M(M^{-1}(\tilde w; \Delta_{old}); \Delta_{new})`; the
  learning rate α·η stays (α is a property of the bin-unit estimator, not of Δ);
* Adam-like: :math:`\tilde w = w` stays; only Δ̃ changes.

The optimizer state is left as it is. Unlike a schedule stage, which changes Q̂ by O(1), one Δ
step changes Q̂′(w/Δ − z) by O(η), so rescaling momentum or moments (as at a switch) is an O(η²)
correction per step: measured, it changed Ē by < 3 % under SGD and made it up to 2× worse under
Adam (docs/reproduction.md, "Learned step sizes"), and it would cost two Q̂′ evaluations of every
weight per step.

The weights then track to second order in η; Δ itself is the Q̂-net's, not trained by the STE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core import remap, unremap
from . import _optim
from ._alignment import alignment
from ._lsq import LearnedStepFakeQuant
from ._maps import weight_map
from ._quantize import latent_weight, quantized_layers

__all__ = ["LearnedStepTwin", "learned_step_layers"]

# A twin agrees with its Q̂-net on every level at conversion and on all but a few after (its
# weights track to second order); an unrelated net of the same shape agrees on about half.
MIN_AGREEMENT = 0.9


def learned_step_layers(model: nn.Module) -> dict[str, LearnedStepFakeQuant]:
    """``{name: quantizer}`` of the model's weights whose Δ is learned."""
    return {n: fq for n, fq in quantized_layers(model).items() if isinstance(fq, LearnedStepFakeQuant)}


@dataclass(frozen=True)
class _Pair:
    name: str
    twin: LearnedStepFakeQuant
    latent: nn.Parameter
    qnet: LearnedStepFakeQuant


class LearnedStepTwin:
    """Keeps the STE twin of a learned-Δ Q̂-net on the Q̂-net's Δ (module docstring).

    Args:
        twin: :func:`~stequiv.qat.to_ste` of ``qnet``; ``optimizer`` trains it.
        qnet: the Q̂-net, whose Δ the twin follows.

    Call :meth:`step` once after every optimizer step of both nets.

    Raises:
        ValueError: the nets' learned layers differ, the twin's Δ is trained (not frozen), the
            optimizer does not train a latent weight of the twin, or the twin is not ``qnet``'s
            (another Δ, or fewer than 90 % of the quantized weights on the same level).
    """

    def __init__(self, twin: nn.Module, optimizer: torch.optim.Optimizer, qnet: nn.Module):
        self.kind = _optim.optimizer_kind(optimizer)
        self.optimizer = optimizer
        ours, theirs = learned_step_layers(twin), learned_step_layers(qnet)
        if not theirs or set(ours) != set(theirs):
            raise ValueError(f"LearnedStepTwin: the Q̂-net's learned-Δ layers {sorted(theirs)} and "
                             f"the twin's {sorted(ours)} must be the same, and not none; build the "
                             "twin with stequiv.to_ste(qnet, ...)")
        trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
        self.pairs = []
        for name, fq in ours.items():
            if fq.delta.requires_grad:
                raise ValueError(f"LearnedStepTwin: the twin trains its own Δ of layer {name!r}; its "
                                 "STE gradient differs from the Q̂-net's at first order (the twins "
                                 "would part): freeze it (to_ste does) and let this follow the Q̂-net")
            latent = latent_weight(twin, name)
            if id(latent) not in trained:
                raise ValueError(f"LearnedStepTwin: the optimizer does not train layer {name!r}'s "
                                 "latent weight; pass the twin's optimizer")
            self.pairs.append(_Pair(name, fq, latent, theirs[name]))
        self._check_belongs(twin, qnet)

    def _check_belongs(self, twin: nn.Module, qnet: nn.Module) -> None:
        """The twin must be the Q̂-net's: on its Δ (as :meth:`step` keeps it) and, level for level,
        on its quantized weights (exactly at :func:`~stequiv.qat.to_ste`, almost after that)."""
        for p in self.pairs:
            if not torch.equal(p.twin.delta, p.qnet.delta):
                raise ValueError(f"LearnedStepTwin: layer {p.name!r} of the twin is on another Δ "
                                 "than the Q̂-net's; pass the Q̂-net that the twin was converted "
                                 "from (stequiv.to_ste(qnet, ...))")
        agreement = alignment(qnet, twin, remap=self.kind == "sgd").agreement
        if agreement < MIN_AGREEMENT:
            raise ValueError(f"LearnedStepTwin: only {agreement:.1%} of the twin's quantized "
                             f"weights agree with the Q̂-net's (a twin agrees on all of them at "
                             f"conversion; below {MIN_AGREEMENT:.0%} it is another net); pass the "
                             "Q̂-net that the twin was converted from")

    @torch.no_grad()
    def step(self) -> None:
        """Δ̃ := Δ of every learned layer; under SGD the twin's weights are rebased on it."""
        for p in self.pairs:
            if torch.equal(p.twin.delta, p.qnet.delta):
                continue
            p.qnet.check_delta(f"LearnedStepTwin.step after forward call {p.qnet.calls}")
            if self.kind == "sgd":
                w = weight_map(unremap, p.qnet.estimator, p.twin)(p.latent)
                p.twin.delta.copy_(p.qnet.delta)
                p.latent.copy_(weight_map(remap, p.qnet.estimator, p.twin)(w))
            else:
                p.twin.delta.copy_(p.qnet.delta)
