"""Magnitude-aware differentiation (Sakr et al. 2022): the STE inside the range, c/|w| outside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._estimator import register_estimator
from ._common import IdentityShape


def _edge(edge: float, offset: float, side: str) -> float:
    """The clipping scalar c of one side, ``(edge + z)`` (the representable edge, grid units)."""
    c = float(edge) + float(offset)
    if (side == "upper" and c <= 0) or (side == "lower" and c >= 0):
        raise ValueError(
            f"MAD needs the representable range to contain 0 (its tail is c/|w| with c the edge "
            f"on each side), but the {side} edge sits at {c:g}Δ; use a zero-centred grid"
        )
    return c


@register_estimator("mad")
@dataclass(frozen=True)
class MAD(IdentityShape):
    r"""Magnitude-aware differentiation (Sakr et al. 2022), for Eq. 1's clipped quantizer.

    Inside the representable range :math:`[-c, c]` it is the STE; outside, the clip is read as the
    attenuation :math:`x\min(1, c/|x|)` with the factor held constant, so

    .. math:: \hat Q'(w) = \min(1, c/|w|), \qquad
              \hat Q(w) = \operatorname{sign}(w)\,c\,(1 + \ln(|w|/c)) \quad (|w| > c).

    In grid units (w = (v + z)Δ) the tail is :math:`(u+z)/(v+z)` above ``u`` and
    :math:`(l+z)/(v+z)` below ``l``: c is the representable edge on that side. α = 1 (the STE in
    every bin), M is the identity inside the range and, on the tail,
    :math:`\int_{edge}^{v} ds/\hat Q' = ((v+z)^2 - c^2)/(2c)`, inverted in closed form.
    ``surrogate`` is the in-range surrogate (x).

    Reference: Sakr, Dai, Venkatesan, Zimmer, Dally & Khailany, "Optimal clipping and
    magnitude-aware differentiation for improved quantization-aware training", ICML 2022,
    arXiv:2206.06501 (no parameter: c is the quantizer's clip, OCTAV-optimal in the paper).
    """

    title = "MAD"
    reference = "Sakr et al. 2022, arXiv:2206.06501"
    kind = "multi-bit"
    tail = "custom"

    def tail_derivative(self, v: Any, lower: float, upper: float, offset: float) -> Any:
        xp = array_namespace(v)
        hi, lo = _edge(upper, offset, "upper"), _edge(lower, offset, "lower")
        z = v + offset
        safe = xp.where(z == 0, xp.ones_like(z), z)  # only inside the range, where it is unused
        return xp.where(v > upper, hi / safe, lo / safe)

    def tail_primitive(self, v: Any, edge: float, lower: float, upper: float, offset: float) -> Any:
        c = _edge(edge, offset, "upper" if edge == upper else "lower")
        z = v + offset
        return (z * z - c * c) / (2.0 * c)

    def tail_primitive_inverse(self, y: Any, edge: float, lower: float, upper: float,
                               offset: float) -> Any:
        xp = array_namespace(y)
        c = _edge(edge, offset, "upper" if edge == upper else "lower")
        root = xp.sqrt(xp.clip(c * c + 2.0 * c * y, 0.0, None))  # clip: both sides are evaluated
        return (root if c > 0 else -root) - offset
