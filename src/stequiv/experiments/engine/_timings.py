"""Wall-clock and CPU seconds of the phases of a run, for ``timings.json`` and the benchmarks.

CPU seconds are user + system time of this process and of its children that have finished
(``os.times``): a phase that runs worker processes and waits for them to exit (``train groups``)
counts their CPU time too. On a shared machine the CPU seconds are the steadier measure; the
wall-clock seconds grow with the load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["PhaseTimes", "cpu_seconds"]


def cpu_seconds() -> float:
    """User + system seconds of this process and of its finished (waited-for) children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class PhaseTimes:
    """Rows ``{"phase", "wall_s", "cpu_s"}`` in the order the phases ended."""

    rows: list[dict[str, float | str]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase ``name`` (recorded when the block ends, also on an error)."""
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.rows.append({"phase": name, "wall_s": time.perf_counter() - wall,
                              "cpu_s": cpu_seconds() - cpu})

    def extend(self, prefix: str, rows: list[dict[str, float | str]]) -> None:
        """Add another process's rows (e.g. a worker's), their names prefixed by ``prefix``."""
        self.rows.extend({**row, "phase": f"{prefix}: {row['phase']}"} for row in rows)
