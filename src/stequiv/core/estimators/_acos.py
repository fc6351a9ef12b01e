"""Schaefer et al.'s ``round_acos``: a sine-modulated STE with a jump at every boundary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import open_interval


def _offset_from_level(x: Any) -> Any:
    """u = x - floor(x + 1/2) in [-1/2, 1/2): signed offset from the nearest level."""
    return x - array_namespace(x).floor(x + 0.5)


@register_estimator("round_acos")
@dataclass(frozen=True)
class RoundAcos(Estimator):
    r"""Sine-modulated STE of Schaefer et al. (``round_acos``), in bin units.

    With u = x - round(x) ∈ [-½, ½) and a = δ/2,

    .. math:: \hat Q'(x) = 1 + \tfrac\delta2\sin(\pi u), \qquad
              \hat Q(x) = x - \tfrac{\delta}{2\pi}\cos(\pi u)

    (Q̂ is continuous: cos vanishes at the boundaries), but Q̂′ **jumps** from 1 + a to 1 - a at
    every boundary: bounded and positive for |δ| < 2, not Lipschitz, not symmetric about the
    level; zero outside the clip range (Eq. 1's clip). Closed forms, with
    :math:`r = \sqrt{1-a^2}` and :math:`\kappa = \sqrt{(1+a)/(1-a)}` (the Weierstrass substitution
    and :math:`\tan(\pi/4 + \varphi) = (1 + \tan\varphi)/(1 - \tan\varphi)`):

    .. math:: \int_{1/2}^{1/2+d} \frac{ds}{\hat Q'(s)} = \frac{2}{\pi r}
              \arctan\big(\kappa\tan(\pi d/2)\big), \qquad I = \frac{1}{\sqrt{1 - \delta^2/4}}

    so α = :math:`\sqrt{1 - \delta^2/4}` (evaluated from the nearer end of the bin, so that
    P(0) = 0 and P(1) = I exactly and float32 never meets tan(π/2)).

    Args:
        g_scale: δ in (-2, 2) (the configs' ``g_scale``; 5e-3 for EfficientNet-Lite0 W3A3).

    Reference: Schaefer et al., "Edge inference with fully differentiable quantized mixed
    precision neural networks", WACV 2024, arXiv:2206.07741; code
    Intelligent-Microsystems-Lab/HeterogeneousQuantization ``quant.py`` ``round_acos``.
    """

    g_scale: float = param(5e-3, open_interval(-2.0, 2.0))
    title = "Sine-modulated STE (`round_acos`)"
    reference = "Schaefer et al. 2024, WACV; arXiv:2206.07741 (round_acos)"
    kind = "multi-bit"
    lipschitz = False
    tail = "zero"
    kinks = (0.5,)

    def derivative(self, x: Any) -> Any:
        return 1.0 + 0.5 * self.g_scale * array_namespace(x).sin(math.pi * _offset_from_level(x))

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        return x - self.g_scale / (2.0 * math.pi) * xp.cos(math.pi * _offset_from_level(x))

    def boundary_primitive(self, d: Any) -> Any:
        xp = array_namespace(d)
        a = 0.5 * self.g_scale
        r = math.sqrt(1.0 - a * a)
        kappa = math.sqrt((1.0 + a) / (1.0 - a))
        c = 2.0 / (math.pi * r)
        near = c * xp.atan(kappa * xp.tan(0.5 * math.pi * d))
        far = 1.0 / r - c * xp.atan(xp.tan(0.5 * math.pi * (1.0 - d)) / kappa)
        return xp.where(d <= 0.5, near, far)
