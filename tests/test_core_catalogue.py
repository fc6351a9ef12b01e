"""The declarative estimator protocol: parameters with checks, hooks on the base class, automatic
discovery of estimator modules, and the generated catalogue table of docs/estimators.md."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stequiv.core as core
from stequiv.core.estimators import MODULES
from stequiv.core.internal import catalogue_table, positive_float, update_doc
from stequiv.core.internal import scratch_registry as _scratch_registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "estimators.md"


@pytest.fixture
def scratch_registry():
    with _scratch_registry():
        yield


@dataclasses.dataclass(frozen=True)
class _Flat(core.Estimator):
    """Q̂′ = height: a test estimator declared with one checked parameter."""

    height: float = core.param(2.0, positive_float)

    def derivative(self, x: Any) -> Any:
        return x * 0 + self.height


def test_param_checks_and_converts_in_the_base_post_init():
    assert _Flat(height=3).height == 3.0 and isinstance(_Flat(height=3).height, float)
    with pytest.raises(ValueError, match="`height` must be > 0, got -1"):
        _Flat(height=-1)
    with pytest.raises(ValueError, match="`height` must be finite"):
        core.get_estimator(_Flat(), height=math.inf)  # dataclasses.replace runs the checks too


def test_hooks_are_declared_on_the_base_class():
    flat = _Flat()
    for hook in ("surrogate", "boundary_primitive", "weight_primitive", "tail_derivative",
                 "tail_primitive", "tail_primitive_inverse", "sech2_shape"):
        assert getattr(flat, hook) is None
    assert flat.kinks == () and flat.support == (-np.inf, np.inf) and flat.positive
    assert core.get_estimator("htge", t=3.0).sech2_shape == (1.5, 3.0)


def test_parameter_dependent_kinks_and_support():
    assert core.get_estimator("reste", t=2.0).support == (-2.0, 2.0)
    assert core.get_estimator("reste", t=2.0, interval=0.5).kinks == (-2.0, -0.5, 0.5, 2.0)
    assert core.get_estimator("psg", eps=0.1).positive and not core.get_estimator("psg").positive


def test_ste_pwl_mad_share_one_identity_body():
    from stequiv.core.internal import IdentityShape

    for name in ("ste", "pwl", "mad"):
        est = core.get_estimator(name)
        assert isinstance(est, IdentityShape)
        assert type(est).derivative is IdentityShape.derivative


def test_every_estimator_module_is_discovered():
    files = sorted(p.stem for p in Path(core.estimators.__file__).parent.glob("_*.py")
                   if p.stem != "__init__")
    assert list(MODULES) == files


def test_htge_sharpness_to_t():
    htge = core.get_estimator("htge")
    assert htge.t_from_sharpness(5.5, 2) == pytest.approx(11.0 / 3.0, rel=1e-15)
    assert htge.t_from_sharpness(5.5, 4) == pytest.approx(11.0 / 15.0, rel=1e-15)
    with pytest.raises(ValueError, match="`sharpness` must be > 0"):
        htge.t_from_sharpness(0.0, 2)
    with pytest.raises(ValueError, match="`bits` must be >= 1"):
        htge.t_from_sharpness(5.5, 0)


def test_catalogue_in_the_docs_is_current():
    assert update_doc(DOC, write=False), (
        "docs/estimators.md's catalogue table is stale: run "
        "`python -m stequiv.core._catalogue docs/estimators.md`")


def test_catalogue_check_fails_for_a_new_estimator(scratch_registry, tmp_path):
    doc = tmp_path / "estimators.md"
    doc.write_text(DOC.read_text(encoding="utf-8"), encoding="utf-8")
    new = core.custom_estimator("catalogue_new", lambda x: x * 0 + 1.0)
    assert "`catalogue_new`" not in catalogue_table()  # a program's own estimator
    assert update_doc(doc, write=False)
    type(new).__module__ = "stequiv.core.estimators._catalogue_new"  # as if a new catalogue file
    assert "`catalogue_new`" in catalogue_table()
    assert not update_doc(doc, write=True)
    assert update_doc(doc, write=False)
