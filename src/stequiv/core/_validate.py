"""Argument checks shared by the core: each error names the argument, the bad value and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


def finite_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number (bools refused)."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be a real number, got the boolean {value!r}; "
                         "give a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return out


def positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not finite and > 0."""
    out = finite_float(name, value)
    if out <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    return out


def in_open_interval(name: str, value: Any, lo: float, hi: float) -> float:
    """Return ``value`` as a float, or raise if it is not in the open interval (lo, hi)."""
    out = finite_float(name, value)
    if not lo < out < hi:
        raise ValueError(f"`{name}` must lie in ({lo}, {hi}), got {value!r}")
    return out


Converter = Callable[[str, Any], Any]
"""``convert(name, value)``: the checked, converted value, or a ValueError naming ``name``."""


def nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not finite and >= 0."""
    out = finite_float(name, value)
    if out < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value!r}")
    return out


def open_interval(lo: float, hi: float) -> Converter:
    """A converter accepting floats in the open interval (lo, hi)."""
    return lambda name, value: in_open_interval(name, value, lo, hi)


def half_open_interval(lo: float, hi: float) -> Converter:
    """A converter accepting floats in (lo, hi]."""
    def convert(name: str, value: Any) -> float:
        out = finite_float(name, value)
        if not lo < out <= hi:
            raise ValueError(f"`{name}` must lie in ({lo}, {hi}], got {value!r}")
        return out

    return convert


def at_least(lo: float, why: str = "") -> Converter:
    """A converter accepting finite floats >= lo (``why`` is added to the error)."""
    def convert(name: str, value: Any) -> float:
        out = finite_float(name, value)
        if out < lo:
            raise ValueError(f"`{name}` must be >= {lo}{why}, got {value!r}")
        return out

    return convert


def integer_at_least(minimum: int) -> Converter:
    """A converter accepting integers >= ``minimum`` (bools and floats refused)."""
    return lambda name, value: integer(name, value, minimum=minimum)


def optional(convert: Converter) -> Converter:
    """``convert``, letting None through."""
    return lambda name, value: None if value is None else convert(name, value)


def boolean(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (strings such as ``'false'`` and numbers refused)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def integer(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int (bools and non-integral floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"`{name}` must be an integer, got {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {out}")
    return out


def positive_finite_array(name: str, value: Any) -> np.ndarray:
    """Return ``value`` as a float64 array of finite, strictly positive entries (scalar or 1-D)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(
            f"`{name}` must be a scalar or a 1-D array (one value per output channel), "
            f"got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite everywhere, got {value!r}")
    if not np.all(arr > 0):
        raise ValueError(f"`{name}` must be > 0 everywhere, got {value!r}")
    return arr


def reject_unknown_keys(what: str, data: Any, known: set[str]) -> None:
    """Raise if ``data`` (a mapping) has keys outside ``known``, naming them and the valid ones."""
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; valid keys: {sorted(known)}")
