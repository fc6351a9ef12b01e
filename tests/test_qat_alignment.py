"""alignment compares a model with its twin: models on different grids are refused, naming the field."""

import copy

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


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_an_exact_twin_has_zero_ebar_at_the_switch_without_naming_the_form(kind):
    """Adam's twin keeps w, SGD's starts at M(w): to_ste records which, alignment reads it (the
    old default, the SGD form for every twin, gave Ē ≈ 3.75 % for an exact Adam twin)."""
    qnet = _net(2)
    opt = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)(qnet.parameters(), lr=0.1)
    twin, _ = sq.to_ste(qnet, opt)
    result = sq.alignment(qnet, twin)
    assert result.ebar == 0.0 and result.agreement == 1.0
    assert sq.alignment(qnet, twin, remap=kind == "sgd").ebar == 0.0  # the record, spelled out
    tracker = sq.AlignmentTracker(qnet, twin)
    assert tracker.update(0).ebar == 0.0


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_remap_that_contradicts_the_twin_is_refused_naming_both(kind):
    qnet = _net(2)
    opt = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)(qnet.parameters(), lr=0.1)
    twin, _ = sq.to_ste(qnet, opt)
    with pytest.raises(ValueError, match=rf"`remap={kind != 'sgd'}` compares .* but to_ste made the twin"):
        sq.alignment(qnet, twin, remap=kind != "sgd")


def test_the_unadjusted_twin_records_unchanged_weights():
    qnet = _net(2)
    plain, _ = sq.to_ste(qnet, torch.optim.SGD(qnet.parameters(), lr=0.1), remap_weights=False)
    assert sq.alignment(qnet, plain).ebar == sq.alignment(qnet, plain, remap=False).ebar


def test_only_a_qnet_and_its_twin_in_that_order_use_the_record():
    qnet = _net(2)
    twin, twin_opt = sq.to_ste(qnet, torch.optim.SGD(qnet.parameters(), lr=0.1))
    back, _ = sq.from_ste(twin, "htge", twin_opt)  # a Q̂-net again: no record
    assert sq.alignment(back, twin).ebar < 1e-6
    need = r"`remap` is known only for a Q̂-net and its stequiv.to_ste twin, in that order"
    for a, b in [(_net(2), _net(2, seed=1)), (twin, qnet), (copy.deepcopy(twin), twin)]:
        with pytest.raises(ValueError, match=need):
            sq.alignment(a, b)
    assert sq.alignment(copy.deepcopy(twin), twin, remap=False).ebar == 0.0  # two twins: no check
