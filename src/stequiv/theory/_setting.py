r"""The synthetic setting of the exact bound check: one estimator on one grid, a known loss.

Both nets of a pair see the *same* loss at every step, through their own quantized weights:

.. math:: \nabla f^{(t)}(q) = A\,(q - c) + b_t, \qquad A = a\,(0.7\,I + 0.3\,J/n),

with :math:`b_t` uniform in :math:`[-\sigma, \sigma]^n` (seeded), J the all-ones matrix (it couples the
n weights, so a weight's gradient depends on the others' quantized values: the "small vector"
case) and c a target inside the domain. The gradient is bounded on the domain and a-Lipschitz in q.
One dimension is n = 1. Everything is float64 NumPy; no framework.

The *domain* is where the Appendix H constants of :func:`stequiv.core.constants` hold
(:math:`L_- \le \hat Q' \le L_+`, :math:`\hat Q'` L′-Lipschitz): the representable range in grid
units for multi-bit estimators (their constants are those of one bin, repeated), and
:math:`[-8, 8]` ∩ support for binary ones (the interval the core evaluates them on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import (
    BinaryQuantizer,
    Estimator,
    NoRemapError,
    TheoremConstants,
    UniformQuantizer,
    constants,
    get_estimator,
    ste_twin,
)
from ..core import alpha as alpha_of
from ..core import remap as remap_of

__all__ = ["Setting", "Stream", "setting_for"]

_BINARY_REACH = 8.0  # the interval [-8, 8] on which core.constants evaluates binary estimators


@dataclass(frozen=True, eq=False)
class Setting:
    """One estimator on one quantizer: its twin, α, the Appendix H constants, and its domain."""

    est: Estimator
    quantizer: UniformQuantizer
    constants: TheoremConstants
    alpha: float
    lo: float
    hi: float

    def slope(self, est: Estimator, w: np.ndarray) -> np.ndarray:
        """:math:`\\hat Q'(w)` of ``est`` on this grid (grid coordinate for bin units)."""
        q = self.quantizer
        x = w if est.units == "weight" else w / float(q.delta_array) - q.offset
        return np.asarray(est.gradient(x, q.lower, q.upper, q.offset), dtype=np.float64)

    def twin(self, optimizer: str) -> Estimator:
        """The STE-net's estimator (STE, or Appendix G's PWL) for ``"sgd"`` or ``"adam"``."""
        return ste_twin(self.est, self.quantizer, optimizer)  # type: ignore[arg-type]

    def remap(self, w: np.ndarray) -> np.ndarray:
        """M(w) of Eq. 4 (float64)."""
        return remap_of(self.est, self.quantizer, w)

    def inside(self, w: np.ndarray) -> np.ndarray:
        """Whether each weight lies in the domain of the constants."""
        return (w >= self.lo) & (w <= self.hi)


def setting_for(estimator: str | dict | Estimator) -> Setting:
    """The grid for ``estimator``: 8 bits, Δ = 1, offset ½ (multi-bit), or sign (binary).

    Raises :class:`~stequiv.core.NoRemapError` (or ``ValueError``) when the estimator has no M or
    no Appendix H constants (Assumption 5.1.1 fails).
    """
    est = get_estimator(estimator)
    if est.kind == "binary":
        q: UniformQuantizer = BinaryQuantizer(1.0)
        lo = max(float(est.support[0]), -_BINARY_REACH)
        hi = min(float(est.support[1]), _BINARY_REACH)
    else:
        q = UniformQuantizer(bits=8, delta=1.0, offset=0.5)
        lo, hi = float(q.lower + q.offset), float(q.upper + q.offset)
    consts = constants(est, q)
    if not np.all(np.asarray(consts.L_minus) > 0):
        raise NoRemapError(f"{est.describe()} has L- <= 0")
    return Setting(est, q, consts, float(alpha_of(est, q)), lo, hi)


@dataclass(frozen=True, eq=False)
class Stream:
    r"""The known gradient stream :math:`\nabla f^{(t)}(q) = A(q - c) + b_t` (module docstring).

    Arrays have shape (K, n): K independent runs (learning rates, seeds) of n coupled weights.
    """

    matrix: np.ndarray  # (n, n)
    target: np.ndarray  # (K, n)
    noise: np.ndarray  # (T, K, n)

    @classmethod
    def make(cls, rng: np.random.Generator, runs: int, n: int, steps: int, *, curvature: float,
             sigma: float, target_range: float) -> Stream:
        """A seeded stream: curvature a, noise half-width σ, targets uniform in ±target_range."""
        matrix = curvature * (0.7 * np.eye(n) + 0.3 * np.ones((n, n)) / n)
        target = rng.uniform(-target_range, target_range, (runs, n))
        return cls(matrix, target, rng.uniform(-sigma, sigma, (steps, runs, n)))

    def grad(self, t: int, q: np.ndarray) -> np.ndarray:
        """:math:`\\nabla f^{(t)}` at the quantized weights q (K, n)."""
        return (q - self.target) @ self.matrix.T + self.noise[t]
