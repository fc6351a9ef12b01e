"""The straight-through estimator and the piecewise-linear (clipped) STE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._estimator import param, register_estimator
from .._validate import finite_float, optional
from ._common import IdentityShape


@register_estimator("ste")
@dataclass(frozen=True)
class STE(IdentityShape):
    r"""Straight-through estimator: :math:`\hat Q(x) = x`, :math:`\hat Q'(x) = 1` everywhere.

    ∫ over a bin of 1/Q̂′ is Δ, so α = 1 and M is the identity.

    References: Hinton (2012), Coursera lecture 15b; Bengio, Léonard & Courville (2013),
    arXiv:1308.3432.
    """

    title = "STE"
    reference = "Hinton 2012; Bengio et al. 2013, arXiv:1308.3432"
    kind = "both"


@register_estimator("pwl")
@dataclass(frozen=True)
class PWL(IdentityShape):
    r"""Piecewise-linear estimator :math:`\mathrm{PWL}_{lo,hi}(x) = \operatorname{clip}(x, lo, hi)`.

    :math:`\hat Q'(x) = \mathbf 1_{[lo, hi]}(x)`: the STE inside the range, zero outside. With
    ``lo = hi = None`` the range is the quantizer's clip range ``[l, u]`` (Eq. 1 with the round step
    removed; on :class:`~stequiv.BinaryQuantizer` this is Larq's ``ste_sign`` with
    ``clip_value = scale``). Explicit ``lo``/``hi`` are in the grid coordinate; they are what
    Appendix G's twin of a vanishing estimator uses (``[M(w_min), M(w_max)]``).

    References: Hubara et al. (2016), arXiv:1602.02830; Rastegari et al. (2016), XNOR-Net.
    """

    lo: float | None = param(None, optional(finite_float))
    hi: float | None = param(None, optional(finite_float))
    title = "PWL / clipped STE"
    reference = "Hubara et al. 2016, arXiv:1602.02830; Rastegari et al. 2016"
    kind = "both"
    tail = "zero"
    positive = True  # inside its range
    lipschitz = False

    def check_params(self) -> None:
        if (self.lo is None) != (self.hi is None):
            raise ValueError("give both `lo` and `hi` of the PWL range, or neither")
        if self.lo is not None and self.hi is not None and not self.lo < self.hi:
            raise ValueError(f"PWL range needs lo < hi, got lo={self.lo}, hi={self.hi}")

    def gradient(self, v: Any, lower: float, upper: float, offset: float) -> Any:
        lo = lower if self.lo is None else self.lo
        hi = upper if self.hi is None else self.hi
        return super().gradient(v, lo, hi, offset)
