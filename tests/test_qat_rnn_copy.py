"""Quantized RNN/LSTM/GRU can be copied (and so converted) mid-training, after a forward with grad
or a ``.to()``; the copy computes what the original computes."""

import copy

import pytest
import torch
from torch import nn

import stequiv as sq

RNNS = [lambda: nn.LSTM(4, 8, num_layers=2), lambda: nn.GRU(4, 8), lambda: nn.RNN(4, 8)]


def _quantized(make):
    torch.manual_seed(0)
    rnn = make()
    return sq.quantize_(rnn, sq.QuantConfig(estimator="htge", bits=4),
                        filter_fn=lambda module, name: isinstance(module, nn.RNNBase))


def _trained(make):
    rnn = _quantized(make)
    opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
    x = torch.randn(5, 2, 4)
    rnn(x)[0].pow(2).sum().backward()
    opt.step()
    rnn(x)[0].pow(2).sum().backward()  # the cache now holds computed weights with a grad_fn
    return rnn, opt, x


@pytest.mark.parametrize("make", RNNS, ids=["lstm", "gru", "rnn"])
def test_deepcopy_after_a_forward_with_grad(make):
    rnn, _, x = _trained(make)
    copied = copy.deepcopy(rnn)
    assert torch.equal(copied(x)[0], rnn(x)[0])
    with torch.no_grad():  # the copy has its own latent weights
        next(copied.parameters()).add_(1.0)
    assert not torch.equal(copied(x)[0], rnn(x)[0])


@pytest.mark.parametrize("make", RNNS, ids=["lstm", "gru", "rnn"])
def test_to_ste_mid_training_and_after_to(make):
    rnn, opt, x = _trained(make)
    twin, _ = sq.to_ste(rnn, opt)
    assert sq.alignment(rnn, twin).agreement == 1.0
    torch.testing.assert_close(twin(x)[0], rnn(x)[0], rtol=0, atol=1e-6)
    moved = _quantized(make).to(torch.float64)
    assert copy.deepcopy(moved)(x.double())[0].dtype == torch.float64
