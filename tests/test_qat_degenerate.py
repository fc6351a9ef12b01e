"""The degenerate-comparison measure: ρ = max Q̂′ / min Q̂′ over the initial weights."""

import math

import pytest
import torch

import stequiv as sq
from stequiv.models import ConvNet
from stequiv.qat import EstimatorSchedule
from stequiv.qat.internal import NEARLY_STE, slope_spread


def _convnet(estimator, bits):
    model = ConvNet(generator=torch.Generator().manual_seed(0))
    cfg = sq.QuantConfig(estimator=estimator, bits=bits, scale="init-bound")
    return sq.quantize_(model, cfg, filter_fn=lambda m, n: n.startswith("conv"))


def test_ede_at_its_initial_t_is_nearly_the_ste():
    """The issue's case: `--set bits=1 --set estimator=ede` (t = 0.1, k = 10)."""
    model = _convnet("ede", 1)
    w_max = max(float(sq.latent_weight(model, n).detach().abs().max()) for n in ("conv1", "conv2", "conv3"))
    rho = slope_spread(model)
    assert rho == pytest.approx(math.cosh(0.1 * w_max) ** 2, rel=1e-6)
    assert rho <= NEARLY_STE


def test_real_estimators_and_schedules_are_not():
    assert slope_spread(_convnet({"name": "htge", "t": 3.67}, 2)) > 10
    model = _convnet("ede", 1)
    assert slope_spread(model, [s for _, s in EstimatorSchedule.ir_net(100, 5).stages]) > NEARLY_STE
    assert slope_spread(_convnet("ste", 2)) == 1.0
    with pytest.raises(ValueError, match="no quantized layer"):
        slope_spread(torch.nn.Linear(2, 2))
