"""Tied weights: quantized once, converted once; a raw reader is kept exact or refused."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq

HTGE = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, group_size=4)


class TinyLM(nn.Module):
    """Embedding tied to the output head, as in GPT-2 and most small LLMs."""

    def __init__(self, vocab=11, dim=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(torch.tanh(self.mix(self.emb(tokens))))


def _trained(filter_fn=None, seed=0):
    torch.manual_seed(seed)
    model = sq.quantize_(TinyLM(), HTGE, filter_fn=filter_fn)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tokens = torch.randint(0, 11, (4, 6))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
        opt.step()
    return model, opt, tokens


def test_tied_weight_quantized_once_and_converted_once():
    model, opt, tokens = _trained()
    assert sq.latent_weight(model, "emb") is sq.latent_weight(model, "head")
    assert sq.quantized_layers(model)["emb"] is sq.quantized_layers(model)["head"]
    assert len(list(model.parameters())) == 3  # emb/head weight once, mix weight and bias
    twin, twin_opt = sq.to_ste(model, opt)
    assert sq.latent_weight(twin, "emb") is sq.latent_weight(twin, "head")
    assert sum(len(g["params"]) for g in twin_opt.param_groups) == 3
    result = sq.alignment(model, twin, probe=tokens)
    assert result.agreement == 1.0
    assert result.output_difference == 0.0  # both read Q(M(w)) = Q(w)
    assert result.count == 11 * 8 + 8 * 8  # the tied weight counted once


def test_reported_failure_raw_reader_of_a_remapped_weight_is_refused():
    """Issue 11: head quantized, embedding reading the tied latent raw. The SGD twin remapped the
    latent to M(w), so the embedding changed: logits differed by 3.5 while Ē = 0, agreement 1."""
    head_only = lambda m, n: n in ("head", "mix")  # noqa: E731
    model, opt, tokens = _trained(head_only)
    with pytest.raises(ValueError, match=r"layer 'emb' reads the weight of quantized layer 'head' "
                                         r"unquantized.*Quantize 'emb' too"):
        sq.to_ste(model, opt)
    # Adam-like: no remap, so the embedding's function is kept exactly
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    twin, _ = sq.to_ste(model, adam)
    assert sq.alignment(model, twin, remap=False, probe=tokens).output_difference == 0.0
    # a pair built by hand (no conversion record) is refused by alignment's SGD form instead of
    # reported as equal
    with pytest.raises(ValueError, match=r"alignment: layer 'emb' reads .* 'head' unquantized"):
        sq.alignment(model, copy.deepcopy(model), remap=True)


def test_probe_reports_differing_outputs():
    model, opt, tokens = _trained()
    twin, _ = sq.to_ste(model, opt)
    with torch.no_grad():
        twin.mix.bias.add_(1.0)  # a float parameter: Ē and agreement cannot see it
    result = sq.alignment(model, twin, probe=tokens)
    assert result.ebar == 0.0 and result.agreement == 1.0
    assert result.output_difference > 0.1


def test_tied_readers_with_different_configs_are_refused():
    model = TinyLM()
    with pytest.raises(ValueError, match=r"layers 'emb' and 'head' share one weight"):
        sq.quantize_(model, {"emb": HTGE, "head": sq.QuantConfig(bits=4)})
    assert not sq.quantized_layers(model)


@pytest.mark.parametrize("weights", ["latent", "quantized"])
def test_dequantize_keeps_the_tie(weights):
    model, _, tokens = _trained()
    q_out = model(tokens)
    sq.dequantize_(model, weights=weights)
    assert model.emb.weight is model.head.weight
    if weights == "quantized":
        assert torch.equal(model(tokens), q_out)
