"""Distance-aware quantization (Kim, Lee & Ham 2021): the soft-argmax backward in closed form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import positive_float
from ._common import from_level, level_distance


@register_estimator("daq")
@dataclass(frozen=True)
class DAQ(Estimator):
    r"""DAQ's distance-aware soft argmax over the two adjacent levels, in bin units.

    The forward is hard rounding; with the flexible temperature detached the backward is, with
    d the distance to the nearest level and :math:`\kappa = e^{-1/\sigma^2}`,

    .. math:: \hat Q'(x) = \frac{T}{2\sinh T}\,\frac{1 + \kappa e^{2d-1}}{1 - \kappa e^{2d-1}}

    (σ = 1: :math:`(T/2\sinh T)\coth(1-d)`), smallest at levels, largest at boundaries, kinks at
    both. Closed forms, with :math:`C = 2\sinh T/T`: from a level
    :math:`\int_0^d ds/\hat Q' = C[d - \ln((1+\kappa e^{2d-1})/(1+\kappa/e))]` and
    :math:`I = C[1 - 2\ln((1+\kappa)/(1+\kappa/e))]` (T = 2, σ = 1: I = 2.275, α = 0.440).
    Derived from the released code (checked against its autograd). No surrogate: the forward is
    the rounding itself.

    Args:
        temperature: T (the configs' ``w_temp: 2``).
        sigma: kernel width σ (the configs' ``w_sig: 1``; activations use ``a_sig: 2``).

    Reference: Kim, Lee & Ham, "Distance-aware quantization", ICCV 2021, arXiv:2108.06983;
    code cvlab-yonsei/DAQ ``w_soft_argmax``.
    """

    temperature: float = param(2.0, positive_float)
    sigma: float = param(1.0, positive_float)
    title = "DAQ"
    reference = "Kim, Lee & Ham 2021 (DAQ), ICCV; arXiv:2108.06983"
    kind = "multi-bit"
    tail = "zero"
    kinks = (0.0, 0.5)

    @property
    def scale(self) -> float:
        """T/(2 sinh T), written without overflow."""
        t = self.temperature
        return t * math.exp(-t) / -math.expm1(-2.0 * t)

    @property
    def kappa(self) -> float:
        """κ = exp(-1/σ²)."""
        return math.exp(-1.0 / self.sigma**2)

    def derivative(self, x: Any) -> Any:
        e = self.kappa * array_namespace(x).exp(2.0 * level_distance(x) - 1.0)
        return self.scale * (1.0 + e) / (1.0 - e)

    def boundary_primitive(self, d: Any) -> Any:
        xp = array_namespace(d)
        a = self.kappa / math.e

        def from_level_to(delta: Any) -> Any:
            return (delta - xp.log((1.0 + a * xp.exp(2.0 * delta)) / (1.0 + a))) / self.scale

        return from_level(d, from_level_to)
