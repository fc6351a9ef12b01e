"""Every weight a user can name: layer kinds, output axes, per-group Δ, atomic verbs."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from stequiv.core import UniformQuantizer

PER_CHANNEL = sq.QuantConfig(bits=3, per_channel=True)


def _expected_per_channel(w: torch.Tensor, axis: int, bits: int = 3) -> np.ndarray:
    """Q(w) with one absmax Δ per slice along ``axis``, by the core quantizer."""
    moved = np.moveaxis(w.detach().double().numpy(), axis, 0)
    rows = moved.reshape(moved.shape[0], -1)
    q = UniformQuantizer.symmetric(bits, np.abs(rows).max(axis=1))
    out = q(rows.astype(np.float32)).reshape(moved.shape)
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize(("layer", "axis"), [
    (nn.Linear(6, 4), 0),
    (nn.Conv2d(3, 4, 3), 0),
    (nn.ConvTranspose2d(3, 4, 3), 1),  # weight (in, out, kh, kw): Δ follows the output axis
    (nn.ConvTranspose1d(2, 5, 3), 1),
    (nn.Embedding(7, 4), 0),
])
def test_per_channel_delta_follows_the_output_axis(layer, axis):
    torch.manual_seed(0)
    model = nn.Sequential(layer)
    w = layer.weight.detach().clone()
    sq.quantize_(model, PER_CHANNEL)
    fq = sq.quantized_layers(model)["0"]
    assert fq.layout.axis == axis
    assert fq.delta.shape[axis] == w.shape[axis] and fq.delta.numel() == w.shape[axis]
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), _expected_per_channel(w, axis))


def test_axis_override():
    model = sq.quantize_(nn.Sequential(nn.Linear(6, 4)),
                         sq.QuantConfig(bits=3, per_channel=True, axis=1))
    w = sq.latent_weight(model, "0")
    assert sq.quantized_layers(model)["0"].delta.shape == (1, 6)
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), _expected_per_channel(w, 1))
    with pytest.raises(ValueError, match=r"layer '0'.*`axis`=2 is out of range"):
        sq.quantize_(nn.Sequential(nn.Linear(6, 4)), sq.QuantConfig(per_channel=True, axis=2))


def test_multihead_attention_in_proj_is_quantized_inside_a_transformer():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0,
                                                           batch_first=True), 1)
    x = torch.randn(2, 5, 8)
    sq.quantize_(enc, sq.QuantConfig(bits=2))
    names = set(sq.quantized_layers(enc))
    assert {"layers.0.self_attn.in_proj_weight", "layers.0.self_attn.out_proj",
            "layers.0.linear1", "layers.0.linear2"} <= names
    attn = enc.layers[0].self_attn
    fq = sq.quantized_layers(enc)["layers.0.self_attn.in_proj_weight"]
    latent = sq.latent_weight(enc, "layers.0.self_attn.in_proj_weight")
    np.testing.assert_array_equal(attn.in_proj_weight.detach().numpy(),
                                  fq.quantizer()(latent.detach().numpy()))
    enc(x).sum().backward()  # gradients reach the latent in_proj weight
    assert latent.grad is not None and latent.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_weights_when_selected(cls):
    torch.manual_seed(0)
    model = nn.Sequential(cls(4, 6, num_layers=2, batch_first=True))
    with pytest.raises(ValueError, match="selected no layer"):
        sq.quantize_(model, sq.QuantConfig())  # not quantized by default
    sq.quantize_(model, sq.QuantConfig(bits=2, group_size=2),
                 filter_fn=lambda m, n: isinstance(m, nn.RNNBase))
    names = sorted(sq.quantized_layers(model))
    assert names == sorted(f"0.weight_{k}_l{i}" for k in ("ih", "hh") for i in (0, 1))
    rnn = model[0]
    out, _ = model(torch.randn(3, 5, 4))
    out.sum().backward()
    assert all(sq.latent_weight(model, n).grad is not None for n in names)
    # the forward reads the quantized weights: equal to a float RNN holding Q(w)
    plain = cls(4, 6, num_layers=2, batch_first=True)
    with torch.no_grad():
        for name in names:
            param = name.split(".")[1]
            getattr(plain, param).copy_(getattr(rnn, param))
        for param, p in rnn.named_parameters():
            if param.startswith("bias"):
                getattr(plain, param).copy_(p)
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(model(x)[0], plain(x)[0], rtol=0, atol=0)


def test_unsupported_kind_names_the_module_and_the_supported_kinds():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match=r"layer '1' of kind BatchNorm1d.*supported kinds: Linear"):
        sq.quantize_(model, sq.QuantConfig(), filter_fn=lambda m, n: True)
    assert not sq.quantized_layers(model)  # nothing half-done


# ----------------------------------------------------------------------------- per-group Δ
def test_per_group_delta_one_per_group_of_consecutive_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 3))
    w = model[0].weight.detach().clone()
    sq.quantize_(model, sq.QuantConfig(bits=2, group_size=4))
    fq = sq.quantized_layers(model)["0"]
    assert fq.delta.shape == (6, 1)
    groups = w.double().reshape(3, 2, 4).numpy()
    m = np.abs(groups).max(axis=2)  # one range bound per (output, group)
    np.testing.assert_allclose(fq.delta.reshape(3, 2).numpy(), 2 * m / 3, rtol=1e-15)
    q = UniformQuantizer.symmetric(2, m.reshape(-1))
    expected = q(groups.reshape(6, 4).astype(np.float32)).reshape(3, 8)
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), expected)


def test_per_group_on_conv_and_on_transposed_axis():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(4, 2, 3))  # 36 inputs per output channel
    sq.quantize_(conv, sq.QuantConfig(bits=2, group_size=12))
    assert sq.quantized_layers(conv)["0"].delta.numel() == 2 * 3
    convt = nn.Sequential(nn.ConvTranspose1d(4, 3, 2))  # weight (4, 3, 2): 8 inputs per output
    w = convt[0].weight.detach().clone()
    sq.quantize_(convt, sq.QuantConfig(bits=2, group_size=4))
    rows = w.movedim(1, 0).reshape(6, 4).double().numpy()
    q = UniformQuantizer.symmetric(2, np.abs(rows).max(axis=1))
    expected = torch.from_numpy(q(rows.astype(np.float32))).reshape(3, 4, 2).movedim(0, 1)
    torch.testing.assert_close(convt[0].weight.detach(), expected, rtol=0, atol=0)


def test_group_size_must_divide_the_input_size():
    with pytest.raises(ValueError, match=r"layer '0'.*`group_size`=4 does not divide the 6 input"):
        sq.quantize_(nn.Sequential(nn.Linear(6, 3)), sq.QuantConfig(group_size=4))
    with pytest.raises(ValueError, match="`group_size` must be >= 1"):
        sq.QuantConfig(group_size=0)


def _step(model, opt, x, y):
    opt.zero_grad()
    F.mse_loss(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("opt_name", ["momentum", "adam"])
def test_per_group_twin_matches_the_next_step(opt_name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    cfg = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, group_size=4)
    sq.quantize_(model, cfg)
    make = {"momentum": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
            "adam": lambda p: torch.optim.Adam(p, lr=1e-4, eps=1e-200)}[opt_name]
    opt = make(model.parameters())
    x, y = torch.randn(32, 16, dtype=torch.float64), torch.randn(32, 4, dtype=torch.float64)
    for _ in range(3):
        _step(model, opt, x, y)
    twin, twin_opt = sq.to_ste(model, opt)
    remap = opt_name == "momentum"
    assert sq.alignment(model, twin, remap=remap, probe=x).agreement == 1.0
    assert sq.alignment(model, twin, remap=remap, probe=x).output_difference == 0.0
    a = sq.alpha(cfg.est, sq.UniformQuantizer(bits=2, delta=1.0))
    quantized = {id(sq.latent_weight(twin, n)) for n in sq.quantized_layers(twin)}
    for group in twin_opt.param_groups:
        if id(group["params"][0]) in quantized and remap:
            assert group["lr"] == pytest.approx(1e-3 * a)
    back, _ = sq.from_ste(twin, cfg.est, twin_opt)
    for name in sq.quantized_layers(model):
        torch.testing.assert_close(sq.latent_weight(back, name), sq.latent_weight(model, name),
                                   rtol=0, atol=1e-12 if remap else 0)
    _step(model, opt, x, y)
    _step(twin, twin_opt, x, y)
    assert sq.alignment(model, twin, remap=remap).ebar < 1e-6


# ---------------------------------------------------------------------------- atomic verbs
def test_quantize_that_fails_on_a_later_layer_changes_nothing():
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 3))  # 4 inputs: G=8 fails on layer 1
    with pytest.raises(ValueError, match=r"layer '1'.*does not divide"):
        sq.quantize_(model, sq.QuantConfig(group_size=8))
    assert not sq.quantized_layers(model)
    assert isinstance(model[0].weight, nn.Parameter)


def test_misspelled_layer_name_is_an_error_with_close_names():
    model = nn.Sequential()
    model.add_module("encoder", nn.Linear(4, 4))
    model.add_module("decoder", nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"'encodr'.*did you mean \['encoder'"):
        sq.quantize_(model, {"encodr": sq.QuantConfig(), "decoder": sq.QuantConfig()})
    assert not sq.quantized_layers(model)
    with pytest.raises(ValueError, match=r"'encodr' is not a quantized weight.*\['encoder'"):
        sq.latent_weight(sq.quantize_(model, sq.QuantConfig()), "encodr")


def test_non_floating_weight_is_refused():
    emb = nn.Embedding(4, 3)
    emb.weight = nn.Parameter(torch.zeros(4, 3, dtype=torch.int32), requires_grad=False)
    with pytest.raises(ValueError, match=r"layer '0'.*torch.int32, not floating point"):
        sq.quantize_(nn.Sequential(emb), sq.QuantConfig())


def test_dequantize_and_to_ste_check_before_changing():
    model = sq.quantize_(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), sq.QuantConfig())
    with pytest.raises(ValueError, match="`weights` must be"):
        sq.dequantize_(model, weights="float")
    assert len(sq.quantized_layers(model)) == 2
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="`scheduler` must drive"):
        sq.to_ste(model, None, torch.optim.lr_scheduler.StepLR(opt, 1), optimizer_kind="sgd")


def test_conversion_result_unpacks_by_what_was_given():
    model = sq.quantize_(nn.Sequential(nn.Linear(4, 4)), sq.QuantConfig(estimator="htge"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = sq.to_ste(model, opt)
    assert isinstance(result, sq.Conversion) and result.scheduler is None
    twin, twin_opt = result
    assert twin is result.model and twin_opt is result.optimizer
    assert len(result) == 2 and result[0] is twin and result[1] is twin_opt  # as the old tuple
    assert result[-1] is twin_opt
    with pytest.raises(IndexError):
        result[2]
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    twin, twin_opt, twin_sched = with_sched = sq.to_ste(model, opt, sched)
    assert twin_sched.optimizer is twin_opt
    assert len(with_sched) == 3 and with_sched[2] is twin_sched and with_sched.scheduler is twin_sched
    assert sq.to_ste(model, optimizer_kind="adam").optimizer is None


def test_all_zero_channel_under_absmax_gets_the_smallest_bound_and_a_zero_tensor_is_refused():
    torch.manual_seed(0)
    emb = nn.Embedding(5, 4, padding_idx=0)  # row 0 is zero
    sq.quantize_(nn.Sequential(emb), sq.QuantConfig(per_channel=True))
    fq = next(iter(sq.quantized_layers(nn.Sequential(emb)).values()))
    delta = fq.delta.reshape(-1)
    assert delta[0] == delta[1:].min()
    zero = nn.Embedding(3, 4)
    nn.init.zeros_(zero.weight)
    with pytest.raises(ValueError, match=r"layer '0' \(Embedding.weight\).*the weight is all zero"):
        sq.quantize_(nn.Sequential(zero), sq.QuantConfig(per_channel=True))


def test_core_quantizer_of_a_layer_matches_its_forward_on_any_axis():
    """fq.quantizer() applies to layout.view(w): square weights catch a Δ on the wrong axis."""
    torch.manual_seed(0)
    for cfg in (sq.QuantConfig(bits=3, per_channel=True, axis=1),
                sq.QuantConfig(bits=3, per_channel=True), sq.QuantConfig(bits=3, group_size=2)):
        model = sq.quantize_(nn.Sequential(nn.Linear(4, 4)), cfg)
        fq = sq.quantized_layers(model)["0"]
        w = sq.latent_weight(model, "0")
        view = fq.layout.view(w).detach().numpy()
        np.testing.assert_array_equal(fq.layout.view(model[0].weight).detach().numpy(),
                                      fq.quantizer()(view))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(8, 4)
        _step(model, opt, x, torch.randn(8, 4))
        twin, _ = sq.to_ste(model, opt)
        assert sq.alignment(model, twin, probe=x).output_difference == 0.0


def test_mapping_entry_that_the_filter_does_not_select_is_an_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))
    with pytest.raises(ValueError, match=r"gives layers \['1'\] a QuantConfig but `filter_fn`"):
        sq.quantize_(model, {"0": sq.QuantConfig(), "1": sq.QuantConfig()})
    assert not sq.quantized_layers(model)
    with pytest.raises(ValueError, match=r"`axis`=1 places a per-channel Δ.*per tensor"):
        sq.QuantConfig(axis=1)
