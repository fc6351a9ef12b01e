"""Numerically stable building blocks shared by the estimator definitions (array API)."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from .._estimator import Estimator


def sech2(z: Any) -> Any:
    r""":math:`\operatorname{sech}^2 z = 4e^{-2|z|}/(1+e^{-2|z|})^2`: no overflow for any ``z``."""
    xp = array_namespace(z)
    e = xp.exp(-2.0 * xp.abs(z))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


def sigmoid(z: Any) -> Any:
    r""":math:`\sigma(z) = \tfrac12(1 + \tanh(z/2))`: no overflow for any ``z``."""
    return 0.5 * (1.0 + array_namespace(z).tanh(0.5 * z))


def level_distance(x: Any) -> Any:
    """|x - round(x)| in [0, 1/2]: distance from the grid coordinate to the nearest level."""
    xp = array_namespace(x)
    return xp.abs(x - xp.round(x))


def from_level(d: Any, f: Any) -> Any:
    r"""The boundary primitive :math:`P(d)` of a 1/h that is symmetric about the level.

    ``f(δ)`` is :math:`\int_0^\delta ds/h` measured from the level (δ = distance to the level,
    ``0 <= δ <= 1/2``). Starting at the boundary ½ the level is reached at d = ½, so
    :math:`P(d) = f(\tfrac12) + \operatorname{sign}(d-\tfrac12)\, f(|d-\tfrac12|)`.
    """
    xp = array_namespace(d)
    e = d - 0.5
    return f(0.5 * xp.ones_like(d)) + xp.sign(e) * f(xp.abs(e))


def odd(w: Any, f: Any) -> Any:
    """``sign(w) f(|w|)``: the primitive from 0 of an even 1/h, from its half-line form ``f``."""
    xp = array_namespace(w)
    return xp.sign(w) * f(xp.abs(w))


class IdentityShape(Estimator):
    r"""The shared body of the STE, PWL and MAD inside the clip range: :math:`\hat Q(x) = x`,
    :math:`\hat Q'(x) = 1`, :math:`P(d) = d` (so α = 1 and M is the identity there)."""

    def derivative(self, x: Any) -> Any:
        return array_namespace(x).ones_like(x)

    def surrogate(self, x: Any) -> Any:
        return x

    def boundary_primitive(self, d: Any) -> Any:
        return d
