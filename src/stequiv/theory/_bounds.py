r"""The per-step bounds of Theorems 5.1, D.3 and 5.2 with every term explicit.

For a record of :mod:`._simulate` each function returns the bound on :math:`E^{(t+1)}` at every step
(shape (T, K, n)); notation: :math:`g_1 = \nabla f_{\hat Q}^{(t)}`, :math:`g_2 = \nabla f_{STE}^{(t)}`,
:math:`h = \hat Q'`, constants :math:`L_\pm, L'` of Appendix H.

**SGD, Eq. 6 as printed** (Theorem 5.1):
:math:`E + \eta\alpha|g_1 - g_2| + \tfrac{L'}2(\eta L_+ g_1/L_-)^2`.

**SGD, exact constant**: the Taylor remainder of M over one step is at most
:math:`\tfrac12\sup|M''|\,u^2` with :math:`u = \eta g_1 h(w)` and :math:`M'' = -\alpha h'/h^2`, so
:math:`|M''| \le \alpha L'/L_-^2`: the proof's Lipschitz constant of M′ (Appendix C writes
:math:`M' = 1/\hat Q'` and drops α; Eq. 13 has it) gives
:math:`E + \eta\alpha|g_1 - g_2| + \tfrac{\alpha L'}{2L_-^2}(\eta\,h(w)\,g_1)^2`.
The printed form is the larger of the two whenever α ≤ 1.

**Momentum, Theorem D.3 made explicit**: Theorem C.1 with the remainder above, and its
:math:`O(c(\eta))` term bounded by Theorem D.2's own argument (log h is L′/L₋-Lipschitz, each step
is at most :math:`\eta g_+` with :math:`g_+ = L_+ \max_t|g_1|` by Theorem D.1):

.. math:: E + \alpha\eta\Big|(1-\beta)\sum_i\beta^{t-i}(g_1^{(i)} - g_2^{(i)})\Big|
          + \tfrac{\alpha L'}2\Big(\tfrac{\eta g_+}{L_-}\Big)^2
          + \alpha\eta(1-\beta)\sum_i\beta^{t-i}|g_1^{(i)}|\big(e^{c(t-i)} - 1\big),
          \quad c = \eta L' g_+/L_-.

(Eq. 51 prints :math:`\nabla f_{STE}^{(t)}` inside the sum, a typo for :math:`^{(i)}`; its convexity
term lacks α like Eq. 6; its :math:`O(\eta^2)` is the last term here.)

**Adam, Theorem 5.2 made explicit** (ε = 0): Theorem E.1 with :math:`G(x)` the Adam step on the
sequence x, so :math:`E + |G(g_1) - G(g_2)| + |G(g_1 h) - G(g_1)|`, and the last term bounded
through :math:`r_i = h(w_i)/h(w_t) \in [e^{-c(t-i)}, e^{c(t-i)}]` (Adam's step is scale-free):
with :math:`m = \sum a_i g_1^{(i)}`, :math:`v = \sum b_i (g_1^{(i)})^2`,
:math:`D_m = \sum a_i|g_1^{(i)}|(e^{c(t-i)} - 1)` and :math:`v_\mp = \sum b_i (g_1^{(i)})^2 e^{\mp 2c(t-i)}`,

.. math:: |G(g_1 h) - G(g_1)| \le \eta\,\kappa_t\Big(\frac{D_m}{\sqrt{v_-}} + |m|\max\big(
          v_-^{-1/2} - v^{-1/2},\ v^{-1/2} - v_+^{-1/2}\big)\Big),
          \quad \kappa_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t},

and :math:`g_+ = \max_t \kappa_t\,\tfrac{1-\beta_1}{\sqrt{1-\beta_2}}\sqrt{\sum_{\tau<t}(\beta_1^2/\beta_2)^\tau}`
by Cauchy–Schwarz (every Adam step is at most :math:`\eta g_+`).
"""

from __future__ import annotations

import numpy as np

from ._setting import Setting
from ._simulate import BETA, BETAS, Record

__all__ = ["adam_bound", "momentum_bound", "sgd_bound_exact", "sgd_bound_printed"]


def _consts(setting: Setting) -> tuple[float, float, float]:
    c = setting.constants
    return float(c.L_minus), float(c.L_plus), float(c.L_prime)


def sgd_bound_printed(rec: Record, setting: Setting) -> np.ndarray:
    """Eq. 6 exactly as printed."""
    l_minus, l_plus, l_prime = _consts(setting)
    grad_err = rec.eta * setting.alpha * np.abs(rec.g1 - rec.g2)
    return rec.error[:-1] + grad_err + 0.5 * l_prime * (rec.eta * l_plus * rec.g1 / l_minus) ** 2


def sgd_bound_exact(rec: Record, setting: Setting) -> np.ndarray:
    """Eq. 6 with the remainder's exact constant α L′/(2L₋²) and the actual step h(w)·g₁."""
    l_minus, _, l_prime = _consts(setting)
    grad_err = rec.eta * setting.alpha * np.abs(rec.g1 - rec.g2)
    remainder = setting.alpha * l_prime / (2 * l_minus**2) * (rec.eta * rec.slope1 * rec.g1) ** 2
    return rec.error[:-1] + grad_err + remainder


def _ema(x: np.ndarray, decay: np.ndarray | float, weight: float) -> np.ndarray:
    """y_t = decay·y_{t-1} + weight·x_t along axis 0 (y_{-1} = 0); may overflow to inf when
    decay > 1 (a vacuous bound, which holds)."""
    out = np.empty_like(x)
    acc = np.zeros_like(x[0])
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(x.shape[0]):
            acc = decay * acc + weight * x[t]
            out[t] = acc
    return out


def _vacuous_as_inf(bound: np.ndarray) -> np.ndarray:
    """inf − inf (a vacuous bound's parts) is NaN: the bound is +inf."""
    return np.where(np.isnan(bound), np.inf, bound)


def momentum_bound(rec: Record, setting: Setting) -> np.ndarray:
    """Theorem D.3 with its O(η²) written out (module docstring)."""
    l_minus, l_plus, l_prime = _consts(setting)
    a, eta = setting.alpha, rec.eta
    g_plus = l_plus * np.max(np.abs(rec.g1), axis=(0, 2), keepdims=True)[0]  # per run (K, 1)
    c = eta * l_prime * g_plus / l_minus
    grad_err = a * eta * np.abs(_ema(rec.g1 - rec.g2, BETA, 1 - BETA))
    with np.errstate(over="ignore", invalid="ignore"):
        drift = _ema(np.abs(rec.g1), BETA * np.exp(c), 1 - BETA) - _ema(np.abs(rec.g1), BETA, 1 - BETA)
        bound = rec.error[:-1] + grad_err + a * 0.5 * l_prime * (eta * g_plus / l_minus) ** 2 + a * eta * drift
    return _vacuous_as_inf(bound)


def adam_step_bound(steps: int) -> float:
    """g₊: the largest |m̂/√v̂| Adam (ε = 0) can take in ``steps`` steps (Cauchy–Schwarz)."""
    b1, b2 = BETAS
    t = np.arange(1, steps + 1)
    kappa = np.sqrt(1 - b2**t) / (1 - b1**t)
    series = np.cumsum((b1 * b1 / b2) ** (t - 1))
    return float(np.max(kappa * (1 - b1) / np.sqrt(1 - b2) * np.sqrt(series)))


def _adam_steps(x: np.ndarray) -> np.ndarray:
    """Adam's m̂/√v̂ (ε = 0) on the sequence x along axis 0."""
    b1, b2 = BETAS
    t = np.arange(1, x.shape[0] + 1).reshape(-1, *([1] * (x.ndim - 1)))
    m, v = _ema(x, b1, 1 - b1), _ema(x * x, b2, 1 - b2)
    root = np.sqrt(v / (1 - b2**t))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(root > 0, m / (1 - b1**t) / np.where(root > 0, root, 1.0), 0.0)


def adam_bound(rec: Record, setting: Setting) -> np.ndarray:
    """Theorem 5.2 with its O(η²) written out (module docstring)."""
    l_minus, _, l_prime = _consts(setting)
    b1, b2 = BETAS
    eta, g1 = rec.eta, rec.g1
    c = eta * l_prime * adam_step_bound(g1.shape[0]) / l_minus  # (K, 1)
    grad_err = eta * np.abs(_adam_steps(g1) - _adam_steps(rec.g2))
    t = np.arange(1, g1.shape[0] + 1).reshape(-1, 1, 1)
    kappa = np.sqrt(1 - b2**t) / (1 - b1**t)
    m = _ema(g1, b1, 1 - b1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _vacuous_as_inf(rec.error[:-1] + grad_err + eta * kappa * _adam_drift(g1, m, c))


def _adam_drift(g1: np.ndarray, m: np.ndarray, c: np.ndarray) -> np.ndarray:
    """|m̃/√ṽ − m/√v| bounded through r_i ∈ [e^{-cτ}, e^{cτ}] (module docstring)."""
    b1, b2 = BETAS
    d_m = _ema(np.abs(g1), b1 * np.exp(c), 1 - b1) - _ema(np.abs(g1), b1, 1 - b1)
    v = _ema(g1 * g1, b2, 1 - b2)
    v_lo = _ema(g1 * g1, b2 * np.exp(-2 * c), 1 - b2)
    v_hi = _ema(g1 * g1, b2 * np.exp(2 * c), 1 - b2)
    inv = 1 / np.sqrt(v)
    spread = np.maximum(1 / np.sqrt(v_lo) - inv, inv - 1 / np.sqrt(v_hi))
    return np.where(v > 0, d_m / np.sqrt(v_lo) + np.abs(m) * spread, 0.0)
