r"""How M continues outside the clip range ``[l, u]`` (bin units) or the support (weight units).

A tail maps the part of the line beyond one edge, given the edge and M there:

* :class:`Translate`: :math:`M(v) = M(e) + (v - e)`. An estimator that vanishes beyond the edge
  (``tail = "zero"``, Appendix G) freezes those weights in both nets, so any increasing
  continuation that keeps the outer bins works; the translation keeps their alignment error at 0.
* :class:`Integrated`: :math:`M(v) = M(e) + \alpha\int_e^v ds/\text{tail}(s)`, through the
  estimator's own tail primitive and its inverse (``tail = "custom"``, e.g. MAD).

An estimator whose formula extends beyond the range (``tail = "extend"``) has no tail object: its
periodic map applies everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ._estimator import Estimator
from ._primitives import NoRemapError

__all__ = ["Integrated", "Tail", "Translate", "tail_of"]

Arr = np.ndarray


class Tail(Protocol):
    """M beyond an edge ``e`` where M(e) = ``m_edge``, and its inverse."""

    translates: bool

    def forward(self, v: Arr, edge: float, m_edge: float) -> Arr: ...

    def inverse(self, y: Arr, edge: float, m_edge: float) -> Arr: ...


@dataclass(frozen=True)
class Translate:
    """:math:`M(v) = M(e) + (v - e)`."""

    translates = True

    def forward(self, v: Arr, edge: float, m_edge: float) -> Arr:
        return m_edge + (v - edge)

    def inverse(self, y: Arr, edge: float, m_edge: float) -> Arr:
        return edge + (y - m_edge)


@dataclass(frozen=True)
class Integrated:
    r""":math:`M(v) = M(e) + \alpha\,T(v; e)` with the estimator's tail primitive T and its inverse."""

    primitive: Any
    primitive_inverse: Any
    alpha: float
    grid: tuple[int, int, float]  # lower, upper, offset: what the tail formulas are written in
    translates = False

    def forward(self, v: Arr, edge: float, m_edge: float) -> Arr:
        return m_edge + self.alpha * self.primitive(v, edge, *self.grid)

    def inverse(self, y: Arr, edge: float, m_edge: float) -> Arr:
        return self.primitive_inverse((y - m_edge) / self.alpha, edge, *self.grid)


def tail_of(est: Estimator, alpha: float, lower: int, upper: int, offset: float) -> Tail | None:
    """The tail of a bin-unit estimator on the grid ``[lower, upper]`` (None: ``extend``)."""
    if est.tail == "extend":
        return None
    if est.tail == "zero":
        return Translate()
    prim, inv = est.tail_primitive, est.tail_primitive_inverse
    if prim is None or inv is None:
        raise NoRemapError(f"{est.describe()} has a custom tail without `tail_primitive` and "
                           "`tail_primitive_inverse`, so M is not defined beyond the range")
    return Integrated(prim, inv, alpha, (lower, upper, offset))
