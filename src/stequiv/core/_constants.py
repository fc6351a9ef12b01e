r"""The constants of Theorem 5.1 (Appendix H): :math:`L_-`, :math:`L_+`, :math:`L'` and the coefficient.

Over one bin, :math:`0 < L_- \le \hat Q'(w) \le L_+` and :math:`\hat Q'` is :math:`L'`-Lipschitz; the
convexity error of Eq. 6 is :math:`\tfrac{L'}{2}(\eta L_+ \nabla f / L_-)^2`, whose coefficient
:math:`L' L_+ / (2 L_-^2)` is reported. :math:`L_\pm` are dimensionless (STE units);
:math:`L' = \sup|\hat Q''(w)| = \sup|h'(v)|/\Delta` carries the unit 1/weight, so it depends on Δ.

For :math:`\hat Q'(w) = A\,\mathrm{sech}^2(k\,e)` with e the offset from the decision boundary (HTGE,
DSQ), Appendix H's closed form is used: :math:`L_+ = A`, :math:`L_- = A\,\mathrm{sech}^2(k/2)`,
:math:`L' = 2Ak\,\tanh(k e^*)\,\mathrm{sech}^2(k e^*)/\Delta` with
:math:`e^* = \min(1/2,\ \ln(2+\sqrt3)/(2k))`. Other estimators are handled numerically: extrema
of h over a fine grid of the bin refined by bounded scalar minimisation, and the Lipschitz constant
as the largest difference quotient of h between neighbouring grid points (exact for piecewise-linear
h, and within the grid's resolution, 1e-6 relative, for smooth h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ._estimator import Estimator, get_estimator
from ._plan import EstimatorLike
from ._quantizer import UniformQuantizer

__all__ = ["TheoremConstants", "constants"]

_GRID = 1 << 16


@dataclass(frozen=True)
class TheoremConstants:
    """L₋, L₊, L′ of Theorem 5.1 and the coefficient L′L₊/(2L₋²) (arrays if Δ is per channel)."""

    L_minus: float | np.ndarray
    L_plus: float | np.ndarray
    L_prime: float | np.ndarray
    coefficient: float | np.ndarray

    def as_dict(self) -> dict[str, float | list[float]]:
        """Plain floats (or lists, per channel) for JSON and tables."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else float(v))
                for k, v in self.__dict__.items()}


def _sech2_constants(amplitude: float, k: float) -> tuple[float, float, float]:
    """(L₋, L₊, sup|h′|) for h(e) = A sech²(k e) on e ∈ [-1/2, 1/2] (bin units)."""
    e_star = min(0.5, math.log(2.0 + math.sqrt(3.0)) / (2.0 * k))
    lip = 2.0 * amplitude * k * math.tanh(k * e_star) / math.cosh(k * e_star) ** 2
    return amplitude / math.cosh(k / 2.0) ** 2, amplitude, lip


def _numeric_constants(est: Estimator, lo: float, hi: float) -> tuple[float, float, float]:
    """(min h, max h, largest difference quotient of h) over [lo, hi]."""
    xs = np.unique(np.concatenate([np.linspace(lo, hi, _GRID + 1),
                                   [k for k in est.kinks if lo < k < hi]]))
    hs = np.asarray(est.derivative(xs), dtype=np.float64)

    def refine(sign: float) -> float:
        i = int(np.argmin(sign * hs))
        a, b = xs[max(i - 1, 0)], xs[min(i + 1, xs.size - 1)]
        res = optimize.minimize_scalar(lambda x: sign * float(est.derivative(np.array([x]))[0]),
                                       bounds=(a, b), method="bounded",
                                       options={"xatol": 1e-13})
        return min(sign * float(res.fun), sign * float(hs[i])) * sign

    lip = float(np.max(np.abs(np.diff(hs)) / np.diff(xs)))
    return refine(1.0), refine(-1.0), lip


def _extrema(est: Estimator) -> tuple[float, float, float]:
    """(L₋, L₊, sup|h′|) over one bin (bin units) or the support capped at ±8 (weight units)."""
    shape = est.sech2_shape
    if shape is not None:
        return _sech2_constants(*shape)
    if est.units == "bin":
        return _numeric_constants(est, 0.5, 1.5)
    lo, hi = (max(float(est.support[0]), -8.0), min(float(est.support[1]), 8.0))
    return _numeric_constants(est, lo, hi)


def constants(estimator: EstimatorLike, quantizer: UniformQuantizer) -> TheoremConstants:
    """L₋, L₊, L′ and L′L₊/(2L₋²) of ``estimator`` over one bin of ``quantizer`` (Appendix H)."""
    est = get_estimator(estimator)
    try:
        with np.errstate(all="ignore"):  # non-finite results are refused below
            l_minus, l_plus, lip = _extrema(est)
    except OverflowError:
        l_minus = l_plus = lip = math.inf
    if l_minus <= 0:
        raise ValueError(
            f"{est.describe()} has L- = {l_minus:.3g} <= 0 over a bin: Theorem 5.1's assumption "
            "5.1.1 fails and its constants are not defined (see Appendix G)"
        )
    # Q̂″(w) = h′(v)/Δ in weight units; weight-unit (binary) estimators are already in weight units.
    scale = quantizer.delta_array if est.units == "bin" else np.float64(1.0)
    with np.errstate(all="ignore"):
        l_prime = lip / scale
        coeff = l_prime * l_plus / (2.0 * l_minus**2)
    values = np.concatenate([np.ravel(x) for x in (l_minus, l_plus, l_prime, coeff)])
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"the Theorem 5.1 constants of {est.describe()} are not finite in float64 "
            f"(L- = {l_minus:.3g}, L+ = {l_plus:.3g}): {est.out_of_range()}")
    unwrap = (lambda x: x) if quantizer.per_channel else float
    return TheoremConstants(float(l_minus), float(l_plus), unwrap(l_prime), unwrap(coeff))
