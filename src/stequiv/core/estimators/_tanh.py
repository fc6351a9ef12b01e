"""Tanh-shaped multi-bit estimators: HTGE (Pei et al. 2023) and DSQ (Gong et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import integer, open_interval, positive_float
from ._common import sech2


def _offset_from_boundary(x: Any) -> Any:
    """x - floor(x) - 1/2: signed distance to the decision boundary of the current unit cell."""
    xp = array_namespace(x)
    return x - xp.floor(x) - 0.5


def _boundary_distance_primitive(d: Any, f: Any) -> Any:
    """P(d) for a 1/h symmetric about the level at d = 1/2, from the odd primitive f (f(0) = 0)."""
    xp = array_namespace(d)
    return xp.where(d <= 0.5, f(d), 2.0 * f(0.5) - f(1.0 - d))


@register_estimator("htge")
@dataclass(frozen=True)
class HTGE(Estimator):
    r"""Hyperbolic tangent gradient estimator (Pei et al. 2023), as in the paper's Appendix B.

    Eq. 1 with round replaced by :math:`H(x) = \tfrac{a+b}{2} + \tfrac12\tanh(t(x - \tfrac{a+b}{2}))`,
    :math:`a = \lfloor x\rfloor`, :math:`b = \lceil x\rceil`, applied to the grid coordinate x:

    .. math:: \hat Q'(x) = \tfrac t2\,\operatorname{sech}^2\!\big(t(x - \lfloor x\rfloor - \tfrac12)\big)

    steepest at decision boundaries, flattest at levels, and zero outside the clip range (Eq. 1's
    clip). Closed forms: :math:`\int_{bin} 1/\hat Q' = 1/t + \sinh(t)/t^2`, so
    :math:`\alpha = t^2/(t + \sinh t)`, and :math:`\int_0^d (2/t)\cosh^2(ts)\,ds =
    d/t + \sinh(2td)/(2t^2)` from a boundary.

    Args:
        t: sharpness in bin units (> 0).

    Reference: Pei, Yao, Zhao & Yu, "Quantization via Distillation and Contrastive Learning",
    IEEE TNNLS 2023.
    """

    t: float = param(4.0, positive_float)
    title = "HTGE"
    reference = "Pei et al. 2023, IEEE TNNLS; seed paper Appendix B"
    kind = "both"
    tail = "zero"
    kinks = (0.0,)

    @classmethod
    def t_from_sharpness(cls, sharpness: float, bits: int) -> float:
        r"""t in bin units for a sharpness given in units of 1/max (the paper's "t set to 5.5
        times the maximum value from the weight distribution" on the symmetric grid):
        :math:`t = \text{sharpness}\cdot\Delta/\max = 2\,\text{sharpness}/(2^b - 1)`."""
        s = positive_float("sharpness", sharpness)
        b = integer("bits", bits, minimum=1)
        return cls(t=2.0 * s / (2**b - 1)).t

    @property
    def sech2_shape(self) -> tuple[float, float]:
        """(amplitude, steepness) of Q̂′ = A sech²(k e): Appendix H's closed-form constants."""
        return 0.5 * self.t, self.t

    def derivative(self, x: Any) -> Any:
        return 0.5 * self.t * sech2(self.t * _offset_from_boundary(x))

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        return xp.floor(x) + 0.5 + 0.5 * xp.tanh(self.t * _offset_from_boundary(x))

    def boundary_primitive(self, d: Any) -> Any:
        t = self.t
        xp = array_namespace(d)
        return _boundary_distance_primitive(d, lambda s: s / t + xp.sinh(2 * t * s) / (2 * t * t))


@register_estimator("dsq")
@dataclass(frozen=True)
class DSQ(Estimator):
    r"""Differentiable Soft Quantization (Gong et al. 2019), in bin units (Δ = 1).

    With :math:`k = \ln(2/\alpha_{\rm dsq} - 1)` and :math:`s = 1/(1-\alpha_{\rm dsq})`,

    .. math:: \hat Q(x) = \lfloor x\rfloor + \tfrac12\big(1 + s\tanh(k(x - \lfloor x\rfloor - \tfrac12))\big),
              \qquad \hat Q'(x) = \tfrac{sk}{2}\operatorname{sech}^2\!\big(k(x - \lfloor x\rfloor - \tfrac12)\big)

    so :math:`\hat Q` rises by exactly one level per bin. Zero outside the clip range (clamp).
    Closed form: :math:`\int_{bin} 1/\hat Q' = (2/(sk))(1/2 + \sinh(k)/(2k))`.

    Args:
        alpha: DSQ's own shape parameter :math:`\alpha_{\rm dsq} \in (0, 1)` (0.2 in the
            unofficial reference code, 0.4 in MQBench); not the learning-rate factor α.

    Reference: Gong et al., ICCV 2019, arXiv:1908.05033; MQBench ``dsq_function_per_tensor``.
    """

    alpha: float = param(0.2, open_interval(0.0, 1.0))
    title = "DSQ"
    reference = "Gong et al. 2019, arXiv:1908.05033"
    kind = "both"
    tail = "zero"
    kinks = (0.0,)

    @property
    def k(self) -> float:
        """Steepness in bin units: ln(2/α - 1)."""
        return math.log(2.0 / self.alpha - 1.0)

    @property
    def s(self) -> float:
        """Scale 1/(1 - α) = 1/tanh(k/2), normalising one level per bin."""
        return 1.0 / (1.0 - self.alpha)

    @property
    def sech2_shape(self) -> tuple[float, float]:
        """(amplitude, steepness) of Q̂′ = A sech²(k e): Appendix H's closed-form constants."""
        return 0.5 * self.s * self.k, self.k

    def derivative(self, x: Any) -> Any:
        return 0.5 * self.s * self.k * sech2(self.k * _offset_from_boundary(x))

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        return xp.floor(x) + 0.5 * (1.0 + self.s * xp.tanh(self.k * _offset_from_boundary(x)))

    def boundary_primitive(self, d: Any) -> Any:
        k, s = self.k, self.s
        xp = array_namespace(d)
        return _boundary_distance_primitive(
            d, lambda v: (2.0 / (s * k)) * (v / 2 + xp.sinh(2 * k * v) / (4 * k))
        )
