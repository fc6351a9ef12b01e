"""The uniform quantizer of Eq. 1 with a zero-point offset, and the binary quantizer."""

import numpy as np
import pytest

from stequiv.core import BinaryQuantizer, UniformQuantizer


def test_eq1_mid_tread_levels_and_clip():
    q = UniformQuantizer(bits=2, delta=0.25)
    assert (q.lower, q.upper) == (-2, 1)
    w = np.array([-1.0, -0.3, -0.1, 0.0, 0.12, 0.13, 0.3, 5.0])
    np.testing.assert_array_equal(q(w), [-0.5, -0.25, -0.0, 0.0, 0.0, 0.25, 0.25, 0.25])


def test_symmetric_grid_spans_exactly_minus_max_to_max():
    for bits in (1, 2, 3, 4, 8):
        q = UniformQuantizer.symmetric(bits, 0.7)
        lo, hi = q.representable_range()
        assert lo == pytest.approx(-0.7) and hi == pytest.approx(0.7)
        assert float(q.delta_array) == pytest.approx(1.4 / (2**bits - 1))
        levels = np.unique(q(np.linspace(-2, 2, 20001)))
        assert levels.size == 2**bits
        assert 0.0 not in levels


def test_structure_counts_boundaries_and_bins():
    q = UniformQuantizer.symmetric(2, 1.5)  # Δ = 1, levels ±0.5, ±1.5
    np.testing.assert_allclose(q.boundary_points(), [-1.0, 0.0, 1.0])
    assert q.num_finite_bins == 2 and q.num_bins == 4
    assert q.range_length() == pytest.approx(3.0)


def test_per_channel_delta_broadcasts_along_channel_axis():
    q = UniformQuantizer(bits=2, delta=[0.1, 1.0], offset=0.5)
    w = np.full((2, 3), 0.12)
    out = q(w)
    np.testing.assert_allclose(out[0], 0.15)
    np.testing.assert_allclose(out[1], 0.5)
    with pytest.raises(ValueError, match="per-channel `delta` has 2 entries"):
        q(np.zeros((3, 2)))


def test_binary_quantizer_is_sign_with_sign0_plus_one():
    q = BinaryQuantizer(scale=0.5)
    np.testing.assert_array_equal(q(np.array([-3.0, -1e-9, -0.0, 0.0, 2.0])),
                                  [-0.5, -0.5, 0.5, 0.5, 0.5])
    assert q.num_finite_bins == 0
    np.testing.assert_array_equal(q.boundary_points(), [0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 0}, "`bits` must be >= 1"),
        ({"bits": 2, "delta": 0.0}, "`delta` must be > 0"),
        ({"bits": 2, "delta": -1.0}, "`delta` must be > 0"),
        ({"bits": 2, "delta": float("nan")}, "`delta` must be finite"),
        ({"bits": 2, "delta": float("inf")}, "`delta` must be finite"),
        ({"lower": 1, "upper": 1}, "`lower` must be < `upper`"),
        ({"bits": 2, "offset": float("nan")}, "`offset` must be finite"),
        ({"bits": 2.5}, "`bits` must be an integer"),
        ({"bits": 2, "delta": [[1.0]]}, "1-D array"),
        ({}, "give `bits`"),
    ],
)
def test_bad_parameters_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UniformQuantizer(**kwargs)


def test_binary_scale_must_be_positive():
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        BinaryQuantizer(scale=0)
