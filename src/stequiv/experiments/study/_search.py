r"""The study's adaptive η search: bisect each series' ladder for its breakdown η\*.

A *series* is the cells of one (model, dataset, estimator, bits, optimizer), one per η of its
``lrs`` ladder η₀ < η₁ < … < η_{n−1}. Point A holds at η when Ē_twin ≤ Ē_tweak (NaN: fails), and
the report's η\* is the smallest η of the series where it fails.

The dense grid trains all n cells. If Point A breaks once — holds on η₀ … η_{k−1}, fails on
η_k … η_{n−1}, which is what the theory predicts (the twin's Ē grows like η², the tweak's like η)
— then η\* = η_k is found from ⌈log₂(n − 1)⌉ + 2 cells:

1. train η₀ and η_{n−1}. If η_{n−1} holds, η\* > η_{n−1} (censored); if η₀ fails, η\* = η₀; both
   answers need no other cell.
2. otherwise keep a bracket (lo, hi): lo the largest trained index that holds with no failing
   trained index below it, hi the smallest failing trained index above lo; train the middle
   index ⌊(lo + hi)/2⌋ until hi = lo + 1. Then η\* = η_hi.

The cells left out are *implied* (below lo: holds, above hi: fails) under that assumption; the
report counts them and says so. A series whose trained cells contradict it (a failing η below a
holding one) is flagged by the report's ``held_below_eta_star`` as in a dense run.
The slope of Ē against η is then fitted on the trained cells (at least η₀ and the bracket's ends).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._study_config import Cell

__all__ = ["SEARCHES", "Bracket", "bracket", "cells_to_train", "implied_cells", "most_cells",
           "series_of"]

SEARCHES = ("grid", "bisect")

SeriesKey = tuple[str, str, str, int, str]


def most_cells(n: int) -> int:
    """The most cells the search trains on a ladder of ``n`` η when Point A breaks once:
    the two ends, then ⌈log₂(n − 1)⌉ halvings of the bracket (n itself when n ≤ 2)."""
    return n if n <= 2 else math.ceil(math.log2(n - 1)) + 2


def series_of(cells: Sequence[Cell]) -> dict[SeriesKey, list[Cell]]:
    """The cells grouped by series (model, dataset, estimator label, bits, optimizer), each
    series sorted by η; in the grid's order of first appearance."""
    out: dict[SeriesKey, list[Cell]] = {}
    for cell in cells:
        key = (cell.model, cell.dataset, cell.label, cell.bits, cell.optimizer)
        out.setdefault(key, []).append(cell)
    return {k: sorted(v, key=lambda c: c.lr) for k, v in out.items()}


@dataclass(frozen=True)
class Bracket:
    """Where a series' search stands: ``next`` the ladder indices to train now (empty when
    resolved), ``lo``/``hi`` the bracket (−1 / n when no trained cell holds / fails), and
    ``implied`` the indices whose answer is implied, not trained."""

    next: tuple[int, ...]
    lo: int
    hi: int
    implied: tuple[int, ...]

    @property
    def resolved(self) -> bool:
        return not self.next


def bracket(n: int, holds: Mapping[int, bool]) -> Bracket:
    """The search state of a series of ``n`` η given ``holds`` (trained index → Point A holds).

    Raises:
        ValueError: ``n`` < 1, or an index of ``holds`` outside 0 … n − 1.
    """
    if n < 1:
        raise ValueError(f"a series needs at least one η, got n={n}")
    bad = sorted(k for k in holds if not 0 <= k < n)
    if bad:
        raise ValueError(f"trained indices {bad} are outside the ladder 0…{n - 1}")
    ends = tuple(k for k in dict.fromkeys((0, n - 1)) if k not in holds)
    if ends:
        return Bracket(ends, -1, n, ())
    failing = sorted(k for k, ok in holds.items() if not ok)
    hi = failing[0] if failing else n
    lo = max((k for k, ok in holds.items() if ok and k < hi), default=-1)
    if hi - lo > 1 and lo >= 0 and hi < n:
        return Bracket(((lo + hi) // 2,), lo, hi, ())
    implied = tuple(k for k in range(n) if k not in holds)
    return Bracket((), lo, hi, implied)


def cells_to_train(cells: Sequence[Cell], result: Callable[[Cell], Mapping[str, Any] | None],
                   holds: Callable[[Mapping[str, Any]], bool]) -> list[Cell]:
    """The cells the search trains next, over every series of ``cells`` (empty: all resolved).

    ``result(cell)`` is a trained cell's row (None if not trained); ``holds(row)`` whether Point
    A holds there. Cells trained outside the search (e.g. by a dense run into the same folder)
    count as trained."""
    out: list[Cell] = []
    for series in series_of(cells).values():
        rows = {k: result(c) for k, c in enumerate(series)}
        state = bracket(len(series), {k: holds(r) for k, r in rows.items() if r is not None})
        out += [series[k] for k in state.next]
    return out


def implied_cells(cells: Sequence[Cell], result: Callable[[Cell], Mapping[str, Any] | None],
                  holds: Callable[[Mapping[str, Any]], bool]) -> list[tuple[Cell, bool]]:
    """The cells of resolved series that were left out, each with its implied answer (Point A
    holds below the bracket, fails above it)."""
    out: list[tuple[Cell, bool]] = []
    for series in series_of(cells).values():
        rows = {k: result(c) for k, c in enumerate(series)}
        state = bracket(len(series), {k: holds(r) for k, r in rows.items() if r is not None})
        out += [(series[k], k < state.hi) for k in state.implied]
    return out
