"""Registry-driven contract suite: every registered estimator is held to its own declarations.

Parametrised over ``stequiv.core.list_estimators()`` (default parameters) plus a few non-default
variants, so a newly registered estimator is tested with no new test code: declared properties
against sampling, derivative against the surrogate (finite differences and torch autograd),
closed forms against quadrature, serialisation, array-API evaluation on NumPy and torch, and the
guarantees of the map M (Eq. 4) wherever it exists.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import stequiv.core as core
from stequiv.core import BinaryQuantizer, NoRemapError, UniformQuantizer

CLOSED_FORM_RTOL = 1e-10  # closed-form primitives vs scipy quad
FD_RTOL = 1e-6  # derivative vs central differences of the surrogate / of M
FD_STEP = 1e-6
AUTOGRAD_RTOL = 1e-10  # torch autograd of the surrogate vs the derivative
TORCH_F64_RTOL = 1e-12  # torch float64 vs numpy float64
F32_RTOL = 2e-6  # float32 evaluation vs float64, relative to the largest value
ROUND_TRIP_TOL = 1e-6  # |M⁻¹(M(w)) - w| / Δ in float64
FIXED_POINT_TOL = 1e-12  # |M(b) - b| / Δ at boundary points (and centres of symmetric ones)
JUMP_RATIO = 5.0  # refining the grid 10x multiplies the largest slope by ~10 at a jump, ~1 else
SMOOTH_RATIO = 1.5
KINK_GAP = 1e-3  # finite differences stay this far from kinks
RADIUS = 4.0  # weight-unit estimators are sampled on support ∩ [-RADIUS, RADIUS]
HYP = settings(max_examples=50, deadline=None, derandomize=True)

VARIANTS = [
    {"name": "dsq", "alpha": 0.4},
    {"name": "htge", "t": 1.5},
    {"name": "qn", "temperature": 20.0},
    {"name": "psg", "eps": 0.1},
    {"name": "round_acos", "g_scale": 1.5},
    {"name": "daq", "temperature": 2.0, "sigma": 2.0},
    {"name": "ede", "t": 3.0, "k": 1.0},
    {"name": "reste", "o": 3.0},
    {"name": "fda", "n": 18},
    {"name": "rbnn", "t": 2.0, "k": 1.0},
]
ESTIMATORS = [core.get_estimator(s) for s in core.list_estimators() + VARIANTS]
IDS = [e.describe() for e in ESTIMATORS]
Q2 = UniformQuantizer.symmetric(2, 1.0)
QB = BinaryQuantizer()


# ------------------------------------------------------------------------------------ helpers
def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _bin_units(est) -> bool:
    return est.units == "bin"


def _domain(est) -> tuple[float, float]:
    """Where a weight-unit estimator is sampled: its support, capped at ±RADIUS."""
    lo, hi = est.support
    return max(lo, -RADIUS), min(hi, RADIUS)


def _kink_points(est) -> np.ndarray:
    """Absolute kink positions on the sampled range (bin units: every kink + integer)."""
    if _bin_units(est):
        return np.array([k + n for k in est.kinks for n in range(-4, 5)], dtype=np.float64)
    return np.array([k for k in est.kinks if np.isfinite(k)], dtype=np.float64)


def _away_from_kinks(est, xs: np.ndarray) -> np.ndarray:
    kinks = _kink_points(est)
    if kinks.size == 0:
        return xs
    return xs[np.min(np.abs(xs[:, None] - kinks[None, :]), axis=1) > KINK_GAP]


def _inside(est, n: int = 4097) -> np.ndarray:
    """A dense sample of one bin (bin units, kinks included) or of the open support."""
    if _bin_units(est):
        return 0.5 + np.linspace(0.0, 1.0, n)
    lo, hi = _domain(est)
    return np.linspace(lo, hi, n)[1:-1]


def _max_slope(est, a: float, b: float, h: float) -> float:
    xs = np.linspace(a, b, round((b - a) / h) + 1)
    vals = _f64(est.derivative(xs))
    return float(np.max(np.abs(np.diff(vals)) / np.diff(xs)))


def _reciprocal_quad(est, a: float, b: float, kinks=()) -> float:
    lo, hi = min(a, b), max(a, b)
    points = sorted({float(k) for k in kinks if lo < k < hi}) or None

    def f(s: float) -> float:
        return 1.0 / float(_f64(est.derivative(np.asarray([s])))[0])

    value, _ = integrate.quad(f, a, b, points=points, epsabs=0.0, epsrel=1e-13, limit=500)
    return value


def _quantizers(est):
    if est.kind == "binary":
        return [QB]
    return [Q2] if est.kind == "multi-bit" else [Q2, QB]


def _remap_cases():
    mapped, unmapped = [], []
    for est in ESTIMATORS:
        for q in _quantizers(est):
            case = pytest.param(est, q, id=f"{est.describe()}-{q.describe()}")
            try:
                core.alpha(est, q)
            except NoRemapError:
                unmapped.append(case)
            else:
                mapped.append(case)
    return mapped, unmapped


MAPPED, UNMAPPED = _remap_cases()


def _weight_range(est, q) -> tuple[float, float]:
    """Weights for which M is finite: beyond the clip range for bin units; the support if M is
    infinite at its edge (ApproxSign, RBNN), else ±RADIUS, for weight units."""
    if _bin_units(est):
        return -2.5, 2.5
    try:
        core.remap(est, q, np.array([-RADIUS, RADIUS]))
    except NoRemapError:
        lo, hi = _domain(est)
        return 0.98 * lo, 0.98 * hi
    return -RADIUS, RADIUS


def _weights(est, q, data, dtype=np.float64, max_size: int = 24) -> np.ndarray:
    lo, hi = _weight_range(est, q)
    values = data.draw(st.lists(st.floats(lo, hi, allow_nan=False, allow_infinity=False),
                                min_size=1, max_size=max_size))
    return np.asarray(values, dtype=dtype)


def _delta(q) -> float:
    return float(q.delta_array)


# ------------------------------------------------------------------------- declared properties
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_declarations_are_well_formed(est):
    assert set(est.properties()) == {"positive", "bounded", "lipschitz", "cyclical"}
    assert all(isinstance(v, bool) for v in est.properties().values())
    assert est.units in ("bin", "weight") and est.tail in ("extend", "zero", "custom")
    assert est.kind != "binary" or est.units == "weight"
    assert est.reference and type(est).__doc__
    if _bin_units(est):
        assert all(0.0 <= k < 1.0 for k in est.kinks)
    lo, hi = est.support
    assert lo < hi


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_positive_matches_sampling(est):
    vals = _f64(est.derivative(_inside(est)))
    assert est.positive == bool(np.all(vals > 0))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_bounded_and_finite(est):
    xs = np.concatenate([_inside(est), _kink_points(est), [0.0]])
    if not _bin_units(est):
        lo, hi = _domain(est)
        xs = np.concatenate([xs, np.linspace(lo - 1.0, hi + 1.0, 801)])
    vals = _f64(est.derivative(xs))
    assert np.all(np.isfinite(vals))
    if est.bounded:
        assert np.max(np.abs(vals)) < 1e6


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_lipschitz_matches_sampling(est):
    """A jump shows as a slope that grows tenfold when the grid is refined tenfold."""
    if _bin_units(est):
        a, b = 0.0, 2.0  # one period around a level and a boundary; the clip edges are not here
    else:
        lo, hi = _domain(est)
        a, b = lo - 0.5, hi + 0.5
    ratio = (_max_slope(est, a, b, 1e-4) + 1e-9) / (_max_slope(est, a, b, 1e-3) + 1e-9)
    if est.lipschitz:
        assert ratio < SMOOTH_RATIO
    elif _bin_units(est) and est.tail != "extend":
        assert ratio < SMOOTH_RATIO or ratio > JUMP_RATIO  # the jump may sit at the clip edge
    else:
        assert ratio > JUMP_RATIO


# ------------------------------------------------------------------- derivative vs surrogate
def _surrogate_points(est) -> np.ndarray:
    if _bin_units(est):
        xs = np.linspace(-2.3, 2.3, 181) + 0.00731
    else:
        lo, hi = _domain(est)
        xs = np.linspace(lo - 0.5, hi + 0.5, 181) + 0.00731
    return _away_from_kinks(est, xs)


@pytest.mark.parametrize("est", [e for e in ESTIMATORS if e.surrogate is not None],
                         ids=[e.describe() for e in ESTIMATORS if e.surrogate is not None])
def test_derivative_matches_surrogate_differences(est):
    xs = _surrogate_points(est)
    fd = (_f64(est.surrogate(xs + FD_STEP)) - _f64(est.surrogate(xs - FD_STEP))) / (2 * FD_STEP)
    d = _f64(est.derivative(xs))
    np.testing.assert_allclose(fd, d, rtol=FD_RTOL, atol=FD_RTOL * max(1.0, np.max(np.abs(d))))


@pytest.mark.parametrize("est", [e for e in ESTIMATORS if e.surrogate is not None],
                         ids=[e.describe() for e in ESTIMATORS if e.surrogate is not None])
def test_derivative_matches_torch_autograd(est):
    x = torch.tensor(_surrogate_points(est), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(est.surrogate(x).sum(), x)
    expected = _f64(est.derivative(x.detach().numpy()))
    np.testing.assert_allclose(grad.numpy(), expected, rtol=AUTOGRAD_RTOL, atol=AUTOGRAD_RTOL)


# ------------------------------------------------------------------- closed forms vs quadrature
@pytest.mark.parametrize("est", [e for e in ESTIMATORS if e.boundary_primitive is not None],
                         ids=[e.describe() for e in ESTIMATORS if e.boundary_primitive is not None])
def test_boundary_primitive_matches_quadrature(est):
    if not est.positive:
        pytest.skip("∫1/Q̂' diverges inside a bin")

    class _Shifted:  # h(½ + d) in the boundary coordinate d
        derivative = staticmethod(lambda d: est.derivative(d + 0.5))

    kinks = [(k - 0.5) % 1.0 for k in est.kinks]
    assert float(est.boundary_primitive(np.float64(0.0))) == 0.0
    for d in (0.13, 0.5, 0.77, 1.0):
        expected = _reciprocal_quad(_Shifted, 0.0, d, kinks)
        got = float(est.boundary_primitive(np.float64(d)))
        assert got == pytest.approx(expected, rel=CLOSED_FORM_RTOL)


@pytest.mark.parametrize("est", [e for e in ESTIMATORS if e.weight_primitive is not None],
                         ids=[e.describe() for e in ESTIMATORS if e.weight_primitive is not None])
def test_weight_primitive_matches_quadrature(est):
    lo, hi = _domain(est)
    assert float(est.weight_primitive(np.float64(0.0))) == 0.0
    for frac in (-0.95, -0.6, -0.2, 0.3, 0.7, 0.95):
        w = frac * (hi if frac > 0 else -lo)
        expected = _reciprocal_quad(est, 0.0, w, est.kinks)
        assert float(est.weight_primitive(np.float64(w))) == pytest.approx(
            expected, rel=CLOSED_FORM_RTOL)


@pytest.mark.parametrize("est", [e for e in ESTIMATORS if e.tail == "custom" and e.positive],
                         ids=[e.describe() for e in ESTIMATORS if e.tail == "custom" and e.positive])
def test_tail_primitive_matches_quadrature_and_inverts(est):
    lower, upper, z = Q2.lower, Q2.upper, Q2.offset

    class _Tail:
        derivative = staticmethod(lambda v: est.tail_derivative(v, lower, upper, z))

    for v, edge in ((1.3, upper), (3.7, upper), (-2.4, lower), (-5.5, lower)):
        expected = _reciprocal_quad(_Tail, edge, v)
        got = float(est.tail_primitive(np.float64(v), edge, lower, upper, z))
        assert got == pytest.approx(expected, rel=CLOSED_FORM_RTOL)
        back = est.tail_primitive_inverse(np.float64(got), edge, lower, upper, z)
        assert float(back) == pytest.approx(v, rel=CLOSED_FORM_RTOL)
    inside = np.linspace(lower, upper, 7)
    np.testing.assert_array_equal(_f64(est.gradient(inside, lower, upper, z)),
                                  _f64(est.derivative(inside)))


# ------------------------------------------------------------------ serialisation and arrays
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_to_dict_round_trips(est):
    spec = json.loads(json.dumps(est.to_dict()))
    again = core.get_estimator(spec)
    assert again == est and type(again) is type(est)
    assert core.get_estimator(est) is est


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_derivative_on_numpy_and_torch(est):
    xs = np.arange(-300, 301) / 64.0  # exact in float32 too: both dtypes see the same points
    ref = _f64(est.derivative(xs))
    scale = max(1.0, float(np.max(np.abs(ref))))
    t64 = est.derivative(torch.tensor(xs, dtype=torch.float64))
    assert t64.dtype == torch.float64
    np.testing.assert_allclose(t64.numpy(), ref, rtol=TORCH_F64_RTOL, atol=TORCH_F64_RTOL)
    n32 = est.derivative(xs.astype(np.float32))
    assert n32.dtype == np.float32
    np.testing.assert_allclose(n32, ref, rtol=F32_RTOL, atol=F32_RTOL * scale)
    t32 = est.derivative(torch.tensor(xs, dtype=torch.float32))
    assert t32.dtype == torch.float32
    np.testing.assert_allclose(t32.numpy(), ref, rtol=F32_RTOL, atol=F32_RTOL * scale)


# ---------------------------------------------------------------------------- the map M
@pytest.mark.parametrize(("est", "q"), UNMAPPED)
def test_no_map_for_nonpositive_or_noncyclical(est, q):
    assert not est.positive or not est.cyclical
    with pytest.raises(NoRemapError, match=r"no map M exists|M does not exist|not cyclical"):
        core.remap(est, q, np.zeros(3))


@pytest.mark.parametrize(("est", "q"), MAPPED)
def test_positive_cyclical_estimators_have_a_map(est, q):
    assert est.positive and (est.cyclical or est.kind == "binary")
    a = core.alpha(est, q)
    assert np.isfinite(a) and a > 0
    if q.num_finite_bins == 0:
        assert a == 1.0  # binary quantizer: α := 1 (Section 5.1)


@pytest.mark.parametrize(("est", "q"), MAPPED)
def test_remap_fixes_boundary_points(est, q):
    b = q.boundary_points().ravel()
    m = core.remap(est, q, b)
    np.testing.assert_allclose(m, b, rtol=0, atol=FIXED_POINT_TOL * _delta(q))
    np.testing.assert_array_equal(q(m), q(b))


@pytest.mark.parametrize(("est", "q"), MAPPED)
def test_symmetric_estimators_fix_bin_centres(est, q):
    s = np.linspace(0.0, 0.5, 257)
    if _bin_units(est):
        if not np.allclose(_f64(est.derivative(1.0 + s)), _f64(est.derivative(1.0 - s)),
                           rtol=1e-13, atol=0):
            pytest.skip("not symmetric about the level")
        centres = (np.arange(q.lower + 1, q.upper) + q.offset) * _delta(q)
        if centres.size == 0:
            pytest.skip("no finite bin")
        np.testing.assert_allclose(core.remap(est, q, centres), centres, rtol=0,
                                   atol=FIXED_POINT_TOL * _delta(q))
    else:  # weight units: an even Q̂' has an odd M
        if not np.allclose(_f64(est.derivative(s)), _f64(est.derivative(-s)), rtol=1e-13, atol=0):
            pytest.skip("not even")
        lo, hi = _weight_range(est, q)
        w = np.linspace(0.0, min(-lo, hi), 101)
        np.testing.assert_allclose(core.remap(est, q, -w), -core.remap(est, q, w), rtol=1e-13,
                                   atol=0)


@pytest.mark.parametrize(("est", "q"), MAPPED)
@HYP
@given(data=st.data())
def test_remap_is_strictly_increasing(est, q, data):
    w = np.unique(_weights(est, q, data, max_size=40))
    m = core.remap(est, q, w)
    gaps = np.diff(w) > 1e-9 * _delta(q)
    assert np.all(np.diff(m) >= 0)
    assert np.all(np.diff(m)[gaps] > 0)


@pytest.mark.parametrize(("est", "q"), MAPPED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@HYP
@given(data=st.data())
def test_remap_keeps_every_weight_in_its_bin(est, q, dtype, data):
    b = q.boundary_points().ravel().astype(dtype)
    near = [b]
    for direction in (-np.inf, np.inf):
        step = b
        for _ in range(3):
            step = np.nextafter(step, dtype(direction))
            near.append(step)
    # the quantizer rounds w·(1/Δ) - z at the scale of Δ: at a boundary point 0 its effective
    # boundary is eps·Δ-ish away from 0, with subnormal ulps in between
    grid_ulps = np.array([-2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0]) * np.finfo(dtype).eps
    rounding = (b[:, None] + grid_ulps[None, :] * _delta(q)).astype(dtype).ravel()
    w = np.concatenate([_weights(est, q, data, dtype), *near, rounding])
    m = core.remap(est, q, w)
    assert m.dtype == dtype
    np.testing.assert_array_equal(q(m), q(w))
    back = core.unremap(est, q, m)
    assert back.dtype == dtype
    np.testing.assert_array_equal(q(back), q(w))


@pytest.mark.parametrize(("est", "q"), MAPPED)
@HYP
@given(data=st.data())
def test_unremap_inverts_remap(est, q, data):
    w = _weights(est, q, data)
    back = core.unremap(est, q, core.remap(est, q, w))
    np.testing.assert_allclose(back, w, rtol=0, atol=ROUND_TRIP_TOL * _delta(q))


def _smooth_weights(est, q, w: np.ndarray) -> np.ndarray:
    """Drop weights near kinks, boundary points and clip edges, where M′ may jump."""
    delta = _delta(q)
    if _bin_units(est):
        v = q.to_grid(w)
        edges = np.concatenate([_kink_points(est), [q.lower, q.upper],
                                np.arange(-8, 8) + 0.5])
        keep = np.min(np.abs(v[:, None] - edges[None, :]), axis=1) > KINK_GAP
    else:
        keep = np.ones(w.shape, dtype=bool)
        edges = np.concatenate([_kink_points(est), [0.0]])
        keep &= np.min(np.abs(w[:, None] - edges[None, :]), axis=1) > KINK_GAP * delta
    return w[keep]


@pytest.mark.parametrize(("est", "q"), MAPPED)
@HYP
@given(data=st.data())
def test_remap_derivative_matches_differences(est, q, data):
    w = _smooth_weights(est, q, _weights(est, q, data))
    if w.size == 0:
        return
    h = FD_STEP * _delta(q)
    fd = (core.remap(est, q, w + h) - core.remap(est, q, w - h)) / (2 * h)
    mp = core.remap_derivative(est, q, w)
    np.testing.assert_allclose(fd, mp, rtol=FD_RTOL * 10, atol=FD_RTOL * 10)
