"""Every speed target of issues 2, 3, 4 and 11 (per-group Δ, the lm model's to_ste) in one Markdown table, also written to RESULTS.md.

Run: make bench   (or .venv/bin/python benchmarks/run_all.py)
The machine may be shared: the table's header records the load average before and after, and
each ratio is timed against its reference in alternation (see ``_bench.py``).
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np
import torch

import bench_beyond
import bench_core
import bench_groups
import bench_lm
import bench_pair
import bench_torch
from _bench import markdown
from stequiv.core.internal import compiled_kernels

RESULTS = Path(__file__).with_name("RESULTS.md")


def _machine() -> str:
    if compiled_kernels() is not None:
        import numba
        loops = f"numba {numba.__version__}"
    else:
        loops = "NumPy fallback (numba missing)"
    return (f"{platform.machine()}, {os.cpu_count()} cores · Python {platform.python_version()} · "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads) · "
            f"NumPy {np.__version__} · M/M⁻¹ loops: {loops}")


def main() -> None:
    load_before = os.getloadavg()
    core = bench_core.run()
    rows, notes = bench_torch.run()
    pair = bench_pair.run()
    groups = bench_groups.run()
    lm = bench_lm.run()
    beyond = bench_beyond.run()
    load_after = os.getloadavg()
    header = [
        "# Benchmark results",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {_machine()}",
        f"Load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/"
        f"{load_after[2]:.2f}: on a shared machine, compare ratios, not absolute times.",
        "",
    ]
    text = "\n".join([*header, markdown(core + rows + pair + groups + lm + beyond), *(f"\n{n}" for n in notes), ""])
    RESULTS.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
