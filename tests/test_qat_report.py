"""quantize_ says what it did not do: weights left float (and why), group-size fallbacks, exact
zeros on a grid without a zero level; strict=True refuses to leave weights float."""

import logging

import pytest
import torch
from torch import nn

import stequiv as sq


class Experts(nn.Module):
    """A Mixture-of-Experts block as transformers 5 stores it: 3-D expert weights."""

    def __init__(self, experts=4, dim=32, hidden=64):
        super().__init__()
        self.router = nn.Linear(dim, experts)
        self.gate_up = nn.Parameter(torch.randn(experts, 2 * hidden, dim))
        self.down = nn.Parameter(torch.randn(experts, dim, hidden))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(40, 32, padding_idx=0)
        self.moe = Experts()
        self.lstm = nn.LSTM(32, 32)
        self.head = nn.Linear(32, 40)


def test_weights_left_float_are_reported_with_the_reason(caplog):
    torch.manual_seed(0)
    model = Block()
    with caplog.at_level(logging.WARNING, logger="stequiv"):
        sq.quantize_(model, sq.QuantConfig(estimator="htge", bits=4))
    report = sq.quantization_report(model)
    assert set(report.quantized) == {"embed", "moe.router", "head"}
    assert set(report.left_float) == {"moe.gate_up", "moe.down", "lstm.weight_ih_l0",
                                      "lstm.weight_hh_l0"}
    assert report.left_float["moe.gate_up"] == (
        "Experts.gate_up: matches layer kind '3-D expert weights (E, out, in)', which is "
        "quantized only when filter_fn selects it")
    router = nn.Sequential(nn.Linear(4, 4))
    router.register_parameter("table", nn.Parameter(torch.randn(64, 32)))
    sq.quantize_(router, sq.QuantConfig())
    assert "Sequential.table: not a registered layer kind" in sq.quantization_report(router).left_float["table"]
    assert "only when filter_fn selects it" in report.left_float["lstm.weight_hh_l0"]
    assert "left float: moe.down" in caplog.text


def test_strict_refuses_and_changes_nothing():
    model = Block()
    with pytest.raises(ValueError, match=r"strict=True\): 4 weights would stay float: moe.gate_up"):
        sq.quantize_(model, sq.QuantConfig(), strict=True)
    assert sq.quantized_layers(model) == {}
    lstm = nn.Sequential(nn.LSTM(32, 32), nn.Linear(32, 4))
    sq.quantize_(lstm, sq.QuantConfig(), filter_fn=lambda m, n: isinstance(m, nn.LSTM | nn.Linear),
                 strict=True)
    assert sq.quantization_report(lstm).left_float == {}
    with pytest.raises(TypeError, match="`strict` must be True or False"):
        sq.quantize_(nn.Linear(2, 2), sq.QuantConfig(), strict="yes")


def test_exact_zeros_on_a_zero_free_grid_are_counted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(40, 32, padding_idx=0))
    sq.quantize_(model, sq.QuantConfig(per_channel=True))  # offset ½: no zero level
    assert sq.quantization_report(model).exact_zeros == {"0": 32}
    row = model[0].weight[0]
    assert torch.all(row.abs() == sq.quantized_layers(model)["0"].delta.reshape(-1)[0] / 2)
    with_zero = nn.Sequential(nn.Embedding(40, 32, padding_idx=0))
    sq.quantize_(with_zero, sq.QuantConfig(per_channel=True, offset=0.0))
    assert sq.quantization_report(with_zero).exact_zeros == {}
    assert torch.all(with_zero[0].weight[0] == 0)


@pytest.mark.parametrize(("fallback", "axis"), [("per-channel", 0), ("per-tensor", None)])
def test_group_fallback_for_layers_the_group_size_does_not_fit(fallback, axis):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 7), nn.Conv2d(8, 8, 2))  # 147 and 32 inputs per channel
    sq.quantize_(model, sq.QuantConfig(group_size=32, group_fallback=fallback))
    layers = sq.quantized_layers(model)
    assert (layers["0"].layout.axis, layers["0"].layout.group_size) == (axis, None)
    assert layers["1"].layout.group_size == 32
    assert sq.quantization_report(model).group_fallback == {
        "0": f"group_size 32 does not divide its input size; {fallback}"}
    with pytest.raises(ValueError, match="or set group_fallback='per-channel'"):
        sq.quantize_(nn.Sequential(nn.Conv2d(3, 8, 7)), sq.QuantConfig(group_size=32))
    with pytest.raises(ValueError, match="`group_fallback` must be one of"):
        sq.QuantConfig(group_size=32, group_fallback="skip")


def test_log_false_keeps_quiet_but_the_report_stays(caplog):
    model = Block()
    with caplog.at_level(logging.INFO, logger="stequiv"):
        sq.quantize_(model, sq.QuantConfig(), log=False)
    assert caplog.text == ""
    assert "moe.down" in sq.quantization_report(model).left_float
