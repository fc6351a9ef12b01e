"""convert_: the integer model's forward equals the fake-quant model's bit for bit, everywhere."""

import importlib.util
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

import stequiv as sq
from stequiv.core import UniformQuantizer
from stequiv.qat import convert_, from_integer, integer_layers

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BITS = (1, 2, 3, 4, 8)


class HFConv1D(nn.Module):
    """transformers' Conv1D (weight (in, out): output axis 1) as GPT-2 uses it."""

    def __init__(self):
        super().__init__()
        from transformers.pytorch_utils import Conv1D
        self.proj = Conv1D(6, 8)

    def forward(self, x):
        return self.proj(x)


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(9, 8)
        self.head = nn.Linear(8, 9, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, t):
        return self.head(torch.tanh(self.emb(t)))


def _tokens(n):
    return lambda g, dt: torch.randint(0, n, (2, 5), generator=g)


def _float(*shape):
    return lambda g, dt: torch.randn(*shape, generator=g).to(dt)


class GRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


# name: (build, input, group sizes that divide every weight's reduction, selects RNN weights)
KINDS = {
    "linear": (lambda: nn.Linear(16, 6), _float(3, 16), (4, 8, 16), False),
    "conv1d": (lambda: nn.Conv1d(4, 6, 3), _float(2, 4, 7), (2, 4, 12), False),
    "conv2d-grouped": (lambda: nn.Conv2d(4, 6, 3, groups=2), _float(2, 4, 5, 5), (2, 6, 18), False),
    "conv2d-depthwise": (lambda: nn.Conv2d(4, 4, 3, groups=4, bias=False), _float(1, 4, 5, 5),
                         (3, 9), False),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), _float(1, 2, 3, 3, 3), (4, 8, 16), False),
    "convtranspose2d": (lambda: nn.ConvTranspose2d(4, 6, 2), _float(2, 4, 3, 3), (4, 8, 16), False),
    "embedding": (lambda: nn.Embedding(11, 8), _tokens(11), (2, 4, 8), False),
    "mha": (MHA, _float(2, 3, 8), (2, 4, 8), False),
    "hf-conv1d": (HFConv1D, _float(2, 3, 8), (2, 4, 8), False),
    "gru": (GRU, _float(2, 3, 4), (2,), True),
    "tied": (Tied, _tokens(9), (2, 4, 8), False),
}
if importlib.util.find_spec("transformers") is None:  # the `hf` extra
    del KINDS["hf-conv1d"]


def _config(rng: random.Random, bits: int, groups: tuple[int, ...]) -> sq.QuantConfig:
    estimator = rng.choice(["ste", "approx_sign"] if bits == 1 else ["ste", "htge", "pwl"])
    offset = 0.5 if bits == 1 else rng.choice([0.0, 0.5])
    layout = rng.choice(["tensor", "channel", "group"])
    return sq.QuantConfig(
        estimator=estimator, bits=bits, offset=offset,
        scale=rng.choice(["absmax", "absmax", rng.uniform(0.05, 1.0)]),
        per_channel=layout == "channel",
        group_size=rng.choice(groups) if layout == "group" else None,
        learn_step=bits > 1 and rng.random() < 0.3)


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    """A quantized weight as its layer reads it (grad enabled: a learned Δ's training forward)."""
    try:
        return model.get_submodule(name).weight
    except AttributeError:  # "layer.param": an attention or RNN weight
        layer, _, param = name.rpartition(".")
        return getattr(model.get_submodule(layer), param)


def _check_one(seed: int, kind: str | None = None, bits: int | None = None,
               dtype: torch.dtype | None = None) -> None:
    """Build a tiny model, fake-quantize it at random, compare its output before/after convert_."""
    rng = random.Random(seed)
    kind = kind or rng.choice(sorted(KINDS))
    dtype = dtype or rng.choice(DTYPES)
    bits = bits or rng.choice(BITS)
    build, make_input, groups, rnn = KINDS[kind]
    torch.manual_seed(seed)
    model = build().to(dtype)
    cfg = _config(rng, bits, groups)
    sq.quantize_(model, cfg, filter_fn=(lambda m, n: isinstance(m, nn.RNNBase)) if rnn else None)
    with torch.no_grad():
        for fq in sq.quantized_layers(model).values():
            if cfg.learn_step:  # a learned Δ lands anywhere: move it off the initial grid
                fq.delta.mul_(torch.empty_like(fq.delta).uniform_(0.5, 1.5))
    x = make_input(torch.Generator().manual_seed(seed), dtype)
    trained = {name: _weight(model, name).detach() for name in sq.quantized_layers(model)}
    with torch.no_grad():  # the model's output, and (grad enabled) the training forward's weights
        expected = model(x)
    convert_(model)
    with torch.no_grad():
        got = model(x)
    where = f"seed={seed} kind={kind} dtype={dtype} config={cfg}"
    assert got.dtype == expected.dtype, where
    assert torch.equal(got, expected), where
    for name, weight in trained.items():
        assert torch.equal(integer_layers(model)[name].dequantize(), weight), where
    assert not sq.quantized_layers(model) and integer_layers(model), where


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_kind_bits_and_dtype_converts_exactly(kind, bits, dtype):
    _check_one(hash((kind, bits, str(dtype))) % 10_000, kind, bits, dtype)


def test_random_seeds_convert_exactly():
    """200 seeds, each a random layer kind, bits, grid, Δ layout, learned Δ and dtype."""
    for seed in range(200):
        _check_one(seed)


@pytest.mark.slow
def test_thousand_random_seeds_convert_exactly():
    for seed in range(1000, 2000):
        _check_one(seed)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_codes_at_clip_edges_and_exact_bin_boundaries(bits, offset):
    """Weights exactly on every decision boundary (round half to even) and far outside the
    range: the integer codes are the core quantizer's, the clip levels l and u at the edges."""
    delta = 0.25  # a power of two: every (k + ½ + z)Δ is exact in float32
    quantizer = UniformQuantizer(bits=bits, delta=delta, offset=offset)
    boundaries = (quantizer.boundaries + offset) * delta
    w = np.concatenate([boundaries, boundaries + 1e-3, boundaries - 1e-3, [-100.0, 100.0]])
    layer = nn.Linear(w.size, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w).float().reshape(1, -1))
    model = nn.Sequential(layer)
    m = delta * (2**bits - 1) / 2  # the range bound that gives this Δ
    sq.quantize_(model, sq.QuantConfig(bits=bits, offset=offset, scale=m))
    reference = model[0].weight.detach().clone()
    convert_(model)
    levels = integer_layers(model)["0"].levels().flatten().numpy()
    expected = quantizer.code(w.astype(np.float32))
    np.testing.assert_array_equal(levels, expected)
    n = boundaries.size
    np.testing.assert_array_equal(levels[:n], np.round(quantizer.boundaries))  # half to even
    assert levels[-2] == quantizer.lower and levels[-1] == quantizer.upper
    assert torch.equal(model[0].weight, reference)


@pytest.mark.parametrize(("bits", "per_byte"), [(1, 8), (2, 4), (3, 2), (4, 2), (5, 1), (8, 1)])
def test_codes_are_packed_at_the_grid_width(bits, per_byte):
    model = sq.quantize_(nn.Sequential(nn.Linear(64, 4, bias=False)),
                         sq.QuantConfig(estimator="ste", bits=bits))
    convert_(model)
    layer = integer_layers(model)["0"]
    assert layer.codes.dtype == torch.uint8
    assert layer.codes.numel() == math.ceil(64 * 4 / per_byte)


def test_tied_weight_stays_one_integer_weight_and_from_integer_goes_back():
    torch.manual_seed(0)
    model = sq.quantize_(Tied(), sq.QuantConfig(bits=3, group_size=4))
    tokens = torch.randint(0, 9, (2, 5))
    expected = model(tokens).detach()
    convert_(model)
    layers = integer_layers(model)
    assert layers["emb"].codes is layers["head"].codes and layers["emb"].weight is layers["head"].weight
    assert not list(model.parameters())  # codes and Δ are buffers: nothing to train
    from_integer(model)
    assert isinstance(model.emb.weight, nn.Parameter) and model.emb.weight is model.head.weight
    assert len(list(model.parameters())) == 1
    assert torch.equal(model(tokens), expected)


def test_converted_state_holds_codes_not_latent_weights():
    model = sq.quantize_(nn.Sequential(nn.Linear(256, 128)), sq.QuantConfig(bits=4, per_channel=True))
    convert_(model)
    state = model.state_dict()
    assert not any(k.endswith("original") for k in state)
    assert state["0.parametrizations.weight.original0"].numel() == 256 * 128 // 2
    assert state["0.parametrizations.weight.original1"].shape == (128, 1)


def test_refusals_name_the_problem_and_change_nothing():
    plain = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no fake-quantized weight; quantize it"):
        convert_(plain)
    with pytest.raises(ValueError, match="no integer weight"):
        from_integer(plain)
    with pytest.raises(TypeError, match="`model` must be a torch"):
        convert_("model")
    model = sq.quantize_(nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2)), sq.QuantConfig(bits=9))
    with pytest.raises(ValueError, match="more than 8 bits"):
        convert_(model)
    assert len(sq.quantized_layers(model)) == 2
    model = sq.quantize_(nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2)), sq.QuantConfig(bits=2))
    with torch.no_grad():
        sq.latent_weight(model, "1")[0, 0] = float("nan")
    with pytest.raises(ValueError, match="'1' has non-finite entries"):
        convert_(model)
    assert len(sq.quantized_layers(model)) == 2 and not integer_layers(model)
    with torch.no_grad():
        sq.latent_weight(model, "1")[0, 0] = 0.1
    convert_(model)
    with pytest.raises(ValueError, match="already converted"):
        convert_(model)
