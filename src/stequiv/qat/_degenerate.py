r"""Is a comparison able to test Point B? The spread of Q̂′ over the weights a run starts from.

The paper's Point B (the twin needs M and α) is only testable if Q̂ differs from the STE where the
weights are. Over the latent weights :math:`w` of every quantized layer, in STE units,

.. math:: \rho = \frac{\max_w \hat Q'(w)}{\min_w \hat Q'(w)} \qquad (\infty \text{ if some } \hat Q'(w) = 0).

With :math:`\rho \le 1.01` the estimator is a rescaled STE to within 1 % over those weights: M is
affine there to within 1 % and any twin, adjusted or not, follows the Q̂-net (e.g. EDE at its initial
t = 0.1 on weights below 1: :math:`\rho = 1/\operatorname{sech}^2(0.1\,w_{max})`). For an evolving
estimator the spread is the largest over its stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..core import Estimator
from ._quantize import latent_weight, quantized_layers

__all__ = ["NEARLY_STE", "slope_spread"]

NEARLY_STE = 1.01
"""ρ at or below this: the estimator is the STE (up to a constant) over the weights' range."""


@torch.no_grad()
def slope_spread(model: nn.Module, estimators: Sequence[Estimator] | None = None) -> float:
    """ρ over ``model``'s quantized latent weights, for each layer's own estimator, or the largest
    ρ over ``estimators`` (the stages of a schedule) applied to every layer."""
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("slope_spread: the model has no quantized layer")
    candidates = list(estimators) if estimators is not None else [None]
    worst = 0.0
    for est in candidates:
        hi, lo = 0.0, float("inf")
        for name, fq in layers.items():
            e = est or fq.estimator
            w = latent_weight(model, name).detach()
            x = (w if e.units == "weight" else fq.grid(w)).double()
            g = e.gradient(x, fq.lower, fq.upper, fq.offset)
            hi, lo = max(hi, float(g.max())), min(lo, float(g.min()))
        worst = max(worst, hi / lo if lo > 0 else float("inf"))
    return worst
