r"""The Q̂-net and its STE twin on a known gradient stream, step by step, in float64.

Update rules, as the paper writes them (Eq. 3, Eq. 37–38 of Appendix D, Eq. 57–61 of Appendix E),
with :math:`x^{(t)} = \nabla f^{(t)}\hat Q'(w^{(t)})`:

* ``sgd``: :math:`w \leftarrow w - \eta x`; the twin uses αη (Table 1);
* ``momentum``: :math:`m \leftarrow \beta m + (1-\beta)x`, :math:`w \leftarrow w - \eta m`; twin αη;
* ``adam``: :math:`m \leftarrow \beta_1 m + (1-\beta_1)x`, :math:`v \leftarrow \beta_2 v + (1-\beta_2)x^2`,
  :math:`w \leftarrow w - \eta\,\frac{m/(1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)}}` with ε = 0 (Appendix E
  sets ε = 0 "for the sake of mathematical argument"); twin η, no M (Table 2).

The twin's estimator is :func:`stequiv.core.ste_twin`'s (STE, or Appendix G's PWL). The record keeps
E⁽ᵗ⁾ (Eq. 5: through M for SGD-like rules) and what the bounds need, plus an *eligibility* mask: a
step is checked only while every Q̂-net weight so far stayed in the constants' domain and the
twin's slope was 1 (the theorems' assumptions; outside them the theorems say nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._setting import Setting, Stream

__all__ = ["OPTIMIZERS", "Record", "simulate"]

OPTIMIZERS = ("sgd", "momentum", "adam")
BETA = 0.9
BETAS = (0.9, 0.999)


@dataclass(frozen=True)
class Record:
    """Per-step arrays of shape (T, K, n) (``error`` has T + 1 rows), and η of shape (K, 1)."""

    eta: np.ndarray
    error: np.ndarray  # E(t), t = 0..T
    g1: np.ndarray  # ∇f_Q̂(t)
    g2: np.ndarray  # ∇f_STE(t)
    slope1: np.ndarray  # Q̂'(w_Q̂(t))
    eligible: np.ndarray  # assumptions held for every step up to and including t
    scale: np.ndarray  # max(|M(w_Q̂)|, |w_STE|) before and after the step: for the tolerance


def _adam_step(m: np.ndarray, v: np.ndarray, x: np.ndarray, t: int) -> tuple[np.ndarray, ...]:
    """One Adam moment update with ε = 0; returns (m, v, m̂/√v̂), 0 where v = 0."""
    b1, b2 = BETAS
    m = b1 * m + (1 - b1) * x
    v = b2 * v + (1 - b2) * x * x
    root = np.sqrt(v / (1 - b2**t))
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(root > 0, (m / (1 - b1**t)) / np.where(root > 0, root, 1.0), 0.0)
    return m, v, step


def _measure(setting: Setting, optimizer: str, w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, scale): Eq. 5 through M for SGD-like rules, plain for Adam."""
    a = w1 if optimizer == "adam" else setting.remap(w1)
    return np.abs(a - w2), np.maximum(np.abs(a), np.abs(w2))


def simulate(setting: Setting, optimizer: str, eta: np.ndarray, stream: Stream,
             w0: np.ndarray) -> Record:
    """Run both nets for ``len(stream.noise)`` steps from Q̂-weights ``w0`` (K, n); η is (K, 1)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {optimizer!r}")
    twin = setting.twin("adam" if optimizer == "adam" else "sgd")
    lr2 = eta if optimizer == "adam" else setting.alpha * eta
    w1 = w0.astype(np.float64)
    w2 = w1.copy() if optimizer == "adam" else setting.remap(w1)
    m1, m2, v1, v2 = (np.zeros_like(w1) for _ in range(4))
    ok = setting.inside(w1)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("g1", "g2", "slope1", "eligible", "scale")}
    err, scale0 = _measure(setting, optimizer, w1, w2)
    errors = [err]
    q = setting.quantizer
    for t in range(stream.noise.shape[0]):
        g1, g2 = stream.grad(t, q(w1)), stream.grad(t, q(w2))
        s1, s2 = setting.slope(setting.est, w1), setting.slope(twin, w2)
        x1, x2 = g1 * s1, g2 * s2
        if optimizer == "sgd":
            d1, d2 = x1, x2
        elif optimizer == "momentum":
            m1, m2 = BETA * m1 + (1 - BETA) * x1, BETA * m2 + (1 - BETA) * x2
            d1, d2 = m1, m2
        else:
            m1, v1, d1 = _adam_step(m1, v1, x1, t + 1)
            m2, v2, d2 = _adam_step(m2, v2, x2, t + 1)
        w1, w2 = w1 - eta * d1, w2 - lr2 * d2
        ok = ok & (s2 == 1.0) & setting.inside(w1)
        err, scale1 = _measure(setting, optimizer, w1, w2)
        for key, val in (("g1", g1), ("g2", g2), ("slope1", s1), ("eligible", ok),
                         ("scale", np.maximum(scale0, scale1))):
            rows[key].append(val)
        errors.append(err)
        scale0 = scale1
    stacked = {k: np.stack(v) for k, v in rows.items()}
    return Record(eta=eta, error=np.stack(errors), **stacked)
