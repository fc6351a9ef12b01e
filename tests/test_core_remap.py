"""The remap machinery: the float32 table path (compiled and NumPy loops), the indices it hands
back for exact recomputation, the tail objects and the shared grid coordinate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stequiv.core as core
from stequiv.core import plan_for
from stequiv.core.internal import (
    BinPlan,
    Integrated,
    MapSpec,
    Translate,
    compiled_kernels,
    exact_map,
    fast_evaluate,
    numba_loops,
    unit_tables,
)

PER_TENSOR = core.UniformQuantizer.symmetric(4, 1.0)
PER_CHANNEL = core.UniformQuantizer.symmetric(3, np.array([0.5, 1.0, 2.0]), channel_axis=1)
TABLED = ["htge", "dsq", "daq", "qn", "round_acos"]


def _weights(q: core.UniformQuantizer) -> np.ndarray:
    """Random weights in and beyond the range, plus every boundary point ±1 float32 ulp."""
    rng = np.random.default_rng(0)
    w = rng.uniform(-2.5, 2.5, (40, 3, 64)).astype(np.float32)
    b = np.broadcast_to(q.boundary_points().T if q.per_channel else q.boundary_points()[:, None],
                        (q.upper - q.lower, 3)).astype(np.float32)
    w[:b.shape[0], :, 0] = np.nextafter(b, np.float32(np.inf))
    w[:b.shape[0], :, 1] = np.nextafter(b, np.float32(-np.inf))
    w[:b.shape[0], :, 2] = b
    return w


def _ulps(a: np.ndarray, b: np.ndarray, q: core.UniformQuantizer) -> np.ndarray:
    """|a - b| in float32 ulps of max(|b|, Δ)."""
    scale = np.maximum(np.abs(b), np.broadcast_to(q.delta_for(b), b.shape)).astype(np.float32)
    return np.abs(a.astype(np.float64) - b) / np.spacing(scale)


@pytest.fixture(params=[True, False], ids=["numba", "numpy"])
def loops(request):
    """Run the table path with the compiled loops, then with the NumPy fallback."""
    if request.param and compiled_kernels() is None:
        pytest.skip("numba is not installed")
    with numba_loops(request.param):
        yield request.param


@pytest.mark.parametrize("q", [PER_TENSOR, PER_CHANNEL], ids=["per-tensor", "per-channel"])
@pytest.mark.parametrize("name", TABLED)
@pytest.mark.parametrize("inverse", [False, True], ids=["M", "M-1"])
def test_table_path_matches_exact_path_and_keeps_bins(loops, q, name, inverse):
    plan = plan_for(name, q)
    table = unit_tables(plan.est)[inverse]
    assert isinstance(plan, BinPlan) and table is not None, "the table path must apply here"
    w = _weights(q)
    fast = core.unremap(name, q, w) if inverse else core.remap(name, q, w)
    exact = exact_map(plan, q, w, inverse)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(q(fast), q(w))
    assert np.max(_ulps(fast, exact, q)) <= 8  # float32 v: M′ (≤ 3.6 for htge) × ½ ulp, twice


@pytest.mark.parametrize("q", [PER_TENSOR, PER_CHANNEL], ids=["per-tensor", "per-channel"])
def test_compiled_and_numpy_loops_agree(q):
    if compiled_kernels() is None:
        pytest.skip("numba is not installed")
    w = _weights(q)
    results = []
    for use in (True, False):
        with numba_loops(use):
            results.append((core.remap("htge", q, w), core.unremap("dsq", q, w)))
    for a, b in zip(*results, strict=True):
        assert np.max(_ulps(a, b, q)) <= 8


@pytest.mark.parametrize("q", [PER_TENSOR, PER_CHANNEL], ids=["per-tensor", "per-channel"])
def test_evaluate_returns_what_it_could_not_place(loops, q):
    """MAD's custom tail is not in the table: every weight beyond the range comes back as an
    index (flat, C order of ``w``), and nothing else but misplaced weights does."""
    plan = plan_for("mad", q)
    table = unit_tables(plan.est)[False]
    w = _weights(q)
    out, redo = fast_evaluate(table, MapSpec.of(plan, False), q, w)
    v = q.to_grid(w)
    beyond = np.flatnonzero((v < q.lower) | (v > q.upper))
    assert set(beyond) <= set(redo.tolist())
    assert np.all(~np.isfinite(out.reshape(-1)[beyond]))
    others = np.setdiff1d(redo, beyond)
    assert np.all(q(out).reshape(-1)[others] != q(w).reshape(-1)[others])
    fixed = core.remap("mad", q, w)
    np.testing.assert_array_equal(q(fixed), q(w))
    np.testing.assert_array_equal(fixed.reshape(-1)[beyond],
                                  exact_map(plan, q, w, False).reshape(-1)[beyond])


def test_tails_invert_their_forward():
    v = np.array([3.5, 4.0, 9.25])
    t = Translate()
    np.testing.assert_array_equal(t.inverse(t.forward(v, 3.0, 2.5), 3.0, 2.5), v)
    mad = plan_for("mad", PER_TENSOR)
    assert isinstance(mad.tail, Integrated) and not mad.tail.translates
    y = mad.tail.forward(v + 4.0, 7.0, 7.0)
    np.testing.assert_allclose(mad.tail.inverse(y, 7.0, 7.0), v + 4.0, rtol=1e-15)
    assert plan_for("htge", PER_TENSOR).tail == Translate()
    assert plan_for("ste", PER_TENSOR).tail is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_coordinate_is_shared_by_numpy_and_torch(dtype):
    q = core.UniformQuantizer(bits=4, delta=0.37, offset=0.5)
    w = np.random.default_rng(3).uniform(-3, 3, 1000).astype(dtype)
    inv = q.inverse_delta_for(w)
    v_np = core.grid_coordinate(w, inv, q.offset)
    v_torch = core.grid_coordinate(torch.from_numpy(w), torch.from_numpy(np.asarray(inv)), q.offset)
    assert v_np.dtype == dtype and v_torch.dtype == torch.from_numpy(w).dtype
    np.testing.assert_array_equal(v_np, q.to_grid(w))
    np.testing.assert_array_equal(v_torch.numpy(), v_np)
