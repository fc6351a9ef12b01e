"""Binary estimators whose M diverges at the support edge (ApproxSign): the twin is unbounded there."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import stequiv as sq
from stequiv.models import ConvNet


def test_edge_rule_gives_the_ste_twin():
    # M(w) = -½ sign(w) ln(1 - |w|) → ±∞ at ±1: the twin's PWL has no finite end
    assert sq.ste_twin("approx_sign", sq.BinaryQuantizer(0.5)) == sq.get_estimator("ste")
    assert sq.ste_twin("approx_sign", sq.BinaryQuantizer(0.5), "adam") != sq.get_estimator("ste")


def _ebar(lr):
    model = ConvNet(generator=torch.Generator().manual_seed(0)).double()
    sq.quantize_(model, sq.QuantConfig(estimator="approx_sign", bits=1, scale="init-bound"),
                 filter_fn=lambda m, n: n.startswith("conv"))  # default init: conv1 reaches 0.82
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    twin, twin_opt = sq.to_ste(model, opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.rand(8, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)
        for net, o in ((model, opt), (twin, twin_opt)):
            o.zero_grad()
            F.cross_entropy(net(x), y).backward()
            o.step()
    return sq.alignment(model, twin).ebar


def test_approx_sign_at_one_bit_converts_from_the_default_init_and_tracks():
    big, small = _ebar(1e-2), _ebar(1e-3)
    assert np.isfinite(big) and small > 0 and big / small > 40


def test_weights_at_the_edge_are_still_refused():
    model = ConvNet(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = 1.0
    sq.quantize_(model, sq.QuantConfig(estimator="approx_sign", bits=1, scale="init-bound"))
    with pytest.raises(ValueError, match="strictly inside the support"):
        sq.to_ste(model, optimizer_kind="sgd")
