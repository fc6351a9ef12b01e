"""torch.compile of quantized models: no graph break, the eager gradients, any user formula.

Tolerances: the compiled backward evaluates the same formula by the same torch operations, but
inductor may fuse and reorder them (e.g. contract a*b+c): a few float32 ulps, 1e-6 relative.
"""

import math

import numpy as np
import pytest
import torch
from array_api_compat import array_namespace
from torch import nn

import stequiv as sq
from stequiv.core import get_estimator, list_estimators
from stequiv.qat.internal import formula_of

# torch's own code warns while dynamo and inductor trace (a Function instantiated inside dynamo,
# torch.jit.script_method deprecated); not ours, and not about our use.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COMPILED_RTOL = 1e-6


def _array_api(x):
    xp = array_namespace(x)
    return 1.0 + 0.25 * xp.cos(2 * math.pi * x)


def _torch_only(x):
    return 1.0 + 0.25 * torch.cos(2 * math.pi * x)


def _numpy_only(x):
    return 1.0 + 0.25 * np.cos(2 * np.pi * x)


CUSTOM = {name: sq.custom_estimator(f"compile-{name}", fn, register=False)
          for name, fn in (("array-api", _array_api), ("torch", _torch_only), ("numpy", _numpy_only))}


def _layer_configs() -> dict[str, sq.QuantConfig]:
    """One Linear layer per estimator: every catalogue estimator and the three custom ones."""
    ests = {name: get_estimator(name) for name in list_estimators()} | CUSTOM
    return {name: sq.QuantConfig(estimator=est, bits=1 if est.kind == "binary" else 2,
                                 scale=1.0 if est.kind == "binary" else "absmax")
            for name, est in ests.items()}


class _Tower(nn.Module):
    """A Linear layer per estimator, each fed the same input; the outputs summed."""

    def __init__(self, names: list[str]):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleDict({n.replace("-", "_"): nn.Linear(8, 4) for n in names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(layer(x) for layer in self.layers.values())


def _tower(dtype=torch.float32) -> _Tower:
    configs = _layer_configs()
    model = _Tower(list(configs)).to(dtype)
    by_layer = {f"layers.{n.replace('-', '_')}": cfg for n, cfg in configs.items()}
    return sq.quantize_(model, by_layer)


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (model(x) ** 2).sum()


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_formula_of_tells_what_each_derivative_accepts():
    assert {name: formula_of(est) for name, est in CUSTOM.items()} == {
        "array-api": "array-api", "torch": "torch", "numpy": "numpy"}
    assert {formula_of(get_estimator(n)) for n in list_estimators()} == {"array-api"}
    broken = sq.custom_estimator("compile-broken", lambda x: "slope", register=False)
    with pytest.raises(TypeError, match=r"compile-broken.*must accept a NumPy array or a torch"):
        formula_of(broken)


@pytest.mark.parametrize("name", list(CUSTOM))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_custom_formulas_train_eagerly(name, dtype):
    """A torch-written derivative used to crash on the CPU NumPy path (cos() got an ndarray)."""
    est = CUSTOM[name]
    q = sq.UniformQuantizer.symmetric(2, 1.0)
    w = torch.linspace(-1.4, 1.4, 29, dtype=dtype, requires_grad=True)
    upstream = torch.linspace(-1.0, 2.0, 29, dtype=dtype)
    sq.qat.WeightFakeQuant(est, q, w.shape)(w).backward(upstream)
    v = q.to_grid(w.detach().double().numpy() if dtype == torch.float64
                  else w.detach().float().numpy()).astype(np.float64)
    expected = (1.0 + 0.25 * np.cos(2 * np.pi * v)) * upstream.double().numpy()
    tol = {torch.float32: 1e-6, torch.float64: 1e-12, torch.bfloat16: 2**-7}[dtype]
    np.testing.assert_allclose(w.grad.double().numpy(), expected, rtol=tol, atol=tol)


def test_every_estimator_compiles_with_zero_graph_breaks():
    model, x = _tower(), torch.randn(16, 8)
    explanation = torch._dynamo.explain(_loss)(model, x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_gradients_are_the_eager_ones():
    """fullgraph=True (a graph break is an error), every estimator's backward traced by dynamo
    and run by aot_eager (no inductor). Eager float32 evaluates Q̂′ by NumPy, compiled by torch:
    their transcendental functions differ in the last bits."""
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    eager, compiled = _tower(), _tower()
    _loss(eager, x).backward()
    torch.compile(_loss, backend="aot_eager", fullgraph=True)(compiled, x).backward()
    for name, g in _grads(eager).items():
        torch.testing.assert_close(compiled.get_parameter(name).grad, g, rtol=COMPILED_RTOL,
                                   atol=COMPILED_RTOL * g.abs().max().item())


@pytest.mark.slow  # a C++ compile by inductor: ~30 s idle, minutes on a shared machine
def test_inductor_fuses_the_htge_backward_and_matches_eager():
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.arange(64) % 10
    nets = []
    for _ in range(2):
        net = sq.models.ConvNet(generator=torch.Generator().manual_seed(0))
        nets.append(sq.quantize_(net, sq.QuantConfig(estimator="htge", bits=2)))

    def step(net):
        return nn.functional.cross_entropy(net(x), y)

    step(nets[0]).backward()
    torch.compile(step, fullgraph=True)(nets[1]).backward()
    for name, g in _grads(nets[0]).items():
        torch.testing.assert_close(nets[1].get_parameter(name).grad, g,
                                   rtol=COMPILED_RTOL, atol=COMPILED_RTOL * g.abs().max().item())
