"""Half precision: Δ kept exactly, M and M⁻¹ never move a float16/bfloat16 weight across a bin."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from stequiv.core import NoRemapError, get_estimator, list_estimators, plan_for
from stequiv.qat import WeightFakeQuant
from stequiv.qat.internal import weight_map

HALF = [torch.float16, torch.bfloat16]
MULTI = sq.UniformQuantizer.symmetric(2, 1.0)


def _every_value(dtype, lo, hi):
    """Every finite value of ``dtype`` in [lo, hi]."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype)
    wide = values.double()  # (a Python bound would be rounded to dtype before comparing)
    keep = torch.isfinite(wide) & (wide >= lo) & (wide <= hi)
    return values[keep]


def _with_map():
    for name in list_estimators():
        est = get_estimator(name)
        q = sq.BinaryQuantizer() if est.kind == "binary" else MULTI
        try:
            plan_for(est, q)
        except NoRemapError:
            continue
        yield name


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", list(_with_map()))
def test_no_bin_change_over_every_half_value(name, dtype):
    est = get_estimator(name)
    q = sq.BinaryQuantizer() if est.kind == "binary" else MULTI
    lo, hi = (2 * float(x) for x in q.representable_range())
    if est.units == "weight":  # M is finite only strictly inside a finite support
        lo, hi = max(lo, np.nextafter(est.support[0], 0)), min(hi, np.nextafter(est.support[1], 0))
    w = _every_value(dtype, lo, hi)
    assert w.numel() > 10_000
    fq = WeightFakeQuant(est, q, w.shape)
    codes = fq.code(w)
    for fn in (sq.remap, sq.unremap):
        mapped = weight_map(fn, est, fq)(w)
        assert mapped.dtype == dtype
        changed = int((fq.code(mapped) != codes).sum())
        assert changed == 0, f"{fn.__name__}: {changed} of {w.numel()} values changed bin"


@pytest.mark.parametrize("dtype", HALF)
def test_delta_stays_float64_under_half_casts(dtype):
    model = sq.quantize_(nn.Sequential(nn.Linear(7, 5)), sq.QuantConfig(bits=3, group_size=7))
    fq = sq.quantized_layers(model)["0"]
    exact = fq.delta.clone()
    model.to(dtype)
    assert fq.delta.dtype == torch.float64 and torch.equal(fq.delta, exact)
    assert sq.latent_weight(model, "0").dtype == dtype
    model.half().float().bfloat16().double()
    assert torch.equal(fq.delta, exact) and torch.equal(fq.inv_delta, 1.0 / exact)


def _step(model, opt, x, y):
    opt.zero_grad()
    F.mse_loss(model(x).float(), y).backward()
    opt.step()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_to_ste_and_from_ste_in_half_precision(dtype, opt_name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 8))
    cfg = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, group_size=16)
    sq.quantize_(model, cfg)
    model.to(dtype)
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4))  # 1e-8 is 0 in float16
    x, y = torch.randn(16, 32).to(dtype), torch.randn(16, 8)
    for _ in range(2):
        _step(model, opt, x, y)
    remap = opt_name == "sgd"
    twin, twin_opt = sq.to_ste(model, opt)
    result = sq.alignment(model, twin, remap=remap, probe=x)
    assert result.agreement == 1.0 and result.output_difference == 0.0
    back, back_opt = sq.from_ste(twin, cfg.est, twin_opt)
    assert sq.alignment(model, back, remap=False, probe=x).agreement == 1.0
    _step(twin, twin_opt, x, y)  # the converted optimizer steps in half precision
    _step(back, back_opt, x, y)
    for name in sq.quantized_layers(twin):
        assert sq.latent_weight(twin, name).dtype == dtype
        state = twin_opt.state[sq.latent_weight(twin, name)]
        assert all(bool(torch.isfinite(v).all()) for v in state.values() if torch.is_tensor(v))


def test_half_forward_is_computed_in_the_weight_dtype():
    torch.manual_seed(0)
    w = torch.randn(4, 8).half()
    fq = WeightFakeQuant(get_estimator("ste"), MULTI, w.shape)
    inv = torch.tensor(1.0 / MULTI.delta_array, dtype=torch.float64).half()
    v = torch.round(torch.clamp(w * inv - 0.5, MULTI.lower, MULTI.upper))
    expected = (v + 0.5) * torch.tensor(MULTI.delta_array).half()
    assert torch.equal(fq(w), expected)
    np.testing.assert_array_equal(fq.code(w).numpy(), v.numpy())
