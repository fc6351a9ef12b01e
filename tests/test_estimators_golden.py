"""Golden values of the estimator catalogue (docs/estimators.md, /work/shared/estimators.md).

The printed values of the catalogue carry 3-4 significant digits (``PRINTED``); closed forms are
checked to ``CLOSED``. Also: the registry's errors, and parameter validation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

import stequiv.core as core
from stequiv.core import BinaryQuantizer, NoRemapError, UniformQuantizer
from stequiv.core.internal import scratch_registry as _scratch_registry

PRINTED = 5e-4  # absolute, for values printed with 3 decimals
PRINTED_REL = 5e-3  # relative, for values printed with 3 significant digits
PRINTED_REL_2 = 3e-2  # relative, for values printed with 2 significant digits
CLOSED = 1e-12  # closed form vs the core's α (also closed form)
NUMERIC = 1e-10  # numeric path (quadrature, tables) vs closed form
F32_REL = 2e-6  # a float32 evaluation vs float64, relative to the largest value
Q2 = UniformQuantizer.symmetric(2, 1.0)


def est(name, **params):
    return core.get_estimator(name, **params)


def h(e, x):
    return np.asarray(e.derivative(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def integral_of_derivative(e, a, b, points=None):
    return integrate.quad(lambda x: float(h(e, [x])[0]), a, b, points=points, limit=200)[0]


# -------------------------------------------------------------------------------- multi-bit
@pytest.mark.parametrize(("a_dsq", "a_lr"), [(0.1, 0.776), (0.2, 0.909), (0.4, 0.982), (0.5, 0.993)])
def test_dsq_alpha(a_dsq, a_lr):
    e = est("dsq", alpha=a_dsq)
    L = math.log(2 / a_dsq - 1)
    integral = (1 - a_dsq) / L + 2 * (1 - a_dsq) ** 2 / (a_dsq * (2 - a_dsq) * L**2)
    assert core.alpha(e, Q2) == pytest.approx(1 / integral, rel=CLOSED)
    assert core.alpha(e, Q2) == pytest.approx(a_lr, abs=PRINTED)


@pytest.mark.parametrize(("a_dsq", "top", "bottom"), [(0.2, 1.373, 0.494), (0.4, 1.155, 0.739)])
def test_dsq_extremes(a_dsq, top, bottom):
    boundary, level = h(est("dsq", alpha=a_dsq), [0.5, 0.0])
    assert boundary == pytest.approx(top, abs=PRINTED)
    assert level == pytest.approx(bottom, abs=PRINTED)


@pytest.mark.parametrize("t", [1.5, 4.0, 5.5])
def test_htge_alpha(t):
    assert core.alpha(est("htge", t=t), Q2) == pytest.approx(t * t / (t + math.sinh(t)), rel=CLOSED)


@pytest.mark.parametrize("t", [1.5, 4.0])
def test_custom_estimator_numeric_path_matches_htge_closed_form(t):
    closed = est("htge", t=t)
    numeric = core.custom_estimator("htge_numeric", closed.derivative, kind="both", tail="zero",
                                    kinks=(0.0,), register=False)
    assert numeric.boundary_primitive is None  # really the numeric path
    assert core.alpha(numeric, Q2) == pytest.approx(core.alpha(closed, Q2), rel=NUMERIC)
    w = np.linspace(-2.0, 2.0, 401)
    np.testing.assert_allclose(core.remap(numeric, Q2, w), core.remap(closed, Q2, w),
                               rtol=0, atol=NUMERIC)
    np.testing.assert_allclose(core.unremap(numeric, Q2, w), core.unremap(closed, Q2, w),
                               rtol=0, atol=NUMERIC)


@pytest.mark.parametrize(("temperature", "sigma", "integral", "a_lr", "lo", "hi"),
                         [(2.0, 1.0, 2.275, 0.440, 0.362, 0.597),
                          (2.0, 2.0, 1.277, 0.783, 0.497, 2.217)])
def test_daq_alpha_and_range(temperature, sigma, integral, a_lr, lo, hi):
    e = est("daq", temperature=temperature, sigma=sigma)
    kappa = math.exp(-1 / sigma**2)
    closed = (2 * math.sinh(temperature) / temperature) * (
        1 - 2 * math.log((1 + kappa) / (1 + kappa / math.e)))
    assert core.alpha(e, Q2) == pytest.approx(1 / closed, rel=CLOSED)
    assert 1 / core.alpha(e, Q2) == pytest.approx(integral, abs=PRINTED)
    assert core.alpha(e, Q2) == pytest.approx(a_lr, abs=PRINTED)
    level, boundary = h(e, [0.0, 0.5])
    assert (level, boundary) == pytest.approx((lo, hi), abs=PRINTED)


def _daq_soft_argmax(x, temperature, sigma):
    """The released ``w_soft_argmax`` (cvlab-yonsei/DAQ, models/resnet20_DAQ_w.py), on CPU."""
    q = torch.tensor([0.0, 1.0], dtype=x.dtype).reshape(2, 1)
    floor = x.floor()
    x = x - floor.detach()
    m = torch.exp(-(x.unsqueeze(0) - q).abs())
    nearest = m.max(dim=0)[1].unsqueeze(0).to(x.dtype)
    score = m * torch.exp(-((q - nearest) ** 2) / sigma**2)
    tmp = (temperature / (score[0] - score[1]).abs()).detach() * score
    prob = torch.exp(tmp - tmp.max())
    prob = prob / prob.sum(dim=0, keepdim=True)
    c = 1 / (math.exp(temperature) - 1)
    values = torch.tensor([-c, 1 + c], dtype=x.dtype).reshape(2, 1)
    return (values * prob).sum(dim=0) + floor


@pytest.mark.parametrize(("temperature", "sigma"), [(2.0, 1.0), (2.0, 2.0), (3.0, 0.7)])
def test_daq_closed_form_matches_released_code_autograd(temperature, sigma):
    x = torch.linspace(-1.98, 2.97, 97, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(_daq_soft_argmax(x, temperature, sigma).sum(), x)
    expected = h(est("daq", temperature=temperature, sigma=sigma), x.detach().numpy())
    np.testing.assert_allclose(grad.numpy(), expected, rtol=NUMERIC, atol=NUMERIC)


@pytest.mark.parametrize(("temperature", "level", "boundary", "integral", "bound"),
                         [(5.0, 0.707, 1.32, 1.05, 1.37), (10.0, 0.133, 2.50, 2.51, 3.17),
                          (20.0, 1.8e-3, 5.0, 86.6, 110.0)])
def test_qn_ratios_and_alpha(temperature, level, boundary, integral, bound):
    e = est("qn", temperature=temperature)
    got_level, got_boundary = h(e, [0.0, 0.5])
    assert got_level == pytest.approx(level, rel=PRINTED_REL_2)
    assert got_boundary == pytest.approx(boundary, rel=PRINTED_REL)
    inverse_alpha = 1 / core.alpha(e, Q2)
    assert inverse_alpha == pytest.approx(integral, rel=PRINTED_REL)
    nearest_sigmoid = 2 / temperature + 4 * math.sinh(temperature / 2) / temperature**2
    assert nearest_sigmoid == pytest.approx(bound, rel=PRINTED_REL)
    assert inverse_alpha < nearest_sigmoid  # keeping only the nearest sigmoid is an upper bound


@pytest.mark.parametrize("temperature", [0.5, 5.0, 20.0, 50.0, 1000.0])
def test_qn_derivative_is_its_direct_sum_of_sigmoid_slopes(temperature):
    """The two-exponential, paired evaluation is the paper's sum term by term (T Σ σ'(T(u − j))
    over the same 2n + 1 boundaries, σ'(z) = 1/(2 + 2 cosh z)), to float64 rounding; float32
    stays finite where exponentials underflow (large T)."""
    e = est("qn", temperature=temperature)
    js = np.arange(-e.terms, e.terms + 1)

    def direct(x):
        u = x - np.floor(x) - 0.5
        with np.errstate(over="ignore"):
            return temperature * np.sum(1.0 / (2.0 + 2.0 * np.cosh(temperature * (u[:, None] - js))),
                                        axis=1)

    x = np.concatenate([np.linspace(-2.5, 2.5, 2001), [0.0, 0.5, -0.5, 1.5, 0.5 - 1e-16, 1e-300]])
    np.testing.assert_allclose(h(e, x), direct(x), rtol=2e-14, atol=0)
    x32 = x.astype(np.float32)
    with np.errstate(under="ignore"):
        low = np.asarray(e.derivative(x32))
    assert low.dtype == np.float32 and np.all(np.isfinite(low))
    expected = direct(x32.astype(np.float64))  # at the same (rounded) inputs
    np.testing.assert_allclose(low, expected, rtol=0, atol=F32_REL * expected.max())


@pytest.mark.parametrize(("omega", "n"), [(0.1, 9), (0.1, 18), (1.0, 40), (3.0, 5), (3.5, 5)])
def test_fda_derivative_is_its_cosine_series(omega, n):
    """The Dirichlet closed form (ω < π; its limit 2(n+1) at w = 0) and the term-by-term path
    (ω ≥ π) are the source's (4ω/π) Σ cos((2i+1)ωw) on [-1, 1], zero beyond."""
    x = np.concatenate([np.linspace(-1.3, 1.3, 4001), [0.0, 1e-300, -1e-300, 1.0, -1.0]])
    c = np.clip(x, -1.0, 1.0)
    series = sum(np.cos((2 * i + 1) * omega * c) for i in range(n + 1))
    direct = np.where(np.abs(x) <= 1.0, (4.0 * omega / math.pi) * series, 0.0)
    got = h(est("fda", omega=omega, n=n), x)
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-14 * np.abs(direct).max())


def test_qn_at_high_temperature():
    level, boundary = h(est("qn", temperature=50.0), [0.0, 0.5])
    assert level == pytest.approx(1.4e-9, rel=PRINTED_REL_2)
    assert boundary == pytest.approx(12.5, rel=PRINTED_REL)


def test_mad_is_the_ste_inside_with_a_closed_form_tail():
    e = est("mad")
    assert core.alpha(e, Q2) == 1.0
    inside = np.linspace(-1.0, 1.0, 41)
    np.testing.assert_allclose(core.remap(e, Q2, inside), inside, rtol=0, atol=1e-15)
    c = 1.0  # the representable edge of symmetric(2, 1.0), in weight units

    def m_by_quadrature(w):  # M(w) = edge + ∫_edge^w |s|/c ds  (Q̂' = c/|s| beyond the edge)
        edge = math.copysign(c, w)
        return edge + integrate.quad(lambda s: abs(s) / c, edge, w, epsabs=0, epsrel=1e-13)[0]

    w = np.array([-5.0, -3.0, -1.2, 1.01, 1.5, 2.5, 7.0])
    expected = [m_by_quadrature(x) for x in w]
    np.testing.assert_allclose(core.remap(e, Q2, w), expected, rtol=NUMERIC)
    np.testing.assert_allclose(core.remap(e, Q2, w),
                               np.sign(w) * (c + (w * w - c * c) / (2 * c)), rtol=CLOSED)
    np.testing.assert_allclose(core.remap_derivative(e, Q2, w), np.abs(w) / c, rtol=CLOSED)
    np.testing.assert_allclose(core.unremap(e, Q2, core.remap(e, Q2, w)), w, rtol=CLOSED)


def test_mad_needs_a_zero_centred_range():
    asymmetric = UniformQuantizer(delta=1.0, lower=0, upper=3)
    with pytest.raises(ValueError, match="contain 0"):
        core.remap("mad", asymmetric, np.array([-1.0, 1.0]))


@pytest.mark.parametrize("g_scale", [5e-3, 0.5, 1.5, -1.0])
def test_round_acos_alpha(g_scale):
    e = est("round_acos", g_scale=g_scale)
    assert core.alpha(e, Q2) == pytest.approx(math.sqrt(1 - g_scale**2 / 4), rel=CLOSED)
    x = np.array([0.5 - 1e-12, 0.5 + 1e-12])  # the jump of δ at a boundary
    assert np.diff(h(e, x))[0] == pytest.approx(-g_scale, rel=1e-9)


@pytest.mark.parametrize(("beta", "eps"), [(4.0, 0.1), (6.0, 1e-3)])
def test_psg_alpha_with_floor(beta, eps):
    e = est("psg", beta=beta, eps=eps)
    assert core.alpha(e, Q2) == pytest.approx(beta / (2 * math.log1p(beta / (2 * eps))), rel=CLOSED)


def test_psg_without_floor_has_no_map():
    e = est("psg")
    assert h(e, [-1.0, 0.0, 1.0]).tolist() == [0.0, 0.0, 0.0] and not e.positive
    with pytest.raises(NoRemapError, match="zero or not finite"):
        core.alpha(e, Q2)


def test_dorefa_closed_form_and_no_map():
    e = est("dorefa", m=0.8)
    a, b = -0.7, 1.9
    closed = 0.8 * ((b - a) / 2 + (math.sinh(2 * b) - math.sinh(2 * a)) / 4)
    primitive = e.weight_primitive(np.array([a, b]))
    assert float(primitive[1] - primitive[0]) == pytest.approx(closed, rel=CLOSED)
    assert integrate.quad(lambda s: 1 / h(e, [s])[0], a, b)[0] == pytest.approx(closed, rel=NUMERIC)
    with pytest.raises(NoRemapError, match="not cyclical"):
        core.alpha(e, Q2)


# ----------------------------------------------------------------------------------- binary
def test_swish_sign_sign_change_and_minimum():
    e = est("swish_sign")
    assert h(e, [0.0])[0] == pytest.approx(5.0, rel=CLOSED)
    root = optimize.brentq(lambda x: h(e, [x])[0], 0.1, 0.6, xtol=1e-14)
    assert root == pytest.approx(0.480, abs=PRINTED)
    assert 5.0 * root == pytest.approx(2.3994, abs=1e-4)
    low = optimize.minimize_scalar(lambda x: h(e, [x])[0], bounds=(0.5, 1.5), method="bounded")
    assert low.x == pytest.approx(0.687, abs=PRINTED)
    assert low.fun == pytest.approx(-0.369, abs=PRINTED)
    assert low.fun / 5.0 == pytest.approx(-0.07383, abs=1e-5)
    assert float(e.surrogate(np.float64(root))) == pytest.approx(1.1997, abs=1e-4)
    with pytest.raises(NoRemapError, match="negative"):
        core.alpha(e, BinaryQuantizer())


@pytest.mark.parametrize(("n", "at0", "at1"), [(9, 1.273, 0.580), (18, 2.419, -0.390)])
def test_fda_values(n, at0, at1):
    e = est("fda", n=n)
    assert h(e, [0.0, 1.0]).tolist() == pytest.approx([at0, at1], abs=PRINTED)
    x = np.linspace(0.05, 1.0, 20)
    closed = (2 * e.omega / math.pi) * np.sin(2 * (n + 1) * e.omega * x) / np.sin(e.omega * x)
    np.testing.assert_allclose(h(e, x), closed, rtol=NUMERIC, atol=NUMERIC)
    assert e.positive == (n == 9)


def test_fda_turns_negative_late_in_training():
    e = est("fda", n=18)
    assert math.pi / (2 * 19 * 0.1) == pytest.approx(0.827, abs=PRINTED)
    assert h(e, [0.82])[0] > 0 > h(e, [0.83])[0]
    with pytest.raises(NoRemapError, match="negative"):
        core.alpha(e, BinaryQuantizer())


def test_reste_values():
    e = est("reste", o=3.0)
    got = h(e, [0.0, 0.1 + 1e-12, 1.0, 1.5, 1.5 + 1e-12])
    assert got.tolist() == pytest.approx([4.64, 1.55, 0.333, 0.254, 0.0], abs=5e-3)
    assert est("reste").derivative(np.array([0.0, 1.0, 1.6])).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(("name", "params", "total"),
                         [("approx_sign", {}, 2.0), ("long_tailed", {}, 1.44),
                          ("ede", {}, 20.0), ("ede", {"t": 3.0, "k": 1.0}, 2.0),
                          ("rbnn", {"t": 2.0, "k": 1.5}, 3.0),
                          ("qn_binary", {"beta": 2.0}, 1.0), ("qn_binary", {}, 2.0)])
def test_binary_total_gradient(name, params, total):
    """∫Q̂′ over ℝ: 2 for a ±1 sign surrogate; 2k for EDE/RBNN, 1.44 for the long-tailed one."""
    e = est(name, **params)
    lo, hi = e.support
    inner = [k for k in e.kinks if lo < k < hi] if np.isfinite(lo) else []
    assert integral_of_derivative(e, lo, hi, inner or None) == pytest.approx(total, rel=1e-9)


def test_binary_surrogate_limits():
    assert est("long_tailed").surrogate(np.array([-3.0, 3.0])).tolist() == pytest.approx([-0.72, 0.72])
    rbnn = est("rbnn", t=2.0, k=1.5)
    assert h(rbnn, [0.0])[0] == pytest.approx(1.5 * math.sqrt(2) * 2.0, rel=CLOSED)
    assert est("rbnn").support[1] == pytest.approx(141.4, abs=0.1)
    assert est("rbnn", t=10.0).support[1] == pytest.approx(0.141, abs=PRINTED)
    ede = est("ede")
    assert h(ede, [0.0])[0] == pytest.approx(1.0, rel=CLOSED)  # k·t = 1 at IR-Net's start


# ---------------------------------------------------------------------------- the registry
@pytest.fixture
def scratch_registry():
    """Registrations made by a test go to a copy of the registry."""
    with _scratch_registry():
        yield


def test_registering_a_name_twice_raises(scratch_registry):
    core.custom_estimator("golden_twice", lambda x: x * 0 + 1.0)
    with pytest.raises(ValueError, match="'golden_twice' is already registered"):
        core.custom_estimator("golden_twice", lambda x: x * 0 + 2.0)
    with pytest.raises(ValueError, match="'htge' is already registered"):
        core.register_estimator("htge")(dataclasses.dataclass(frozen=True)(
            type("Again", (core.Estimator,), {"derivative": lambda self, x: x})))


def test_registered_custom_estimator_resolves_by_name(scratch_registry):
    e = core.custom_estimator("golden_flat", lambda x: x * 0 + 0.5)
    assert core.get_estimator("golden_flat") == e
    assert core.alpha("golden_flat", Q2) == pytest.approx(0.5, rel=CLOSED)


def test_unknown_name_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown estimator 'htg'; did you mean 'htge'"):
        core.get_estimator("htg")
    with pytest.raises(ValueError, match=r"did you mean .*'swish_sign'"):
        core.get_estimator("swishsign")


def test_unknown_parameter_lists_the_parameters():
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['T'\]; its parameters are"):
        core.get_estimator("qn", T=5.0)


BAD_FLOATS = [0.0, -1.0, math.nan, math.inf]
POSITIVE_PARAMS = [("htge", "t"), ("dsq", "alpha"), ("ede", "t"), ("ede", "k"), ("rbnn", "t"),
                   ("rbnn", "k"), ("swish_sign", "beta"), ("qn", "temperature"),
                   ("qn_binary", "temperature"), ("qn_binary", "beta"), ("daq", "temperature"),
                   ("daq", "sigma"), ("psg", "beta"), ("reste", "o"), ("reste", "t"),
                   ("reste", "interval"), ("fda", "omega"), ("dorefa", "m")]


@pytest.mark.parametrize("value", BAD_FLOATS, ids=["zero", "negative", "nan", "inf"])
@pytest.mark.parametrize(("name", "param"), POSITIVE_PARAMS, ids=[f"{n}.{p}" for n, p in POSITIVE_PARAMS])
def test_bad_parameters_name_the_argument(name, param, value):
    with pytest.raises(ValueError, match=f"`{param}`"):
        core.get_estimator(name, **{param: value})


@pytest.mark.parametrize(("name", "params", "param"),
                         [("dsq", {"alpha": 1.0}, "alpha"), ("psg", {"eps": -0.1}, "eps"),
                          ("psg", {"eps": math.nan}, "eps"), ("round_acos", {"g_scale": 2.0}, "g_scale"),
                          ("round_acos", {"g_scale": math.inf}, "g_scale"), ("reste", {"o": 0.5}, "o"),
                          ("reste", {"interval": 2.0}, "interval"), ("fda", {"n": 1.5}, "n"),
                          ("fda", {"n": -1}, "n"), ("dorefa", {"m": 1.5}, "m"),
                          ("htge", {"t": "sharp"}, "t")])
def test_other_bad_parameters(name, params, param):
    with pytest.raises(ValueError, match=f"`{param}`"):
        core.get_estimator(name, **params)
