"""Mixture-of-Experts weights ``(E, out, in)`` are quantized like E separate layers (one Δ per
expert channel or group), convert to an exact twin, save and load; user layer kinds register."""

import pytest
import torch
from torch import nn

import stequiv as sq
from stequiv.qat import LayerKind, register_layer_kind, unregister_layer_kind

transformers = pytest.importorskip("transformers")

CONFIG = sq.QuantConfig(estimator="htge", bits=4, group_size=8)


def _qwen3_moe():
    cfg = transformers.Qwen3MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, num_experts=4,
        num_experts_per_tok=2, max_position_embeddings=16, head_dim=16)
    torch.manual_seed(0)
    return transformers.Qwen3MoeForCausalLM(cfg)


def _mixtral():
    cfg = transformers.MixtralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2,
        max_position_embeddings=16)
    torch.manual_seed(0)
    return transformers.MixtralForCausalLM(cfg)


@pytest.mark.parametrize("build", [_qwen3_moe, _mixtral], ids=["qwen3-moe", "mixtral"])
@pytest.mark.parametrize("config", [CONFIG, sq.QuantConfig(estimator="htge", bits=2, per_channel=True)],
                         ids=["group8", "per-channel"])
def test_each_expert_is_quantized_like_its_own_linear_layer(build, config):
    model = build()
    experts = next(m for n, m in model.named_modules() if n.endswith("mlp.experts"))
    latent = {n: p.detach().clone() for n, p in experts.named_parameters()}
    sq.quantize_(model, config)
    report = sq.quantization_report(model)
    assert report.left_float == {}
    for name, w in latent.items():
        assert name in ("gate_up_proj", "down_proj")
        for e in range(w.shape[0]):  # expert e alone, as an nn.Linear with the same config
            alone = sq.quantize_(nn.Sequential(nn.Linear(w.shape[2], w.shape[1], bias=False)),
                                 config)
            with torch.no_grad():
                sq.latent_weight(alone, "0").copy_(w[e])
            alone = sq.quantize_(sq.dequantize_(alone), config)  # Δ from expert e's weights
            assert torch.equal(getattr(experts, name)[e], alone[0].weight)


def test_the_twin_is_exact_and_a_checkpoint_round_trips(tmp_path):
    model = sq.quantize_(_qwen3_moe(), CONFIG)
    tokens = torch.arange(8).reshape(1, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model(tokens, labels=tokens).loss.backward()
    opt.step()
    twin, _ = sq.to_ste(model, opt)
    result = sq.alignment(model, twin, probe=tokens)
    assert result.agreement == 1.0 and result.output_difference < 1e-5
    path = sq.save(model, tmp_path / "moe.ckpt")
    fresh = _qwen3_moe()  # a float model: load quantizes it as recorded, experts included
    sq.load(path, fresh)
    assert torch.equal(fresh(tokens).logits, model(tokens).logits)


class Bank(nn.Module):
    """A user's layer: K matrices (K, out, in) applied to K inputs."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 8, 16))

    def forward(self, x):
        return torch.einsum("koi,ki->ko", self.w, x)


@pytest.fixture
def bank_kind():
    kind = register_layer_kind(LayerKind("test bank", lambda m: isinstance(m, Bank),
                                         lambda m: ("w",), out_axis=1, batch_axes=1))
    yield kind
    unregister_layer_kind("test bank")


def test_a_registered_kind_is_quantized_by_default_and_survives_save_load(tmp_path, bank_kind):
    kind = bank_kind
    torch.manual_seed(0)
    model = sq.quantize_(nn.Sequential(Bank()), sq.QuantConfig(per_channel=True))
    assert sq.quantized_layers(model)["0.w"].delta.numel() == 3 * 8
    path = sq.save(model, tmp_path / "bank.ckpt")
    torch.manual_seed(1)
    fresh = sq.load(path, nn.Sequential(Bank()))
    x = torch.randn(3, 16)
    assert torch.equal(fresh(x), model(x))
    with pytest.raises(ValueError, match="'test bank' is already registered"):
        register_layer_kind(kind)
    with pytest.raises(ValueError, match=r"`batch_axes`=2 must be an int in \[0, out_axis=1\]"):
        LayerKind("bad", lambda m: False, lambda m: (), out_axis=1, batch_axes=2)


def test_unregistering_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="no user layer kind is named 'nope'"):
        unregister_layer_kind("nope")


def test_convert_of_expert_weights_is_bit_identical_and_round_trips():
    model = sq.quantize_(_qwen3_moe(), CONFIG)
    tokens = torch.arange(8).reshape(1, 8)
    before = model(tokens).logits
    sq.qat.convert_(model)
    assert torch.equal(model(tokens).logits, before)
    sq.qat.from_integer(model)
    assert torch.equal(model(tokens).logits, before)
