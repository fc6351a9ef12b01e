"""The zoo: every architecture family a user is likely to bring, built from a tiny config (no hub),
through the whole path: ``quantize_`` (what was left float is named, nothing silently), the STE
twin exact at conversion (outputs equal, Ē = 0), a checkpoint round trip bit for bit with ties
kept, and the twin tracking the Q̂-net far better than the unadjusted STE net after a few steps.

Adding an architecture is one ``ZOO`` row; the tests are parametrised over the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

import stequiv as sq
from stequiv.qat import default_filter

transformers = pytest.importorskip("transformers")

CONFIG = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=4, group_size=16,
                        group_fallback="per-channel")
VOCAB = 64


def _causal_lm(config: str, model: str, **overrides: Any) -> Callable[[], nn.Module]:
    """A one-layer decoder of hidden size 32 (the fields every Llama-like config shares)."""
    fields = {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
              "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 0,
              "pad_token_id": 0, **overrides}
    return lambda: getattr(transformers, model)(getattr(transformers, config)(**fields))


def _hf(model: str, config: str, **fields: Any) -> Callable[[], nn.Module]:
    return lambda: getattr(transformers, model)(getattr(transformers, config)(**fields))


class HandMoE(nn.Module):
    """A hand-written top-1 Mixture of Experts: a router and four Linear experts."""

    def __init__(self, width: int = 32, experts: int = 4):
        super().__init__()
        self.router = nn.Linear(width, experts, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(width, 64), nn.GELU(),
                                                   nn.Linear(64, width)) for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = self.router(x).softmax(-1).topk(1, dim=-1)
        out = torch.zeros_like(x)
        for k, expert in enumerate(self.experts):
            chosen = (top.indices == k).to(x.dtype) * top.values
            out = out + chosen * expert(x)
        return out


class Recurrent(nn.Module):
    """An LSTM or GRU with a Linear head."""

    def __init__(self, cell: type[nn.RNNBase]):
        super().__init__()
        self.rnn = cell(16, 32, batch_first=True)
        self.head = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def _with_rnn(module: nn.Module, name: str) -> bool:
    return default_filter(module, name) or isinstance(module, nn.RNNBase)


def _tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.arange(8).reshape(1, 8) % VOCAB}


def _seq2seq() -> dict[str, torch.Tensor]:
    return {**_tokens(), "decoder_input_ids": torch.arange(4).reshape(1, 4)}


def _image(size: int) -> Callable[[], dict[str, torch.Tensor]]:
    return lambda: {"pixel_values": torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))}


def _sequence(*shape: int) -> Callable[[], tuple[torch.Tensor]]:
    return lambda: (torch.randn(*shape, generator=torch.Generator().manual_seed(0)),)


@dataclass(frozen=True)
class Arch:
    """One zoo row: how to build the float model and its input, what stays float and why."""

    build: Callable[[], nn.Module]
    inputs: Callable[[], dict[str, torch.Tensor] | tuple[torch.Tensor, ...]]
    left_float: tuple[str, ...] = ()  # ≥ 2-D parameters quantize_ leaves float (and reports)
    filter_fn: Callable[[nn.Module, str], bool] | None = None
    slow: bool = False
    step: float = 0.01  # the first SGD step moves no weight by more than this fraction of Δ


_ROUTER = "model.layers.0.mlp.gate.weight"  # transformers' MoE routers: no registered layer kind
ZOO: dict[str, Arch] = {
    "qwen2": Arch(_causal_lm("Qwen2Config", "Qwen2ForCausalLM", tie_word_embeddings=True), _tokens),
    "qwen3": Arch(_causal_lm("Qwen3Config", "Qwen3ForCausalLM", head_dim=16), _tokens),
    "mistral": Arch(_causal_lm("MistralConfig", "MistralForCausalLM"), _tokens),
    "phi3": Arch(_causal_lm("Phi3Config", "Phi3ForCausalLM"), _tokens),
    "gemma": Arch(_causal_lm("GemmaConfig", "GemmaForCausalLM", head_dim=16), _tokens),
    "gpt2": Arch(_hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_positions=16, n_embd=32,
                     n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0), _tokens),
    "bert": Arch(_hf("BertForMaskedLM", "BertConfig", vocab_size=VOCAB, hidden_size=32,
                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16), _tokens),
    "t5": Arch(_hf("T5ForConditionalGeneration", "T5Config", vocab_size=VOCAB, d_model=32, d_kv=16,
                   d_ff=64, num_layers=1, num_heads=2, decoder_start_token_id=0), _seq2seq),
    "vit": Arch(_hf("ViTForImageClassification", "ViTConfig", image_size=16, patch_size=8,
                    hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=64, num_labels=4), _image(16),
                left_float=("vit.embeddings.cls_token", "vit.embeddings.position_embeddings")),
    "qwen3-moe": Arch(_causal_lm("Qwen3MoeConfig", "Qwen3MoeForCausalLM", head_dim=16,
                                 moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2),
                      _tokens, left_float=(_ROUTER,)),
    "mixtral": Arch(_causal_lm("MixtralConfig", "MixtralForCausalLM", intermediate_size=16,
                               num_local_experts=4, num_experts_per_tok=2),
                    _tokens, left_float=(_ROUTER,)),
    "resnet18": Arch(_hf("ResNetForImageClassification", "ResNetConfig", embedding_size=16,
                         hidden_sizes=[16, 32, 32, 32], depths=[2, 2, 2, 2], layer_type="basic",
                         num_labels=4), _image(32), slow=True),
    "convnext": Arch(_hf("ConvNextForImageClassification", "ConvNextConfig", hidden_sizes=[16, 32],
                         depths=[1, 1], num_stages=2, num_labels=4), _image(32)),
    "mobilenet-v2": Arch(_hf("MobileNetV2ForImageClassification", "MobileNetV2Config",
                             depth_multiplier=0.25, image_size=32, num_labels=4,
                             initializer_range=0.2), _image(32),  # 0.02: activations vanish (1e-25)
                         slow=True, step=1e-3),  # no normalisation in eval: the loss is sharp
    "lstm": Arch(lambda: Recurrent(nn.LSTM), _sequence(1, 6, 16), filter_fn=_with_rnn),
    "gru": Arch(lambda: Recurrent(nn.GRU), _sequence(1, 6, 16), filter_fn=_with_rnn),
    "transformer-encoder": Arch(
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0,
                                                                 batch_first=True),
                                      1, enable_nested_tensor=False),
        _sequence(1, 8, 32)),
    "hand-moe": Arch(HandMoE, _sequence(1, 8, 32)),
}
ARCHS = [pytest.param(name, marks=[pytest.mark.slow] if arch.slow else [], id=name)
         for name, arch in ZOO.items()]


def _float_model(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return ZOO[name].build().to(dtype).eval()  # eval: no dropout, BatchNorm on running stats


def _quantized(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    return sq.quantize_(_float_model(name, dtype=dtype), CONFIG, ZOO[name].filter_fn, log=False)


def _output(model: nn.Module, inputs: dict | tuple) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
    return out if isinstance(out, torch.Tensor) else out.logits


def _inputs(name: str, dtype: torch.dtype = torch.float32) -> dict | tuple:
    """The row's input, its floating tensors in ``dtype``."""
    cast = lambda t: t.to(dtype) if t.is_floating_point() else t  # noqa: E731
    made = ZOO[name].inputs()
    return {k: cast(v) for k, v in made.items()} if isinstance(made, dict) else tuple(map(cast, made))


def _ties(model: nn.Module) -> list[list[str]]:
    """The quantized layers grouped by the latent weight they share (a tie is one group)."""
    groups: dict[int, list[str]] = {}
    for name in sq.quantized_layers(model):
        groups.setdefault(id(sq.latent_weight(model, name)), []).append(name)
    return sorted(groups.values())


@pytest.mark.parametrize("name", ARCHS)
def test_quantize_names_every_weight_it_leaves_float(name):
    model = _quantized(name)
    report = sq.quantization_report(model, min_size=1)
    assert sorted(report.left_float) == sorted(ZOO[name].left_float), report
    for weight, why in report.left_float.items():  # the reason names the module's class
        owner = model.get_submodule(weight.rpartition(".")[0])
        assert why.startswith(f"{type(owner).__name__}.{weight.rpartition('.')[2]}: "), why
    quantized = {id(sq.latent_weight(model, n)) for n in report.quantized}
    matrices = {n for n, p in model.named_parameters() if p.ndim >= 2}
    covered = {n for n, p in model.named_parameters() if id(p) in quantized}
    assert matrices == covered | set(report.left_float)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", ARCHS)
def test_the_twin_is_exact_at_conversion(name, kind):
    model = _quantized(name)
    opt = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)(model.parameters(), lr=1e-2)
    twin, _ = sq.to_ste(model, opt)
    result = sq.alignment(model, twin, probe=_inputs(name))
    assert (result.ebar, result.agreement, result.output_difference) == (0.0, 1.0, 0.0)


BF16 = ["qwen3", "gpt2", "bert", "mixtral", "hand-moe"]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", BF16)
def test_the_twin_is_exact_at_conversion_in_bfloat16(name, kind):
    model = _quantized(name, torch.bfloat16)
    opt = (torch.optim.SGD if kind == "sgd" else torch.optim.Adam)(model.parameters(), lr=1e-2)
    twin, _ = sq.to_ste(model, opt)
    result = sq.alignment(model, twin, probe=_inputs(name, torch.bfloat16))
    assert (result.agreement, result.output_difference) == (1.0, 0.0)


@pytest.mark.parametrize("name", ARCHS)
def test_a_checkpoint_round_trips_bit_for_bit_with_its_ties(name, tmp_path):
    model = _quantized(name)
    inputs = _inputs(name)
    path = sq.save(model, tmp_path / "model.ckpt")
    fresh = sq.load(path, _float_model(name, seed=1))  # other weights, float: load quantizes it
    assert _ties(fresh) == _ties(model)
    with torch.no_grad():
        assert torch.equal(_output(fresh, inputs), _output(model, inputs))
    loaded = fresh.state_dict()
    for key, value in model.state_dict().items():  # the tensors and each layer's record
        assert (torch.equal(loaded[key], value) if isinstance(value, torch.Tensor)
                else loaded[key] == value), key


def _loss(model: nn.Module, inputs: dict | tuple) -> torch.Tensor:
    """Squared distance of the output to a fixed random target (a constant target would give a
    LayerNorm'd output a constant loss)."""
    out = _output(model, inputs).float()
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return (out - target).pow(2).mean()


def _step(model: nn.Module, opt: torch.optim.Optimizer, inputs: dict | tuple) -> None:
    opt.zero_grad()
    _loss(model, inputs).backward()
    opt.step()


def _small_lr(model: nn.Module, inputs: dict | tuple, fraction: float) -> float:
    """The SGD learning rate whose first step moves no quantized weight by more than
    ``fraction`` of the smallest Δ: the theorem is first order, so the test runs where the
    twin's drift (second order) and the unadjusted net's (first order) are told apart."""
    model.zero_grad()
    _loss(model, inputs).backward()
    layers = sq.quantized_layers(model)
    largest = max(float(sq.latent_weight(model, n).grad.abs().max()) for n in layers)
    smallest = min(float(fq.delta.min()) for fq in layers.values())
    model.zero_grad()
    return fraction * smallest / largest


@pytest.mark.parametrize("name", ARCHS)
def test_the_twin_tracks_the_qnet_and_the_unadjusted_net_does_not(name):
    """Three SGD steps on one batch: Ē(Q̂-net, twin) is second order in the step, Ē(Q̂-net,
    unadjusted STE net) first order; each in the form where it starts at 0."""
    model = _quantized(name)
    inputs = _inputs(name)
    opt = torch.optim.SGD(model.parameters(), lr=_small_lr(model, inputs, ZOO[name].step))
    twin = sq.to_ste(model, opt)
    plain = sq.to_ste(model, opt, remap_weights=False, scale_lr=False)
    for _ in range(3):
        for net, net_opt in ((model, opt), (twin.model, twin.optimizer), (plain.model, plain.optimizer)):
            _step(net, net_opt, inputs)
    ebar_twin = sq.alignment(model, twin.model).ebar
    ebar_plain = sq.alignment(model, plain.model).ebar
    assert ebar_plain > 0 and ebar_twin < ebar_plain / 10, (ebar_twin, ebar_plain)
