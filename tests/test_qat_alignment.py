"""alignment compares a model with its twin: models on different grids are refused, naming the field."""

import pytest
import torch
from torch import nn

import stequiv as sq


def _net(bits: int, group_size: int | None = None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    return sq.quantize_(net, sq.QuantConfig(estimator="htge", bits=bits, group_size=group_size))


def test_models_of_other_bit_widths_are_refused():
    with pytest.raises(ValueError, match=r"layer '0' is quantized with lower=-2 in model_a but lower=-8"):
        sq.alignment(_net(2), _net(4))


def test_models_of_other_group_sizes_are_refused():
    with pytest.raises(ValueError, match=r"(axis=0 in model_a but axis=None|group_size=4 in model_a but group_size=None)"):
        sq.alignment(_net(2, group_size=4), _net(2))


def test_a_twin_with_another_estimator_and_delta_is_accepted():
    qnet = _net(2)
    twin, _ = sq.to_ste(qnet, torch.optim.SGD(qnet.parameters(), lr=0.1))
    result = sq.alignment(qnet, twin)
    assert result.ebar < 1e-6 and result.agreement == 1.0
    other = _net(2, seed=1)  # same grid, other weights (and absmax Δ): a number, not an error
    assert sq.alignment(qnet, other, remap=False).agreement < 1.0
