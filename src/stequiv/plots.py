"""Figure 1 of the paper: each estimator's surrogate Q̂ (top) and gradient Q̂′ (bottom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._optional import require
from .core import BinaryQuantizer, Estimator, UniformQuantizer, get_estimator, list_estimators

__all__ = ["plot_estimators"]


def _curves(est: Estimator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(w, Q(w), Q̂(w), Q̂′(w)); Q̂ is the integral of Q̂′ anchored to Q at the left edge."""
    from scipy.integrate import cumulative_trapezoid

    if est.kind == "binary":
        q: UniformQuantizer = BinaryQuantizer()
        w = np.linspace(-2.0, 2.0, 4001)
        grad = np.asarray(est.derivative(w), dtype=np.float64)
    else:
        q = UniformQuantizer.symmetric(2, 1.0)
        w = np.linspace(-1.6, 1.6, 4001)
        v = q.to_grid(w)
        grad = np.asarray(est.gradient(v, q.lower, q.upper, q.offset), dtype=np.float64)
    qw = q(w)
    # Q̂′ is in STE units (per grid step for multi-bit): dQ̂/dw in weight units is the same number.
    surrogate = qw[0] + cumulative_trapezoid(grad, w, initial=0.0)
    return w, qw, surrogate, grad


def plot_estimators(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Draw Figure 1 for ``names`` (default: every registered estimator); returns the PNG paths.

    Writes one combined ``figure1_estimators.png`` and one ``estimator_<name>.png`` per estimator.
    """
    matplotlib = require("matplotlib", "experiments", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = names or list_estimators()
    ests = [get_estimator(n) for n in names]
    cols = min(len(ests), 6)
    rows = -(-len(ests) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.6 * cols, 4.4 * rows), squeeze=False)
    paths = []
    for i, est in enumerate(ests):
        r, c = divmod(i, cols)
        w, qw, surrogate, grad = _curves(est)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        top.plot(w, qw, color="0.6", lw=1, label="Q")
        top.plot(w, surrogate, color="C0", lw=1.5, label="Q̂")
        bottom.plot(w, grad, color="C3", lw=1.5)
        top.set_title(est.describe(), fontsize=8)
        bottom.set_xlabel("latent weight w", fontsize=7)
        for ax in (top, bottom):
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.3)
        single, (a1, a2) = plt.subplots(2, 1, figsize=(3.2, 4.4), sharex=True)
        a1.plot(w, qw, color="0.6", lw=1, label="Q")
        a1.plot(w, surrogate, color="C0", lw=1.5, label="Q̂")
        a1.legend(fontsize=7)
        a1.set_title(est.describe(), fontsize=9)
        a2.plot(w, grad, color="C3", lw=1.5)
        a2.set_ylabel("Q̂′", fontsize=8)
        a2.set_xlabel("latent weight w", fontsize=8)
        path = out / f"estimator_{est.name}.png"
        single.tight_layout()
        single.savefig(path, dpi=110)
        plt.close(single)
        paths.append(path)
    for j in range(len(ests), rows * cols):
        r, c = divmod(j, cols)
        axes[2 * r, c].axis("off")
        axes[2 * r + 1, c].axis("off")
    axes[0, 0].set_ylabel("Q̂ (blue), Q (grey)", fontsize=7)
    axes[1, 0].set_ylabel("Q̂′", fontsize=7)
    fig.suptitle("Figure 1: gradient estimators on a 2-bit grid (multi-bit) and sign (binary)",
                 fontsize=9)
    fig.tight_layout()
    combined = out / "figure1_estimators.png"
    fig.savefig(combined, dpi=120)
    plt.close(fig)
    return [combined, *paths]
