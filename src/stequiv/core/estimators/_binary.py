"""Smooth binary estimators of sign(w): EDE (IR-Net), RBNN, ApproxSign (Bi-Real) and SwishSign.

All take the latent weight itself (``units = "weight"``, boundary point 0) and are written in STE
units of the sign function, whose jump is 2: a surrogate ramping from -1 to +1 has ∫Q̂′ = 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import positive_float
from ._common import odd, sech2, sigmoid


@register_estimator("ede")
@dataclass(frozen=True)
class EDE(Estimator):
    r"""Error decay estimator of IR-Net (Qin et al. 2020): :math:`\hat Q(w) = k\tanh(tw)`.

    .. math:: \hat Q'(w) = k\,t\,\operatorname{sech}^2(tw), \qquad
              \int_0^w \frac{ds}{\hat Q'(s)} = \frac{1}{kt}\Big(\frac w2 + \frac{\sinh 2tw}{4t}\Big)

    Positive on ℝ (no uniform lower bound), bounded by kt, Lipschitz. IR-Net anneals
    :math:`t = 10^{\log_{10}T_{min} + (\log_{10}T_{max} - \log_{10}T_{min})e/E}`, :math:`k = \max(1/t, 1)`.

    Args:
        t: sharpness (IR-Net's initial module value 0.1).
        k: output scale (IR-Net's initial module value 10).

    Reference: Qin et al., "Forward and backward information retention for accurate binary
    neural networks", CVPR 2020, arXiv:1909.10788; code htqin/IR-Net ``BinaryQuantize``.
    """

    t: float = param(0.1, positive_float)
    k: float = param(10.0, positive_float)
    title = "EDE of IR-Net"
    reference = "Qin et al. 2020 (IR-Net), arXiv:1909.10788"
    kind = "binary"
    units = "weight"

    def derivative(self, x: Any) -> Any:
        return self.k * self.t * sech2(self.t * x)

    def surrogate(self, x: Any) -> Any:
        return self.k * array_namespace(x).tanh(self.t * x)

    def weight_primitive(self, w: Any) -> Any:
        t, kt = self.t, self.k * self.t
        return (0.5 * w + array_namespace(w).sinh(2.0 * t * w) / (4.0 * t)) / kt


@register_estimator("rbnn")
@dataclass(frozen=True)
class RBNN(Estimator):
    r"""Training-aware approximation of sign in RBNN (Lin et al. 2020).

    .. math:: \hat Q'(w) = k\max(0, \sqrt2\,t - t^2|w|), \qquad
              \hat Q(w) = k\big(\sqrt2\,t\,w - \operatorname{sign}(w)\,t^2w^2/2\big)\ (|w| < \sqrt2/t)

    and :math:`k\operatorname{sign}(w)` beyond; support :math:`|w| < \sqrt2/t`, ∫Q̂′ = 2k.
    Closed form :math:`\int_0^w ds/\hat Q' = -\operatorname{sign}(w)\ln(1 - t|w|/\sqrt2)/(kt^2)`,
    infinite at the support edge. Same t, k schedule as IR-Net, with T_min = 1e-2, T_max = 10.

    Args:
        t: sharpness (initial value 1e-2 = T_min of the released schedule).
        k: output scale (initial value max(1/t, 1) = 100).

    Reference: Lin et al., "Rotated binary neural network", NeurIPS 2020, arXiv:2009.13055;
    code lmbxmu/RBNN ``cifar/modules/binarized_modules.py``.
    """

    t: float = param(1e-2, positive_float)
    k: float = param(100.0, positive_float)
    title = "RBNN"
    reference = "Lin et al. 2020 (RBNN), arXiv:2009.13055"
    kind = "binary"
    units = "weight"

    @property
    def support(self) -> tuple[float, float]:
        return (-math.sqrt(2.0) / self.t, math.sqrt(2.0) / self.t)

    @property
    def kinks(self) -> tuple[float, ...]:
        return (self.support[0], 0.0, self.support[1])

    def derivative(self, x: Any) -> Any:
        xp = array_namespace(x)
        return self.k * xp.clip(math.sqrt(2.0) * self.t - self.t**2 * xp.abs(x), 0.0, None)

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        c = xp.clip(x, *self.support)
        return self.k * (math.sqrt(2.0) * self.t * c - xp.sign(c) * self.t**2 * c * c / 2.0)

    def weight_primitive(self, w: Any) -> Any:
        xp = array_namespace(w)
        scale = 1.0 / (self.k * self.t**2)
        return odd(w, lambda a: -scale * xp.log1p(-a * (self.t / math.sqrt(2.0))))


@register_estimator("approx_sign")
@dataclass(frozen=True)
class ApproxSign(Estimator):
    r"""ApproxSign of Bi-Real Net (Liu et al. 2018), Larq's ``approx_sign``.

    .. math:: \hat Q(w) = 2w - \operatorname{sign}(w)w^2\ (|w| < 1),\ \operatorname{sign}(w)
              \text{ beyond}; \qquad \hat Q'(w) = \max(0, 2 - 2|w|)

    Support (-1, 1), ∫Q̂′ = 2. Closed form
    :math:`\int_0^w ds/\hat Q' = -\tfrac12\operatorname{sign}(w)\ln(1 - |w|)`, infinite at ±1.

    Reference: Liu et al., "Bi-Real Net", ECCV 2018, arXiv:1808.00278; larq ``approx_sign``.
    """

    title = "ApproxSign of Bi-Real Net"
    reference = "Liu et al. 2018 (Bi-Real Net), arXiv:1808.00278; Larq approx_sign"
    kind = "binary"
    units = "weight"
    support = (-1.0, 1.0)
    kinks = (-1.0, 0.0, 1.0)

    def derivative(self, x: Any) -> Any:
        xp = array_namespace(x)
        return 2.0 * xp.clip(1.0 - xp.abs(x), 0.0, None)

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        c = xp.clip(x, -1.0, 1.0)
        return 2.0 * c - xp.sign(c) * c * c

    def weight_primitive(self, w: Any) -> Any:
        xp = array_namespace(w)
        return odd(w, lambda a: -0.5 * xp.log1p(-a))


@register_estimator("swish_sign")
@dataclass(frozen=True)
class SwishSign(Estimator):
    r"""SignSwish of BNN+ (Darabi et al. 2018), Larq's ``swish_sign``.

    .. math:: \hat Q(w) = 2\sigma(\beta w)\big(1 + \beta w(1 - \sigma(\beta w))\big) - 1, \qquad
              \hat Q'(w) = \frac{\beta\,(2 - \beta w\tanh(\beta w/2))}{1 + \cosh(\beta w)}

    :math:`\hat Q'(0) = \beta`; it is **negative** for :math:`|\beta w| > 2.3994` (|w| > 0.480 at
    β = 5), with minimum :math:`-0.07383\beta`, so no map M exists (Appendix G).

    Args:
        beta: sharpness β (Larq's default 5.0).

    Reference: Darabi et al., "BNN+: improved binary network training", arXiv:1812.11800;
    larq ``swish_sign``.
    """

    beta: float = param(5.0, positive_float)
    title = "SignSwish of BNN+"
    reference = "Darabi et al. 2018 (BNN+), arXiv:1812.11800; Larq swish_sign"
    kind = "binary"
    units = "weight"
    positive = False

    def derivative(self, x: Any) -> Any:
        bx = self.beta * x
        # 1/(1 + cosh z) = sech^2(z/2)/2, written without overflow
        return self.beta * (2.0 - bx * array_namespace(x).tanh(0.5 * bx)) * 0.5 * sech2(0.5 * bx)

    def surrogate(self, x: Any) -> Any:
        bx = self.beta * x
        s = sigmoid(bx)
        return 2.0 * s * (1.0 + bx * (1.0 - s)) - 1.0
