r"""The STE twin of a Q̂-net with learned Δ: it follows the Q̂-net's Δ (docs/design.md, "Learned step sizes").

With T the grid map (M in bin units), :math:`M(w;\Delta) = \Delta\,(T(w/\Delta - z) + z)`. A Δ step
of the Q̂-net moves M(w; Δ) at fixed w, which no step of an STE net reproduces, and Δ's own
gradient differs between the nets at first order, :math:`\gamma\sum g[(T(v) + z) - (v + z)\hat Q'(v)]`,
so a twin that learns Δ̃ with its own (STE) gradient drifts at first order. The twin that the
derivation justifies is *told* the Q̂-net's Δ: :func:`~stequiv.qat.to_ste` freezes the twin's Δ̃
(``requires_grad=False``: its optimizer skips it), and after every optimizer step of both nets
:meth:`LearnedStepTwin.step` sets Δ̃ := Δ and treats the change as a change of Q̂ (as
:class:`~stequiv.qat.ScheduledTwin` does at a schedule stage):

* SGD-like: :math:`\tilde w \leftarrow M(M^{-1}(\tilde w; \Delta_{old}); \Delta_{new})`; the
  learning rate α·η stays (α is a property of the bin-unit estimator, not of Δ); momentum
  :math:`\tilde b \leftarrow \tilde b\,s_{new}(w)/s_{old}(w)`, s = 1/Q̂′(w/Δ − z) (1/α where Q̂′ = 0);
* Adam-like: :math:`\tilde w = w` stays; moments × :math:`(s_{new}/s_{old})^p` (p = 1, 2).

The weights then track to second order in η; Δ itself is the Q̂-net's, not trained by the STE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core import remap, unremap
from ..core._remap import plan_for
from . import _optim
from ._lsq import LearnedStepFakeQuant
from ._maps import weight_map
from ._quantize import latent_weight, quantized_layers
from ._twin import _reciprocal_slope

__all__ = ["LearnedStepTwin", "learned_step_layers"]


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
        ValueError: the nets' learned layers differ, the twin's Δ is trained (not frozen), or the
            optimizer does not train a latent weight of the twin.
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

    @torch.no_grad()
    def step(self) -> None:
        """Δ̃ := Δ of every learned layer, the twin's weights and optimizer state rebased on it."""
        for p in self.pairs:
            if torch.equal(p.twin.delta, p.qnet.delta):
                continue
            p.qnet.check_delta(f"optimizer step {p.qnet.calls}")
            est = p.qnet.estimator
            zero = 1.0 / plan_for(est, p.twin.quantizer()).alpha if self.kind == "sgd" else 1.0
            w = weight_map(unremap, est, p.twin)(p.latent) if self.kind == "sgd" else p.latent.detach()
            s_old = _reciprocal_slope(est, p.twin, p.twin.quantizer(), zero)(w)
            p.twin.delta.copy_(p.qnet.delta)
            if self.kind == "sgd":
                p.latent.copy_(weight_map(remap, est, p.twin)(w))
            if self.optimizer.state.get(p.latent):
                s_new = _reciprocal_slope(est, p.twin, p.twin.quantizer(), zero)(w)
                _optim.scale_state_(self.optimizer, {p.latent: s_new / s_old})
