"""Appendix H constants (the paper's own numbers), Appendix G twins, and the torch-free core."""

import subprocess
import sys

import numpy as np
import pytest

import stequiv as sq
from stequiv.core import NoRemapError, UniformQuantizer
from stequiv.core.internal import integrate_reciprocal

PAPER_TOL = 0.005  # the paper prints two decimals


@pytest.mark.parametrize(("k", "bits", "paper"), [(8, 8, 0.25), (6, 4, 2.66), (4, 3, 2.82), (2, 2, 1.77)])
def test_appendix_h_tanh_coefficients_match_the_paper(k, bits, paper):
    # Q̂′(w) = k·sech²(k·w) on bins of width Δ = 2/(2^b - 1): HTGE with t = kΔ in bin units
    # (the coefficient is invariant to the constant factor between the two normalisations).
    delta = 2.0 / (2**bits - 1)
    c = sq.constants(sq.get_estimator("htge", t=k * delta), UniformQuantizer(bits=bits, delta=delta))
    assert c.coefficient == pytest.approx(paper, abs=PAPER_TOL)
    assert c.L_plus == pytest.approx(k * delta / 2)


def test_appendix_h_numeric_path_agrees_with_closed_form():
    q = UniformQuantizer(bits=2, delta=2 / 3)
    t = 4 / 3
    numeric = sq.custom_estimator(
        "sech2-numeric", lambda x: 0.5 * t / np.cosh(t * (x - np.floor(x) - 0.5)) ** 2,
        kinks=(0.0,), register=False,
    )
    exact = sq.constants(sq.get_estimator("htge", t=t), q)
    approx = sq.constants(numeric, q)
    assert approx.L_minus == pytest.approx(exact.L_minus, rel=1e-12)
    assert approx.L_plus == pytest.approx(exact.L_plus, rel=1e-12)
    assert approx.L_prime == pytest.approx(exact.L_prime, rel=1e-6)


@pytest.mark.parametrize(("a", "paper_bound"), [(0.25, 1.71), (0.11, 4.28)])
def test_dsq_paper_bound_is_its_printed_expression_but_the_exact_value_exceeds_it(a, paper_bound):
    # Appendix H prints (1-a)/(2a-a²) as a bound on L′L₊/L₋²; that expression drops a factor 2k
    # (k the steepness) and evaluates |Q̂″| at the bin edge instead of at its maximiser. The exact
    # value (Δ = 1) is larger: recorded here so that a change in either is noticed.
    assert (1 - a) / (2 * a - a * a) == pytest.approx(paper_bound, abs=PAPER_TOL)
    est = sq.get_estimator("dsq", alpha=a)
    c = sq.constants(est, UniformQuantizer(bits=2, delta=1.0))
    exact = 2 * c.coefficient
    k = np.log(2 / a - 1)
    assert exact == pytest.approx(2 * k * (2 / (3 * np.sqrt(3))) / (2 * a - a * a) ** 2, rel=1e-9)
    assert exact > paper_bound


def test_twin_of_vanishing_estimator_is_pwl_and_of_positive_is_ste():
    q = UniformQuantizer.symmetric(2, 1.0)
    assert sq.ste_twin("ste", q).name == "ste"
    twin = sq.ste_twin("htge", q, "sgd")
    assert twin.name == "pwl"  # HTGE is symmetric, so [M(w_min), M(w_max)] = [w_min, w_max]
    assert sq.ste_twin("dsq", q, "adam").name == "pwl"
    with pytest.raises(ValueError, match="`optimizer` must be 'sgd' or 'adam'"):
        sq.ste_twin("htge", q, "lbfgs")


def test_estimator_that_is_zero_inside_a_bin_has_no_map():
    q = UniformQuantizer.symmetric(2, 1.0)
    psg_like = sq.custom_estimator("zero-at-levels", lambda x: np.abs(x - np.round(x)), register=False)
    with pytest.raises(NoRemapError, match="zero or not finite"):
        sq.alpha(psg_like, q)
    negative = sq.custom_estimator("negative", lambda x: np.cos(2 * np.pi * x), register=False)
    with pytest.raises(NoRemapError, match="negative"):
        sq.remap(negative, q, np.zeros(3))


def test_core_imports_without_torch():
    code = "import sys, stequiv, stequiv.core; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("h", "a", "b", "kinks", "exact"), [
    (lambda x: 1 + 0.5 * np.cos(2 * np.pi * x), 0.0, 1.0, (), 2 / np.sqrt(3)),
    (lambda x: 1 + np.abs(x - 0.3), 0.0, 1.0, (0.3,), np.log(1.3) + np.log(1.7)),
    # 1/h peaks at 1e6 over a width of 1e-3: many rounds of bisection around 0
    (lambda x: 1e-6 + x**2, -1.0, 1.0, (), 2e3 * np.arctan(1e3)),
], ids=["smooth", "kink", "peaked"])
def test_integrate_reciprocal_matches_closed_forms(h, a, b, kinks, exact):
    value, error = integrate_reciprocal(h, a, b, kinks)
    assert value == pytest.approx(exact, rel=1e-13)
    assert error <= 1e-12 * exact


def test_integrate_reciprocal_refuses_a_divergent_integral():
    with pytest.raises(ArithmeticError, match="did not converge"):
        integrate_reciprocal(lambda x: np.abs(x - 0.5), 0.0, 1.0)
