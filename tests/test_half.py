"""Half precision end to end: float16/bfloat16 quantized models train eagerly and compiled, with
Δ exact (float64 buffers), the gradient in the weight's dtype, and autocast around the layers.

Tolerances: Q̂′·g is evaluated in float32 and rounded once to the weight's dtype, so it is within
half an ulp of the float64 value at the same grid coordinate: 2⁻¹¹ relative (float16), 2⁻⁸
(bfloat16). Compiled and eager agree to one ulp of the dtype (the float32 intermediate may differ
in its last bits between NumPy-free eager torch and inductor).
"""

import numpy as np
import pytest
import torch
from torch import nn

import stequiv as sq
from stequiv.core import get_estimator, list_estimators
from stequiv.qat import WeightFakeQuant

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's, while tracing

HALF_ULP = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
MULTI = sq.UniformQuantizer.symmetric(2, 1.0)


def _quantizer_for(est):
    return sq.BinaryQuantizer() if est.kind == "binary" else MULTI


@pytest.mark.parametrize("name", list_estimators())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_forward_is_the_core_q_and_backward_is_q_hat_prime_times_g(name, dtype):
    est = get_estimator(name)
    q = _quantizer_for(est)
    w = torch.linspace(-1.6, 1.6, 41).to(dtype).requires_grad_()
    upstream = torch.linspace(-2.0, 3.0, 41).to(dtype)
    out = WeightFakeQuant(est, q, w.shape)(w)
    out.backward(upstream)
    assert out.dtype == w.grad.dtype == dtype
    w32 = w.detach().float().numpy()  # the half values, exactly
    # The forward runs in the weight's dtype as the core does; for these weights (none within a
    # half-precision ulp of a boundary) the levels are the float32 core's, rounded to the dtype.
    expected_q = torch.from_numpy(q(w32)).to(dtype)
    assert torch.equal(out.detach(), expected_q)
    v = w.detach() * WeightFakeQuant(est, q, w.shape).inv_delta.to(dtype) - q.offset
    x = w32 if est.units == "weight" else v.float().numpy()
    expected = est.gradient(x.astype(np.float64), q.lower, q.upper, q.offset) * upstream.double().numpy()
    np.testing.assert_allclose(w.grad.double().numpy(), expected, rtol=HALF_ULP[dtype], atol=1e-30)


def test_delta_stays_exact_under_a_dtype_cast():
    model = sq.quantize_(nn.Sequential(nn.Linear(8, 4)), sq.QuantConfig(estimator="htge"))
    delta = sq.quantized_layers(model)["0"].delta.clone()
    model.to(torch.bfloat16)
    fq = sq.quantized_layers(model)["0"]
    assert fq.delta.dtype == torch.float64 and torch.equal(fq.delta, delta)
    assert model[0].weight.dtype == torch.bfloat16


def _convnet(dtype):
    net = sq.models.ConvNet(generator=torch.Generator().manual_seed(0))
    return sq.quantize_(net, sq.QuantConfig(estimator="htge", bits=2)).to(dtype)


def _step(net, x, y):
    return nn.functional.cross_entropy(net(x).float(), y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_convnet_trains_eagerly_and_compiled_alike(dtype):
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)).to(dtype)
    y = torch.arange(8)
    eager, compiled = _convnet(dtype), _convnet(dtype)
    _step(eager, x, y).backward()
    torch.compile(_step, backend="aot_eager", fullgraph=True)(compiled, x, y).backward()
    for name, p in eager.named_parameters():
        g = compiled.get_parameter(name).grad
        assert g.dtype == p.grad.dtype == dtype and torch.isfinite(g).all(), name
        torch.testing.assert_close(g.float(), p.grad.float(), rtol=ULP[dtype],
                                   atol=ULP[dtype] * p.grad.float().abs().max().item())


def test_autocast_around_quantized_layers():
    """float32 latent weights, bfloat16 autocast: Q(w) in float32, the convs in bfloat16, the
    weight gradients float32; compiled as eager."""
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.arange(8)
    nets = [_convnet(torch.float32) for _ in range(2)]

    def step(net):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
            assert out.dtype == torch.bfloat16
            return nn.functional.cross_entropy(out.float(), y)

    step(nets[0]).backward()
    torch.compile(step, backend="aot_eager", fullgraph=True)(nets[1]).backward()
    for name, p in nets[0].named_parameters():
        g = nets[1].get_parameter(name).grad
        assert p.grad.dtype == g.dtype == torch.float32, name
        torch.testing.assert_close(g, p.grad, rtol=ULP[torch.bfloat16],
                                   atol=ULP[torch.bfloat16] * p.grad.abs().max().item())
