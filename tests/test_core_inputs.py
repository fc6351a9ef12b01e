"""Core inputs that used to give silent or wrong results (issue 10, item 3): each is converted,
kept, or refused with an error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import stequiv.core as core

Q = core.UniformQuantizer.symmetric(3, 1.0)


def test_integer_weights_are_converted_not_truncated():
    q = core.UniformQuantizer(bits=8, delta=0.5)
    out = q(np.arange(-3, 4))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.arange(-3.0, 4.0))  # was all zeros (Δ cast to int)
    np.testing.assert_array_equal(q.to_grid(np.array([3])), [6.0])
    np.testing.assert_array_equal(core.remap("htge", Q, np.array([0, 1])),
                                  core.remap("htge", Q, np.array([0.0, 1.0])))


@pytest.mark.parametrize("value", [np.array([True, False]), np.array([1 + 2j]), np.array(["a"])])
def test_non_real_weights_are_refused(value):
    with pytest.raises(ValueError, match="real floating"):
        Q(value)
    with pytest.raises(ValueError, match="`w` must be a real float16/float32/float64"):
        core.remap("htge", Q, value)


def test_extended_precision_is_refused_not_rounded():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("longdouble is float64 here")
    with pytest.raises(ValueError, match=r"got dtype (float128|longdouble)"):
        core.remap("htge", Q, np.zeros(3, dtype=np.longdouble))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4", ">f8", "<f2"])
@pytest.mark.parametrize("verb", [core.remap, core.unremap, core.remap_derivative])
def test_remap_keeps_every_floating_dtype(dtype, verb):
    w = np.linspace(-1.2, 1.2, 97).astype(dtype)
    out = verb("htge", Q, w)
    assert out.dtype == np.dtype(dtype)
    if verb is not core.remap_derivative:
        np.testing.assert_array_equal(Q(out), Q(w))
        ref = verb("htge", Q, w.astype(np.float64))
        np.testing.assert_allclose(out.astype(np.float64), ref, rtol=0,
                                   atol=4 * float(np.finfo(np.dtype(dtype)).eps))


def test_channel_axis_out_of_range_is_an_error():
    q = core.UniformQuantizer.symmetric(3, np.array([1.0, 2.0]), channel_axis=7)
    with pytest.raises(ValueError, match=r"`channel_axis`=7 is out of range .* \(valid: -2..1\)"):
        q(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`channel_axis`=7"):
        core.remap("htge", q, np.zeros((2, 3), dtype=np.float32))
    ok = core.UniformQuantizer.symmetric(3, np.array([1.0, 2.0]), channel_axis=-2)
    assert ok(np.zeros((2, 3))).shape == (2, 3)


@pytest.mark.parametrize(("bits", "message"), [(0, "`bits` must be >= 1, got 0"),
                                               (53, "`bits` must be <= 52, got 53"),
                                               (65, "`bits` must be <= 52, got 65")])
def test_bits_out_of_range_fail_at_construction(bits, message):
    with pytest.raises(ValueError, match=message):
        core.UniformQuantizer(bits=bits)
    with pytest.raises(ValueError, match=message):
        core.UniformQuantizer.symmetric(bits, 1.0)


def test_explicit_grid_limits_beyond_float64_are_refused():
    with pytest.raises(ValueError, match="`lower` and `upper` must lie within"):
        core.UniformQuantizer(lower=-(2**60), upper=0)


def test_widest_grid_still_keeps_bins():
    q = core.UniformQuantizer(bits=52, delta=1.0)
    w = np.array([-(2.0**50) + 0.25, -3.7, 0.2, 1.5, 2.0**50 - 0.5])
    np.testing.assert_array_equal(q(core.remap("htge", q, w)), q(w))
    np.testing.assert_array_equal(q(core.remap("htge", q, w.astype(np.float32))),
                                  q(w.astype(np.float32)))


@pytest.mark.parametrize("t", [1e-300, 1e3])
def test_extreme_parameters_raise_naming_the_parameter_never_nan(t):
    est = core.get_estimator("htge", t=t)
    with pytest.raises(ValueError, match=f"`t`={t!r}|htge\\(t={t:g}\\)"):
        core.alpha(est, Q)
    with pytest.raises(ValueError, match=f"`t`={t!r}"):
        core.constants(est, Q)


def test_moderately_extreme_parameters_still_give_finite_values():
    for t in (1e-8, 200.0):
        est = core.get_estimator("htge", t=t)
        a = core.alpha(est, Q)
        assert np.isfinite(a) and a > 0
        m = core.remap(est, Q, np.linspace(-1, 1, 33))
        assert np.all(np.isfinite(m))


def test_overflowing_map_raises_instead_of_returning_inf():
    psg = core.get_estimator("psg", eps=0.1)
    with pytest.raises(core.NoRemapError, match="not finite in float32"):
        core.unremap(psg, Q, np.array([60.0], dtype=np.float32))
