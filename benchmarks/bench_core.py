"""The core's speed (issue 2): M and M⁻¹ on ResNet-50's 25.6 M float32 weights, and numeric α.

Targets: M at most 5× one ``numpy.clip`` pass over the same array (timed in alternation with it);
α of an estimator without a closed form at most 10 ms, cold (plan caches cleared).
Run: .venv/bin/python benchmarks/bench_core.py   (``make bench`` runs every benchmark)
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace

import stequiv as sq
from _bench import Row, compare, interleaved, markdown, single
from stequiv.core.internal import clear_caches

N = 25_600_000  # ResNet-50's parameter count
REPEAT = 7
QUANTIZER = sq.UniformQuantizer.symmetric(2, 1.0)
# closed forms (STE: M = id; HTGE, DSQ: P(d) in closed form) and the numeric path (QN: quadrature)
ESTIMATORS = {"ste": "closed form", "htge": "closed form", "dsq": "closed form", "qn": "numeric"}


def _bumpy(x):
    """A user's Q̂′ with no closed form: 1 + ½cos(2πx), positive, 1-periodic."""
    return 1.0 + 0.5 * array_namespace(x).cos(2 * math.pi * x)


def _maps(w: np.ndarray) -> list[Row]:
    rows = []
    for name, kind in ESTIMATORS.items():
        sq.unremap(name, QUANTIZER, sq.remap(name, QUANTIZER, w[:1000]))  # plans, tables, JIT
        times = interleaved({
            "clip": lambda: np.clip(w, -0.5, 0.5),
            "M": lambda name=name: sq.remap(name, QUANTIZER, w),
            "M⁻¹": lambda name=name: sq.unremap(name, QUANTIZER, w),
        }, REPEAT)
        for verb in ("M", "M⁻¹"):
            limit = 5.0 if verb == "M" else None
            rows.append(compare(f"{verb} {name} ({kind}), 25.6 M float32", times[verb],
                                "np.clip, same array", times["clip"],
                                "≤ 5×" if limit else "", limit))
    return rows


def _numeric_alpha() -> list[Row]:
    rows = []
    custom = sq.custom_estimator("bench-bumpy", _bumpy, register=False)
    for label, est in (("qn (registered)", sq.get_estimator("qn")),
                       ("1 + ½cos 2πx (custom_estimator)", custom)):
        def cold(est=est) -> None:
            clear_caches()

        times = interleaved({"alpha": lambda est=est: sq.alpha(est, QUANTIZER)}, REPEAT, setup=cold)
        rows.append(single(f"numeric α cold, {label}", times["alpha"], "≤ 10 ms", 0.010))
    return rows


def run() -> list[Row]:
    w = np.random.default_rng(0).uniform(-1.0, 1.0, N).astype(np.float32)
    return _maps(w) + _numeric_alpha()


def main() -> None:
    print(markdown(run()))


if __name__ == "__main__":
    main()
