"""Theorems 5.1, D.3 and 5.2 checked exactly on known gradient streams (stequiv.theory)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stequiv.theory import (
    bound_check,
    check_estimator,
    checkable_estimators,
    dsq_appendix_h,
    setting_for,
    simulate,
)
from stequiv.theory.internal import Tally, runs

FAST = {"steps": 60, "etas": (1e-2, 1e-1)}


def test_theory_imports_without_torch():
    code = "import sys, stequiv.theory; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_catalogue_estimators_with_an_m_are_checked():
    names = checkable_estimators()
    assert {"htge", "dsq", "qn", "mad", "ede", "ste"} <= set(names)
    assert not {"psg", "dorefa", "swish_sign", "approx_sign"} & set(names)  # no M / L- = 0


@pytest.mark.parametrize("name", ["htge", "dsq", "qn", "ede", "long_tailed"])
def test_no_violations_and_every_step_checked(name):
    rows = check_estimator(name, **FAST, dims=(1, 3))
    assert {r["optimizer"] for r in rows} == {"sgd", "momentum", "adam"}
    assert all(r["checks"] > 0 for r in rows)
    assert sum(r["violations"] for r in rows) == 0, rows
    assert all(not r["tightness_min"] < 1.0 for r in rows)  # bound/actual >= 1 where E grew


def test_dropping_the_convexity_term_is_caught():
    """A bound without Eq. 6's O(η²) term must fail on a stream with no gradient error."""
    setting = setting_for("htge")
    eta, stream, w0 = runs(setting, 1, 0, 60, (1e-1,))
    rec = simulate(setting, "sgd", eta, stream, w0)
    grad_only = rec.error[:-1] + rec.eta * setting.alpha * np.abs(rec.g1 - rec.g2)
    assert Tally.of(rec, grad_only).violations > 0


def test_dsq_printed_appendix_h_constant_fails_and_exact_holds():
    case = dsq_appendix_h(0.25, steps=200)
    assert case["printed_LpLplus_over_Lminus2"] == pytest.approx(12 / 7)
    assert case["exact_LpLplus_over_Lminus2"] == pytest.approx(7.83, abs=0.01)
    assert case["with_printed_constant"]["violations"] > 0
    assert case["with_exact_constant"]["violations"] == 0


def test_bound_check_report_shape():
    report = bound_check(["mad", "htge"], **FAST)
    assert report["checks"] == sum(r["checks"] for r in report["rows"]) > 0
    assert report["violations"] == 0
    assert len(report["dsq_appendix_h"]) == 2
