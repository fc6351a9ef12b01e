"""The precision table of M and M⁻¹ (issue 10): max error in ulps, per bits × dtype × estimator.

For every catalogue estimator with an M (and HTGE t = 30), at bits 1–16 in float32 and 1–32 in
float64: 2000 random weights in and beyond the range, ±64 ulps around every boundary (up to 256
boundaries, first/central/last included) and around both clip edges, against the reference of
tests/precision_reference.py. Errors are in ulps of max(|exact|, Δ) of the weights' dtype.
Run: .venv/bin/python benchmarks/bench_precision.py [--write docs/precision.md]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from precision_reference import catalogue_with_m, sample, ulp_errors

BITS = {np.float32: range(1, 17), np.float64: range(1, 33)}
BEGIN, END = "<!-- precision:begin -->", "<!-- precision:end -->"


def _cell(value: float) -> str:
    return f"{value:.3g}" if value < 1e4 else f"{value:.1e}"


def table(dtype: type) -> str:
    """Markdown: one row per bit width, one column per estimator, cells 'M / M⁻¹' (max ulps)."""
    ests = catalogue_with_m()
    head = "| bits | " + " | ".join(e.describe() for e in ests) + " |"
    rows = [head, "|" + "---|" * (len(ests) + 1)]
    for bits in BITS[dtype]:
        rng = np.random.default_rng(bits)
        w = sample(bits, dtype, rng, n_random=2000, n_boundaries=256)
        cells = []
        for est in ests:
            fwd = ulp_errors(est, bits, w, inverse=False)[0].max()
            inv = ulp_errors(est, bits, w, inverse=True)[0].max()
            cells.append(f"{_cell(fwd)} / {_cell(inv)}")
        rows.append(f"| {bits} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    start = time.perf_counter()
    text = "\n\n".join(f"**{np.dtype(dt).name}** (M / M⁻¹, max ulps)\n\n{table(dt)}" for dt in BITS)
    text += f"\n\n({time.perf_counter() - start:.0f} s)"
    if "--write" in sys.argv:
        path = Path(sys.argv[sys.argv.index("--write") + 1])
        doc = path.read_text(encoding="utf-8")
        head, rest = doc.split(BEGIN)
        path.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END)[1]}", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
