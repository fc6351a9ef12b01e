"""Quantization Networks (Yang et al. 2019): sums of sigmoids, multi-bit and binary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import positive_float
from ._common import sech2, sigmoid

_LOG_TRUNCATION = math.log(4e16)  # a dropped term is < 1e-16 of the nearest one: T·n > this


@register_estimator("qn")
@dataclass(frozen=True)
class QN(Estimator):
    r"""Quantization Networks' soft quantizer on an infinite uniform grid, in bin units.

    Eq. 7 of the paper with unit spacing, :math:`s_i = 1`, boundaries at the half-integers and
    αβ = 1:

    .. math:: \hat Q(x) = \sum_{j} \sigma\big(T(x - j - \tfrac12)\big) + \text{const}, \qquad
              \hat Q'(x) = T\sum_{j}\sigma'\big(T(x - j - \tfrac12)\big)

    1-periodic by construction; the sum keeps the 2n+1 sigmoids nearest to x, with
    :math:`Tn > \ln(4\cdot10^{16})` so that every dropped term is below 1e-16 of the local value.
    Steepest at boundaries (≈ T/4), flattest at levels (≈ 2T e^{-T/2}); zero outside the clip
    range. No closed form for ∫1/Q̂′ (adjacent sigmoids overlap): α is numeric; the nearest-sigmoid
    bound is :math:`I \le 2/T + 4\sinh(T/2)/T^2`.

    Args:
        temperature: the paper's T (schedule T = 5·epoch for ResNet, 10·epoch for AlexNet).

    Reference: Yang et al., "Quantization networks", CVPR 2019, arXiv:1911.09464.
    """

    temperature: float = param(5.0, positive_float)
    title = "Quantization Networks"
    reference = "Yang et al. 2019 (Quantization Networks), CVPR; arXiv:1911.09464"
    kind = "multi-bit"
    tail = "zero"

    @property
    def terms(self) -> int:
        """n: the sum runs over the 2n + 1 boundaries nearest to x."""
        return max(1, math.ceil(_LOG_TRUNCATION / self.temperature))

    def _sum(self, x: Any, term: Any) -> Any:
        xp = array_namespace(x)
        u = x - xp.floor(x) - 0.5
        out = xp.zeros_like(x)
        n = self.terms
        for j in sorted(range(-n, n + 1), key=abs, reverse=True):  # small terms first
            out = out + term(self.temperature * (u - j))
        return out

    def derivative(self, x: Any) -> Any:
        r"""The same 2n + 1 terms, each :math:`\sigma'(z) = p/(1+p)^2` with :math:`p = e^{-|z|}
        \le 1`, from two exponentials instead of 2n + 1: with :math:`a = |u|`, :math:`b = \tfrac12
        - a`, the terms j ≤ 0 have :math:`p = e^{-Tm}e^{-Ta}` (m = −j) and the terms j ≥ 1
        :math:`p = e^{-T(k + 1/2)}e^{-Tb}` (k = j − 1), by the symmetry of the sum in u. They are
        added two at a time over one division, :math:`(p_1 d_2 + p_2 d_1)/(d_1 d_2)`,
        :math:`d = (1+p)^2 \in [1, 4]` (no overflow, no cancellation), smallest first."""
        xp = array_namespace(x)
        t = self.temperature
        a = xp.abs(x - xp.floor(x) - 0.5)
        near, far = xp.exp(-t * a), xp.exp(-t * (0.5 - a))  # the j = 0 and j = 1 terms' p
        n = self.terms
        p = math.exp(-t * n) * near
        out = p / ((1.0 + p) * (1.0 + p))  # j = −n: the one term without a partner
        for m in range(n - 1, -1, -1):
            p1, p2 = math.exp(-t * m) * near, math.exp(-t * (m + 0.5)) * far
            d1, d2 = (1.0 + p1) * (1.0 + p1), (1.0 + p2) * (1.0 + p2)
            out = out + (p1 * d2 + p2 * d1) / (d1 * d2)
        return t * out

    def surrogate(self, x: Any) -> Any:
        return array_namespace(x).floor(x) + self._sum(x, sigmoid) - self.terms


@register_estimator("qn_binary")
@dataclass(frozen=True)
class QNBinary(Estimator):
    r"""Quantization Networks' binary case: one sigmoid, :math:`\hat Q(w) = \alpha(2\sigma(T\beta w) - 1)`.

    With αβ = 1:

    .. math:: \hat Q'(w) = 2T\sigma'(T\beta w) = \tfrac T2\operatorname{sech}^2(T\beta w/2), \qquad
              \int_0^w \frac{ds}{\hat Q'(s)} = \frac wT + \frac{\sinh(T\beta w)}{T^2\beta}

    ∫Q̂′ = 2/β, so β = 1 makes Q̂ a ±1 ramp. Positive on ℝ (no uniform lower bound), bounded by T/2.

    Args:
        temperature: the paper's T.
        beta: input scale β (the paper initialises β = 5p/(4q), α = 1/β).

    Reference: Yang et al., "Quantization networks", CVPR 2019, arXiv:1911.09464.
    """

    temperature: float = param(5.0, positive_float)
    beta: float = param(1.0, positive_float)
    title = "Quantization Networks, binary (one sigmoid)"
    reference = "Yang et al. 2019 (Quantization Networks), CVPR; arXiv:1911.09464"
    kind = "binary"
    units = "weight"

    def derivative(self, x: Any) -> Any:
        return 0.5 * self.temperature * sech2(0.5 * self.temperature * self.beta * x)

    def surrogate(self, x: Any) -> Any:
        return (2.0 * sigmoid(self.temperature * self.beta * x) - 1.0) / self.beta

    def weight_primitive(self, w: Any) -> Any:
        t, tb = self.temperature, self.temperature * self.beta
        return w / t + array_namespace(w).sinh(tb * w) / (t * tb)
