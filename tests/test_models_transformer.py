"""The byte-level decoder-only transformer: attention against the written-out formula, causality,
the tied head, initialisation, the registry, and quantization of every projection."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stequiv import qat
from stequiv.models import LM_SIZES, LMSize, TransformerLM, build_model, he_uniform_bound
from stequiv.models.internal import CausalSelfAttention

TINY = LMSize(layers=2, width=16, heads=2, context=8)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tokens(n: int = 3, t: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, t), generator=_seeded(seed))


def test_attention_matches_the_formula() -> None:
    """softmax(QKᵀ/√d_h + causal mask) V per head, concatenated, then W_o: written out in float64."""
    attn = CausalSelfAttention(width=6, heads=2).double()
    h = torch.randn(2, 5, 6, dtype=torch.float64, generator=_seeded(1))
    q, k, v = (layer(h) for layer in (attn.q, attn.k, attn.v))
    heads = []
    for j in range(2):
        cols = slice(3 * j, 3 * j + 3)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(3)
        future = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
        heads.append(torch.softmax(scores.masked_fill(future, -math.inf), dim=-1) @ v[..., cols])
    expected = attn.o(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(h), expected, rtol=1e-12, atol=1e-12)


def test_logits_shape_and_causality() -> None:
    model = TransformerLM(TINY, generator=_seeded(0))
    x = _tokens()
    out = model(x)
    assert out.shape == (3, 8, 256)
    y = x.clone()
    y[:, 5] = (y[:, 5] + 1) % 256  # change one token: earlier positions must not see it
    out2 = model(y)
    torch.testing.assert_close(out[:, :5], out2[:, :5], rtol=0, atol=0)
    assert not torch.allclose(out[:, 5:], out2[:, 5:])
    torch.testing.assert_close(model(x[:, :4]), out[:, :4])  # shorter inputs: the same prefix


def test_head_is_tied_to_the_embedding() -> None:
    model = TransformerLM(TINY, generator=_seeded(0))
    assert model.head.weight is model.embed.weight
    h = model.ln_f(torch.randn(2, 16))
    torch.testing.assert_close(model.head(h), h @ model.embed.weight.T)
    w, c, layers = TINY.width, TINY.context, TINY.layers
    per_block = 4 * w * w + 2 * 4 * w * w + 2 * 2 * w  # q,k,v,o; fc1, fc2; two LayerNorms
    expected = 256 * w + c * w + layers * per_block + 2 * w  # tied head counted once
    assert sum(p.numel() for p in model.parameters()) == expected


def test_initialisation() -> None:
    model = TransformerLM(LMSize(layers=1, width=64, heads=4, context=32), generator=_seeded(0))
    for layer in (model.blocks[0].attn.q, model.blocks[0].fc1, model.blocks[0].fc2):
        bound = he_uniform_bound(layer.weight)
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.95 * bound
    assert model.embed.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.pos.weight.std().item() == pytest.approx(0.02, rel=0.15)


def test_registry_sizes_and_determinism() -> None:
    for name, size in LM_SIZES.items():
        model = build_model(name, num_classes=256, generator=_seeded(3))
        assert isinstance(model, TransformerLM) and model.size == size
    a = build_model("transformer-tiny", num_classes=256, generator=_seeded(3)).state_dict()
    b = build_model("transformer-tiny", num_classes=256, generator=_seeded(3)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"`in_channels` must be 1, got 3"):
        build_model("transformer-tiny", num_classes=256, in_channels=3)
    with pytest.raises(ValueError, match=r"`width` 10 must be a multiple of `heads` 4"):
        LMSize(layers=1, width=10, heads=4, context=8)
    with pytest.raises(ValueError, match=r"`layers` must be a positive int, got 0"):
        LMSize(layers=0, width=8, heads=2, context=8)
    model = TransformerLM(TINY)
    with pytest.raises(ValueError, match=r"T <= 8 \(the context\), got shape \(1, 9\)"):
        model(_tokens(1, 9))


def test_every_projection_quantized_head_float_and_twin_equal_at_switch() -> None:
    """quantize_ on quantizable_layers: 6 projections per block, the tied embedding/head float;
    the SGD twin of an HTGE model computes the same logits at the switch (Q(M(w)) = Q(w))."""
    model = TransformerLM(TINY, generator=_seeded(0))
    cfg = qat.QuantConfig(estimator={"name": "htge", "t": 3.0}, bits=2, scale="init-bound")
    qat.quantize_(model, cfg, filter_fn=lambda m, name: name in model.quantizable_layers)
    layers = qat.quantized_layers(model)
    assert list(layers) == list(model.quantizable_layers)
    assert len(layers) == 6 * TINY.layers
    assert isinstance(model.head.weight, nn.Parameter)  # float and still tied
    assert model.head.weight is model.embed.weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = _tokens()
    nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    opt.step()
    twin, _ = qat.to_ste(model, opt)
    torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)
    assert qat.alignment(model, twin, remap=True).ebar == 0.0
