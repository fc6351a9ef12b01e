"""Shared by the benchmark scripts: interleaved timing, result rows and the Markdown table.

The machine may be shared, so every comparison times the candidate and its reference in
alternation (the same load lands on both) and reports the median and the minimum of each; the
ratio is taken between medians, and the ratio of minima is shown beside it as a noise check.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


def environment(threads: str) -> str:
    """A result file's context line: the date (dropped by the docs), the commit (marked where the
    tracked files differ from it), the machine, the versions, ``threads``, and the load average
    at the end of the run."""
    import numpy
    import torch

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (+ uncommitted changes)"
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · commit {commit} · {platform.machine()}, "
            f"{os.cpu_count()} cores ({_cpu_model()}) · Python {platform.python_version()} · "
            f"torch {torch.__version__} · NumPy {numpy.__version__} · {threads} · "
            f"load average {os.getloadavg()[0]:.2f} at the end")


@dataclass(frozen=True)
class Row:
    """One benchmark line: the candidate's times, its reference's, and the target."""

    name: str
    median_s: float
    min_s: float
    reference: str = ""
    ref_median_s: float = float("nan")
    ref_min_s: float = float("nan")
    target: str = ""
    limit: float | None = None  # the largest acceptable ratio (or seconds, without a reference)

    @property
    def ratio(self) -> float:
        return self.median_s / self.ref_median_s

    @property
    def ratio_of_minima(self) -> float:
        return self.min_s / self.ref_min_s

    @property
    def met(self) -> str:
        if self.limit is None:
            return ""
        value = self.median_s if not self.reference else self.ratio
        return "yes" if value <= self.limit else "no"


def interleaved(fns: dict[str, Callable[[], object]], repeat: int,
                setup: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn ``repeat`` times (after one warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for k in range(repeat + 1):
        for name, fn in fns.items():
            if setup is not None:
                setup()
            start = time.perf_counter()
            fn()
            if k:
                times[name].append(time.perf_counter() - start)
    return times


def compare(name: str, times: list[float], reference: str, ref_times: list[float],
            target: str = "", limit: float | None = None) -> Row:
    """A row of candidate ``times`` against ``ref_times``."""
    return Row(name, statistics.median(times), min(times), reference,
               statistics.median(ref_times), min(ref_times), target, limit)


def single(name: str, times: list[float], target: str = "", limit: float | None = None) -> Row:
    """A row without a reference (``limit`` in seconds)."""
    return Row(name, statistics.median(times), min(times), target=target, limit=limit)


def _seconds(s: float) -> str:
    if s != s:  # NaN
        return ""
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.1f} s"


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| benchmark | median (min) | reference | reference median (min) | ratio (of minima) "
             "| target | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if not r.reference else f"{r.ratio:.2f}× ({r.ratio_of_minima:.2f}×)"
        ref = "" if not r.reference else f"{_seconds(r.ref_median_s)} ({_seconds(r.ref_min_s)})"
        lines.append(f"| {r.name} | {_seconds(r.median_s)} ({_seconds(r.min_s)}) | {r.reference} "
                     f"| {ref} | {ratio} | {r.target} | {r.met} |")
    return "\n".join(lines)
