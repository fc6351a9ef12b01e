"""Activation fake-quantization: forward on the core grid, backward Q̂′ (any estimator), LSQ's Δ,
ranges (fixed, running, dynamic per tensor / per token, learned), errors naming the layer."""

import copy
import logging

import numpy as np
import pytest
import torch
from array_api_compat import array_namespace
from torch import nn

import stequiv as sq
from stequiv.core import UniformQuantizer, custom_estimator, get_estimator
from stequiv.qat import (
    ActivationConfig,
    activation_quantizers,
    dequantize_activations_,
    quantize_activations_,
)

RTOL = 1e-12


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).double()


def _input(seed=0, shape=(32, 8)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _quantizer(cfg, x):
    """Run ``x`` through a lone quantizer built from ``cfg``; returns (output, quantizer)."""
    model = quantize_activations_(nn.Sequential(nn.Identity()), cfg, lambda m, n: n == "0")
    return model(x), activation_quantizers(model)["0"]


def _core_grid(lo, hi, bits):
    delta = (hi - lo) / (2**bits - 1)
    return UniformQuantizer(delta=delta, offset=lo / delta, lower=0, upper=2**bits - 1)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_forward_is_the_core_quantizer_on_a_fixed_range(bits):
    x = _input() * 2
    out, _ = _quantizer(ActivationConfig(bits=bits, range=(-1.5, 2.0)), x)
    expected = _core_grid(-1.5, 2.0, bits)(x.numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)
    assert len(np.unique(out.numpy())) <= 2**bits


@pytest.mark.parametrize("estimator", ["htge", "dsq", "pwl", "mad", "ste"])
def test_backward_is_the_estimators_derivative_on_the_grid_coordinate(estimator):
    lo, hi, bits = -1.0, 1.5, 3
    x = (_input() * 1.5).requires_grad_()  # values inside and outside the range (the tails)
    up = _input(1)
    out, _ = _quantizer(ActivationConfig(estimator=estimator, bits=bits, range=(lo, hi)), x)
    out.backward(up)
    q = _core_grid(lo, hi, bits)
    est = get_estimator(estimator)
    v = (x.detach().numpy() - lo) / q.delta_array
    expected = up.numpy() * est.gradient(v, 0, 2**bits - 1, lo / float(q.delta_array))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=RTOL, atol=1e-14)


def test_a_user_estimator_acts_on_the_activation():
    mine = custom_estimator("act_bump", _bump, register=False)
    x = _input().requires_grad_()
    out, aq = _quantizer(ActivationConfig(estimator=mine, bits=2, range=(-2.0, 2.0)), x)
    out.sum().backward()
    v = (x.detach() + 2.0) / (4.0 / 3)
    torch.testing.assert_close(x.grad, _bump(v))
    assert aq.estimator is mine


def _bump(v):
    xp = array_namespace(v)
    return 1.5 - (v - xp.floor(v) - 0.5) ** 2


def test_binary_estimator_on_activations_is_sign_with_its_own_slope():
    x = (_input() * 0.5).requires_grad_()
    cfg = ActivationConfig(estimator="approx_sign", bits=1, symmetric=True, range="dynamic")
    out, _ = _quantizer(cfg, x)
    m = x.detach().abs().max()
    torch.testing.assert_close(out, torch.where(x >= 0, m, -m))
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.clamp(2 - 2 * x.detach().abs(), min=0))


def test_per_token_ranges_are_each_tokens_own():
    x = _input(shape=(3, 5, 8)) * torch.arange(1, 6, dtype=torch.float64)[:, None]
    out, _ = _quantizer(ActivationConfig(bits=3, granularity="per-token", range="dynamic"), x)
    lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    torch.testing.assert_close(out.amin(-1, keepdim=True), lo)  # each token's ends are levels
    torch.testing.assert_close(out.amax(-1, keepdim=True), hi)
    expected = lo + (hi - lo) / 7 * torch.round((x - lo) / ((hi - lo) / 7))
    torch.testing.assert_close(out, expected)


def test_running_range_averages_batches_and_is_used_in_eval():
    model = _mlp()
    quantize_activations_(model, ActivationConfig(bits=4, range="running", momentum=0.5))
    aq = activation_quantizers(model)["0"]
    model.eval()
    with pytest.raises(ValueError, match=r"layer '0' was never measured"):
        model(_input())
    model.train()
    a, b = _input(1), _input(2) * 3
    model(a)
    model(b)
    expected = 0.5 * torch.stack([a.min(), a.max()]) + 0.5 * torch.stack([b.min(), b.max()])
    torch.testing.assert_close(aq.running, expected)
    model.eval()
    before = aq.running.clone()
    model(_input(3) * 10)
    assert torch.equal(aq.running, before)
    restored = quantize_activations_(_mlp(), ActivationConfig(bits=4, range="running", momentum=0.5))
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(activation_quantizers(restored)["0"].running, before)


def test_learned_step_has_lsqs_gradient():
    """With the clipped STE (PWL), ∂Q/∂Δ is LSQ's Eq. 3: round(v) − v inside, the clip level
    outside (here z = 0: the range starts at 0), times g = 1/√(N·Q_P)."""
    x0 = torch.rand(16, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cfg = ActivationConfig(estimator="pwl", bits=2, range="learned")
    model = quantize_activations_(nn.Sequential(nn.Identity()), cfg, lambda m, n: n == "0")
    aq = activation_quantizers(model)["0"]
    with torch.no_grad():
        model(x0 - x0.min())  # initialises Δ = (max − 0)/3 and z = 0
    x = 1.3 * _input().abs()
    up = _input(1)
    model(x).backward(up)
    delta = aq.delta.detach().double()
    v = x / delta
    qp = 3
    inside = v <= qp
    lsq = torch.where(inside, torch.round(v) - v, torch.full_like(v, qp))
    g = 1 / np.sqrt(8 * qp)
    torch.testing.assert_close(aq.delta.grad.double(), (up * lsq).sum() * g, rtol=1e-6, atol=1e-9)


def test_quantize_hook_and_to_ste_keep_activation_quantizers(caplog):
    model = _mlp()
    sq.quantize_(model, sq.QuantConfig(estimator="htge", bits=2),
                 activations=ActivationConfig(estimator="htge", bits=4, range=(-3.0, 3.0)))
    assert list(activation_quantizers(model)) == list(sq.quantized_layers(model)) == ["0", "2"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with caplog.at_level(logging.INFO, logger="stequiv"):
        twin, _ = sq.to_ste(model, opt)
    assert "activation quantizers of 0, 2 unchanged" in caplog.text
    kept = activation_quantizers(twin)
    assert [k.estimator for k in kept.values()] == [get_estimator("htge")] * 2
    assert all(k is not activation_quantizers(model)[n] for n, k in kept.items())
    x = _input()
    torch.testing.assert_close(twin(x), model(x))  # E(0) = 0: same forward
    kept["0"].estimator = get_estimator("ste")  # the twin's own copy, not the Q̂-net's
    assert activation_quantizers(model)["0"].estimator == get_estimator("htge")
    dequantize_activations_(model)
    assert not activation_quantizers(model) and not model[0]._forward_pre_hooks
    with pytest.raises(ValueError, match="no activation quantizer"):
        dequantize_activations_(model)


def test_zero_and_non_finite_ranges_name_the_layer():
    model = quantize_activations_(_mlp(), ActivationConfig(bits=4, range="dynamic"))
    with pytest.raises(ValueError, match=r"layer '0', forward call 1: Δ = 0.0; .*zero-width"):
        model(torch.ones(4, 8, dtype=torch.float64))
    bad = _input()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer '0', forward call 2: Δ = nan"):
        model(bad)
    learned = quantize_activations_(_mlp(), ActivationConfig(bits=4, range="learned"))
    learned(_input())
    with torch.no_grad():
        activation_quantizers(learned)["2"].delta.fill_(-0.1)
    with pytest.raises(ValueError, match=r"layer '2', forward call 2: Δ = -0.1.*learned Δ went ≤ 0"):
        learned(_input())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"granularity": "per-token"}, "needs `range='dynamic'`"),
    ({"granularity": "per-row"}, "`granularity` must be one of"),
    ({"range": (1.0, 1.0)}, r"needs lo < hi, got \(1.0, 1.0\)"),
    ({"range": (0.0, float("inf"))}, r"`range\[1\]` must be finite"),
    ({"range": "minmax"}, "`range` must be one of"),
    ({"estimator": "ede"}, "binary estimator .* bits=1, symmetric=True"),
    ({"momentum": 0.0}, r"`momentum` must lie in \(0, 1\]"),
    ({"bits": 0}, "`bits` must be >= 1"),
])
def test_bad_activation_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ActivationConfig(**kwargs)


def test_quantizing_twice_or_nothing_is_refused():
    model = quantize_activations_(_mlp(), ActivationConfig())
    with pytest.raises(ValueError, match="layer '0' is already quantized"):
        quantize_activations_(model, ActivationConfig())
    with pytest.raises(ValueError, match="selected no layer"):
        quantize_activations_(_mlp(), ActivationConfig(), lambda m, n: False)
    assert copy.deepcopy(model)(_input()).shape == (32, 4)
