"""Fake-quantization on torch models: forward is the core's Q, backward the core's Q̂′."""

from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import stequiv as sq
from stequiv.core import NoRemapError, UniformQuantizer, get_estimator, list_estimators
from stequiv.qat import WeightFakeQuant

MULTI = UniformQuantizer.symmetric(2, 1.0)


def _grid_points(q: UniformQuantizer) -> np.ndarray:
    """0, every boundary point, the clip edges, and points inside and outside the range."""
    lo, hi = (float(x) for x in q.representable_range())
    pts = [0.0, lo, hi, lo - 0.3, hi + 0.3, lo - 2.0, hi + 2.0]
    pts += [float(b) for b in q.boundary_points().ravel()]
    pts += list(np.linspace(lo - 0.5, hi + 0.5, 37))
    return np.array(pts)


def _quantizer_for(est):
    return sq.BinaryQuantizer() if est.kind == "binary" else MULTI


@pytest.mark.parametrize("name", list_estimators())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autograd_gradient_is_core_derivative_times_upstream(name, dtype):
    est = get_estimator(name)
    q = _quantizer_for(est)
    w_np = _grid_points(q)
    fq = WeightFakeQuant(est, q, torch.Size([w_np.size]))
    w = torch.tensor(w_np, dtype=dtype, requires_grad=True)
    upstream = torch.linspace(-2.0, 3.0, w_np.size, dtype=dtype)
    out = fq(w)
    np.testing.assert_array_equal(out.detach().numpy(), q(w_np.astype(w.detach().numpy().dtype)))
    out.backward(upstream)
    w_typed = w.detach().numpy()  # the same float32/float64 values the torch path sees
    x = w_typed if est.units == "weight" else q.to_grid(w_typed)
    expected = np.asarray(est.gradient(x, q.lower, q.upper, q.offset)) * upstream.double().numpy()
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(w.grad.double().numpy(), expected, rtol=rtol, atol=rtol)


def test_boundary_and_clip_edge_conventions():
    # HTGE: at a boundary its maximum t/2, at the clip edges (outer levels) the in-range value,
    # beyond them zero (Eq. 1's clip). The STE is 1 everywhere.
    q = UniformQuantizer.symmetric(2, 1.5)  # Δ = 1: boundaries -1, 0, 1; edges ±1.5
    fq = WeightFakeQuant(get_estimator("htge", t=4.0), q, torch.Size([5]))
    w = torch.tensor([0.0, 1.0, 1.5, 1.5000001, -1.6], dtype=torch.float64, requires_grad=True)
    fq(w).sum().backward()
    sech2_half_t = 1 / np.cosh(2.0) ** 2
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0, 2.0 * sech2_half_t, 0.0, 0.0])



class _CountingHTGE(type(get_estimator("htge"))):
    """HTGE that records each evaluation of its derivative."""

    calls: ClassVar[list[int]] = []

    def derivative(self, x):
        self.calls.append(int(x.size if isinstance(x, np.ndarray) else x.numel()))
        return super().derivative(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_q_hat_prime_is_evaluated_by_the_forward_once(dtype):
    # Q̂′ depends on w alone: the forward evaluates it (over v, on the NumPy path) and the backward
    # only multiplies, so a retained graph's second backward evaluates nothing and gets the same
    # gradient
    est = _CountingHTGE()
    fq = WeightFakeQuant(est, MULTI, torch.Size([4, 8]))
    w = (torch.linspace(-1.7, 1.6, 32, dtype=dtype) ** 3).reshape(4, 8).requires_grad_()
    upstream = torch.linspace(-2.0, 3.0, 32, dtype=dtype).reshape(4, 8)
    fq(w)  # the first use probes the formula's kind
    est.calls.clear()
    out = fq(w)
    assert est.calls == [32]
    out.backward(upstream, retain_graph=True)
    first, w.grad = w.grad, None
    out.backward(upstream)
    assert est.calls == [32]
    assert torch.equal(w.grad, first)


@pytest.mark.parametrize("name", [n for n in list_estimators() if get_estimator(n).sech2_shape])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eager_cpu_gradient_is_the_core_gradient_bit_for_bit(name, dtype):
    # the eager CPU path evaluates A sech²(k e) in one buffer: the same numbers as the core's
    # gradient, at the levels, boundaries, clip edges, beyond them, and at NaN and ±inf
    est = get_estimator(name)
    q = _quantizer_for(est)
    v = np.concatenate([q.to_grid(_grid_points(q)), [np.nan, np.inf, -np.inf, 1e30]])
    x = torch.tensor(v, dtype=dtype)
    upstream = torch.linspace(-2.0, 3.0, v.size, dtype=dtype)
    fq = WeightFakeQuant(est, q, torch.Size([v.size]))
    with torch.no_grad():
        got = fq.gradient(x, upstream).numpy()
    with np.errstate(invalid="ignore"):
        core = np.asarray(est.gradient(x.numpy(), q.lower, q.upper, q.offset)) * upstream.numpy()
    assert got.dtype == core.dtype
    np.testing.assert_array_equal(got, core)

def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def test_quantize_keeps_latent_parameters_and_optimizers_work():
    model = _mlp()
    params_before = [id(p) for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sq.quantize_(model, sq.QuantConfig(estimator="htge", bits=2))
    assert {id(p) for p in model.parameters()} == set(params_before)  # same Parameter objects
    x = torch.randn(4, 6)
    before = sq.latent_weight(model, "0").detach().clone()
    model(x).sum().backward()
    opt.step()
    assert not torch.equal(before, sq.latent_weight(model, "0"))
    assert set(sq.quantized_layers(model)) == {"0", "2"}
    state = model.state_dict()
    assert "0.parametrizations.weight.original" in state


def test_quantized_forward_uses_quantized_weights():
    model = sq.quantize_(_mlp(), sq.QuantConfig(bits=2))
    w = sq.latent_weight(model, "0")
    fq = sq.quantized_layers(model)["0"]
    q = fq.quantizer()
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), q(w.detach().numpy()))


def test_per_channel_delta_and_filter_and_dequantize():
    model = _mlp()
    cfg = sq.QuantConfig(bits=3, per_channel=True)
    sq.quantize_(model, cfg, filter_fn=lambda m, n: n == "0")
    assert list(sq.quantized_layers(model)) == ["0"]
    fq = sq.quantized_layers(model)["0"]
    assert fq.delta.shape == (5, 1)
    w = sq.latent_weight(model, "0").detach().clone()
    q_w = model[0].weight.detach().clone()
    sq.dequantize_(model, weights="quantized")
    assert torch.equal(model[0].weight.detach(), q_w)
    model2 = sq.quantize_(_mlp(), cfg, filter_fn=lambda m, n: n == "0")
    sq.dequantize_(model2)
    assert torch.equal(model2[0].weight.detach(), w)


def test_per_layer_configs_by_name():
    model = sq.quantize_(_mlp(), {"0": sq.QuantConfig(estimator="dsq"), "2": None})
    assert list(sq.quantized_layers(model)) == ["0"]
    assert sq.quantized_layers(model)["0"].estimator.name == "dsq"


def test_binary_quantization_with_a_binary_estimator():
    model = sq.quantize_(_mlp(), sq.QuantConfig(estimator="ede", bits=1, scale=1.0))
    assert set(torch.unique(model[0].weight.detach()).tolist()) <= {-1.0, 1.0}


def test_bad_input_errors():
    with pytest.raises(ValueError, match="selected no layer"):
        sq.quantize_(nn.Sequential(nn.ReLU()), sq.QuantConfig())
    model = sq.quantize_(_mlp(), sq.QuantConfig())
    with pytest.raises(ValueError, match="already quantized"):
        sq.quantize_(model, sq.QuantConfig())
    with pytest.raises(ValueError, match="`scale` must be one of"):
        sq.QuantConfig(scale="max")
    with pytest.raises(ValueError, match="unknown QuantConfig key"):
        sq.QuantConfig.from_dict({"estimator": "ste", "bitz": 2})
    with pytest.raises(ValueError, match="unknown estimator"):
        sq.QuantConfig(estimator="htgee")
    cfg = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0})
    assert sq.QuantConfig.from_dict(cfg.to_dict()) == cfg


def test_no_remap_estimator_is_refused_by_to_ste():
    est = sq.custom_estimator("zero-at-level-qat", lambda x: abs(x - np.round(x)) if isinstance(x, np.ndarray) else (x - torch.round(x)).abs(), register=False)
    model = sq.quantize_(_mlp(), sq.QuantConfig(estimator=est))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"layer .0.*zero or not finite"):
        sq.to_ste(model, opt)
    assert issubclass(NoRemapError, ValueError)
