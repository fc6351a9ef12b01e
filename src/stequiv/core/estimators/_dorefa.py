"""DoReFa-Net's weight transform (Zhou et al. 2016), Larq's ``DoReFa(mode="weights")``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator, param, register_estimator
from .._validate import half_open_interval
from ._common import sech2


@register_estimator("dorefa")
@dataclass(frozen=True)
class DoReFa(Estimator):
    r"""DoReFa weight quantizer: STE through the rounding of :math:`\tanh(w)/(2m) + \tfrac12`.

    Forward :math:`2\,\mathrm{quantize}_k\big(\tanh(w)/(2m) + \tfrac12\big) - 1` with
    :math:`m = \max_j|\tanh w_j|` held constant (Larq's ``stop_gradient``), so in weight units

    .. math:: \hat Q(w) = \tanh(w)/m, \qquad \hat Q'(w) = \operatorname{sech}^2(w)/m, \qquad
              \int_a^b \frac{ds}{\hat Q'(s)} = m\Big(\frac{b-a}2 + \frac{\sinh 2b - \sinh 2a}4\Big)

    Positive (→ 0 for large |w|), bounded by 1/m, Lipschitz, but **not cyclical**: the tanh
    warps the grid, so the bins of the latent weight differ in width and no α, M exist (Eq. 4).
    It takes the latent weight itself (``units = "weight"``), whatever the quantizer's Δ.

    Args:
        m: the normaliser max|tanh(w)| over the tensor, in (0, 1] (1.0 for weights clipped to a
            range where tanh saturates).

    Reference: Zhou et al., "DoReFa-Net", arXiv:1606.06160; larq ``DoReFa`` (k_bit does not enter Q̂′).
    """

    m: float = param(1.0, half_open_interval(0.0, 1.0))
    title = "DoReFa weight transform"
    reference = "Zhou et al. 2016 (DoReFa-Net), arXiv:1606.06160; Larq DoReFa"
    kind = "multi-bit"
    units = "weight"
    cyclical = False

    def derivative(self, x: Any) -> Any:
        return sech2(x) / self.m

    def surrogate(self, x: Any) -> Any:
        return array_namespace(x).tanh(x) / self.m

    def weight_primitive(self, w: Any) -> Any:
        return self.m * (0.5 * w + 0.25 * array_namespace(w).sinh(2.0 * w))
