"""Position-based scaled gradient (Kim, Yoo & Kwak 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import nonnegative_float, positive_float
from ._common import from_level, level_distance


@register_estimator("psg")
@dataclass(frozen=True)
class PSG(Estimator):
    r"""PSG: the gradient scaled by the distance to the nearest level, in bin units.

    The released code multiplies the gradient by :math:`\lambda_s|w - Q(w)|`; in the grid
    coordinate, with :math:`\beta = \lambda_s\Delta` and an optional floor ε,

    .. math:: \hat Q'(x) = \beta\,|x - \operatorname{round}(x)| + \varepsilon, \qquad
              \hat Q(x) = \tfrac\beta4\operatorname{round}(x) + \tfrac\beta2\operatorname{sign}(u)u^2
              + \varepsilon x,\quad u = x - \operatorname{round}(x)

    **Zero at the levels** for ε = 0 (the code's choice): ∫1/Q̂′ diverges there and no M exists
    (``positive`` is True only for ε > 0). For ε > 0, from a level
    :math:`\int_0^d ds/\hat Q' = \ln(1 + \beta d/\varepsilon)/\beta` and
    :math:`I = (2/\beta)\ln(1 + \beta/(2\varepsilon))`. Kinks at levels and boundaries.
    Outside the clip range the distance is to the edge level (Q clips), a custom tail
    :math:`\beta|v - \text{edge}| + \varepsilon` with the same logarithmic primitive.
    The paper's forward keeps the full-precision weight; only Q̂′ is modelled here.

    Args:
        beta: :math:`\lambda_s\Delta` (the code's ``beta`` is λ_s, 150 for W4 on CIFAR-100);
            4.0 makes Q̂ rise by one level per bin, like the STE.
        eps: floor ε ≥ 0 (0 in the released code).

    Reference: Kim, Yoo & Kwak, "Position-based scaled gradient for model quantization and
    pruning", NeurIPS 2020, arXiv:2005.11035; code Jangho-Kim/PSG-pytorch.
    """

    beta: float = param(4.0, positive_float)
    eps: float = param(0.0, nonnegative_float)
    title = "PSG"
    reference = "Kim, Yoo & Kwak 2020 (PSG), arXiv:2005.11035"
    kind = "multi-bit"
    tail = "custom"
    kinks = (0.0, 0.5)

    @property
    def positive(self) -> bool:
        return self.eps > 0

    def derivative(self, x: Any) -> Any:
        return self.beta * level_distance(x) + self.eps

    def surrogate(self, x: Any) -> Any:
        xp = array_namespace(x)
        r = xp.round(x)
        u = x - r
        return 0.25 * self.beta * r + 0.5 * self.beta * xp.sign(u) * u * u + self.eps * x

    def boundary_primitive(self, d: Any) -> Any:
        xp = array_namespace(d)
        b, e = self.beta, self.eps
        return from_level(d, lambda delta: xp.log1p(b * delta / e) / b)

    def tail_derivative(self, v: Any, lower: float, upper: float, offset: float) -> Any:
        xp = array_namespace(v)
        return self.beta * xp.abs(v - xp.clip(v, float(lower), float(upper))) + self.eps

    def tail_primitive(self, v: Any, edge: float, lower: float, upper: float, offset: float) -> Any:
        xp = array_namespace(v)
        s = v - edge
        return xp.sign(s) * xp.log1p(self.beta * xp.abs(s) / self.eps) / self.beta

    def tail_primitive_inverse(self, y: Any, edge: float, lower: float, upper: float,
                               offset: float) -> Any:
        xp = array_namespace(y)
        # both sides are evaluated (np.where); the clip only touches the discarded side's values
        grow = xp.expm1(xp.clip(self.beta * xp.abs(y), None, 700.0))
        return edge + xp.sign(y) * grow * (self.eps / self.beta)
