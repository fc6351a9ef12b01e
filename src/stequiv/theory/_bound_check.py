r"""Theorems 5.1, D.3 and 5.2 checked step by step on known gradient streams (float64).

For every catalogue estimator with an M and Appendix H constants, every update rule of
:mod:`._simulate`, several learning rates and 1-D and vector weights, the Q̂-net and its twin are
run side by side and :math:`E^{(t+1)}` is compared with the bound of :mod:`._bounds` at every step
where the theorem's assumptions held. A *violation* is :math:`E^{(t+1)} > \text{bound} + \tau`, with
τ the float64 evaluation error of E (:data:`TOLERANCE` relative to the weights' magnitude). The
*tightness* of a step is (bound − E⁽ᵗ⁾)/(E⁽ᵗ⁺¹⁾ − E⁽ᵗ⁾) where E grew: ≥ 1 where the bound holds,
1 where it is attained.

The DSQ case of Appendix H: the printed constant :math:`L'L_+/L_-^2 \le (1-a)/(2a-a^2)` put into
Eq. 6 in place of the exact one, on a stream whose gradient does not depend on the weights (so the
gradient-error term is zero and E grows by Taylor remainders alone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import NoRemapError, list_estimators
from ._bounds import adam_bound, momentum_bound, sgd_bound_exact, sgd_bound_printed
from ._setting import Setting, Stream, setting_for
from ._simulate import OPTIMIZERS, Record, simulate

__all__ = ["TOLERANCE", "bound_check", "check_estimator", "checkable_estimators", "dsq_appendix_h"]

TOLERANCE = 1e-11  # |E| is computed to ~1e-13 relative (M's tables); this leaves a wide margin
STEPS = 300
ETAS = (1e-3, 1e-2, 1e-1)  # bin units (Δ = 1) or weight units (binary, s = 1)

BoundFn = Callable[[Record, Setting], np.ndarray]
BOUNDS: dict[str, dict[str, BoundFn]] = {
    "sgd": {"eq6_printed": sgd_bound_printed, "eq6_exact": sgd_bound_exact},
    "momentum": {"d3_explicit": momentum_bound},
    "adam": {"thm52_explicit": adam_bound},
}


@dataclass(frozen=True)
class Tally:
    """Checks, violations and tightness of one bound over one set of runs."""

    checks: int
    violations: int
    worst_excess: float  # largest E(t+1) - bound (negative: the closest approach)
    tightness_min: float
    tightness_median: float

    @classmethod
    def of(cls, rec: Record, bound: np.ndarray) -> Tally:
        ok = rec.eligible
        after, before = rec.error[1:], rec.error[:-1]
        excess = after - bound
        tol = TOLERANCE * (1.0 + rec.scale)
        grew = ok & (after - before > tol)
        with np.errstate(over="ignore"):
            ratio = (bound - before)[grew] / (after - before)[grew]
        return cls(int(ok.sum()), int((ok & (excess > tol)).sum()),
                   float(excess[ok].max()) if ok.any() else float("nan"),
                   float(ratio.min()) if ratio.size else float("nan"),
                   float(np.median(ratio)) if ratio.size else float("nan"))


def checkable_estimators() -> list[str]:
    """Registered estimators with an M and Appendix H constants (Assumption 5.1.1 holds)."""
    names = []
    for name in list_estimators():
        try:
            setting_for(name)
        except (NoRemapError, ValueError):
            continue
        names.append(name)
    return names


def _runs(setting: Setting, n: int, seed: int, steps: int,
          etas: Iterable[float]) -> tuple[np.ndarray, Stream, np.ndarray]:
    """η (K, 1), the stream and the start weights for one estimator: two runs per η."""
    rng = np.random.default_rng(seed)
    eta = np.repeat(np.asarray(list(etas), dtype=np.float64), 2).reshape(-1, 1)
    binary = setting.est.kind == "binary"
    reach = 0.5 * min(setting.hi - setting.lo, 4.0) if binary else 4.0
    centre = 0.5 * (setting.lo + setting.hi) if binary else 0.0
    stream = Stream.make(rng, eta.shape[0], n, steps, curvature=0.5 if binary else 0.05,
                         sigma=1.0, target_range=0.0 if binary else 2.0)
    w0 = centre + rng.uniform(-reach, reach, (eta.shape[0], n))
    return eta, stream, w0


def check_estimator(name: str | dict, *, steps: int = STEPS, etas: Iterable[float] = ETAS,
                    dims: tuple[int, ...] = (1, 4), seed: int = 0) -> list[dict[str, Any]]:
    """One row per (optimizer, bound, dimension) for one estimator."""
    setting = setting_for(name)
    rows = []
    for n in dims:
        eta, stream, w0 = _runs(setting, n, seed, steps, etas)
        for opt in OPTIMIZERS:
            rec = simulate(setting, opt, eta, stream, w0)
            for bound_name, fn in BOUNDS[opt].items():
                tally = Tally.of(rec, fn(rec, setting))
                rows.append({"estimator": setting.est.describe(), "optimizer": opt,
                             "bound": bound_name, "dim": n, "alpha": setting.alpha,
                             "coefficient": float(setting.constants.coefficient), **vars(tally)})
    return rows


def dsq_appendix_h(shape: float = 0.25, *, steps: int = STEPS, etas: Iterable[float] = (0.05, 0.2),
                   seed: int = 0) -> dict[str, Any]:
    """DSQ(a) under SGD with Appendix H's printed L′L₊/L₋² and with the exact one (module doc)."""
    setting = setting_for({"name": "dsq", "alpha": shape})
    rng = np.random.default_rng(seed)
    eta = np.repeat(np.asarray(list(etas), dtype=np.float64), 4).reshape(-1, 1)
    stream = Stream.make(rng, eta.shape[0], 1, steps, curvature=0.0, sigma=1.0, target_range=0.0)
    rec = simulate(setting, "sgd", eta, stream, rng.uniform(-4.0, 4.0, (eta.shape[0], 1)))
    c = setting.constants
    printed = (1 - shape) / (2 * shape - shape**2)
    exact = float(c.L_prime) * float(c.L_plus) / float(c.L_minus) ** 2
    # Eq. 6's convexity term is ½ (L′L₊/L₋²) L₊ (η g)²: the printed ratio replaces L′L₊/L₋².
    grad_err = rec.eta * setting.alpha * np.abs(rec.g1 - rec.g2)
    with_printed = rec.error[:-1] + grad_err + 0.5 * printed * float(c.L_plus) * (rec.eta * rec.g1) ** 2
    return {"estimator": setting.est.describe(), "delta": 1.0,
            "printed_LpLplus_over_Lminus2": printed, "exact_LpLplus_over_Lminus2": exact,
            "with_printed_constant": vars(Tally.of(rec, with_printed)),
            "with_exact_constant": vars(Tally.of(rec, sgd_bound_printed(rec, setting)))}


def bound_check(estimators: Iterable[str] | None = None, *, steps: int = STEPS,
                etas: Iterable[float] = ETAS, seed: int = 0) -> dict[str, Any]:
    """The whole check: ``{"checks": N, "violations": V, ...}`` (JSON-ready).

    ``violations`` counts the theorems' bounds (Eq. 6 printed and exact, D.3 and 5.2 explicit);
    the DSQ case with Appendix H's printed constant is reported apart, as a documented finding.
    """
    started = time.perf_counter()
    names = list(estimators) if estimators is not None else checkable_estimators()
    rows = [row for name in names for row in check_estimator(name, steps=steps, etas=etas, seed=seed)]
    dsq = [dsq_appendix_h(a, steps=steps, seed=seed) for a in (0.25, 0.11)]
    return {"checks": sum(r["checks"] for r in rows),
            "violations": sum(r["violations"] for r in rows),
            "tightness_min": min((r["tightness_min"] for r in rows if r["tightness_min"] == r["tightness_min"]),
                                 default=float("nan")),
            "estimators": names, "steps": steps, "etas": list(etas), "tolerance": TOLERANCE,
            "rows": rows, "dsq_appendix_h": dsq, "seconds": time.perf_counter() - started}
