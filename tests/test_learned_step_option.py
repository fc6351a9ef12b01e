"""``QuantConfig(learn_step=True)``: LSQ's Δ gradient (formula, golden values, finite differences),
bad inputs, checkpoints, and the STE twin that follows the Q̂-net's Δ (LearnedStepTwin)."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from stequiv import qat
from stequiv.core import get_estimator

HTGE = {"name": "htge", "t": 3.0}
LAYOUTS = {"tensor": {}, "channel": {"per_channel": True}, "group": {"group_size": 4}}


def _linear(seed=0, **config):
    torch.manual_seed(seed)
    layer = nn.Linear(8, 6).double()
    qat.quantize_(layer, qat.QuantConfig(**{"estimator": HTGE, "bits": 2, "scale": "absmax",
                                            "learn_step": True, **config}))
    return layer


def _reference(w, delta, g, est, lower, upper, z, per_delta_shape):
    """LSQ in NumPy: ∂L/∂w = g·Q̂′(v), ∂L/∂Δ = γ Σ g[(k + z) − (v + z)Q̂′(v)], γ = 1/√(N·Q_P)."""
    v = w / delta - z
    k = np.round(np.clip(v, lower, upper))
    slope = est.gradient(v, lower, upper, z)
    q_p = sum(1 for level in range(lower, upper + 1) if level + z > 0)
    n = w.size // delta.size
    per = g * ((k + z) - (v + z) * slope)
    total = per.sum() if delta.ndim == 0 else per.sum(
        axis=tuple(i for i, b in enumerate(per_delta_shape) if b == 1), keepdims=True)
    return g * slope, total / math.sqrt(n * q_p)


@pytest.mark.parametrize("estimator", ["ste", HTGE])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradients_match_the_lsq_formula(estimator, layout):
    layer = _linear(estimator=estimator, **LAYOUTS[layout])
    fq = qat.quantized_layers(layer)[""]
    with torch.no_grad():  # spread weights over the clip range and beyond it
        fq.delta.mul_(0.6)
    w = qat.latent_weight(layer, "")
    g = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (layer.weight * g).sum().backward()
    view = fq.layout.view
    ref_w, ref_d = _reference(view(w.detach()).numpy(), fq.delta.detach().numpy(), view(g).numpy(),
                              get_estimator(estimator), fq.lower, fq.upper, fq.offset, fq.delta.shape)
    np.testing.assert_allclose(view(w.grad).numpy(), ref_w, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fq.delta.grad.numpy(), ref_d, rtol=1e-12, atol=1e-15)


def test_golden_values_per_tensor_ste():
    """Δ = 0.5, z = ½, levels −1.5Δ..1.5Δ; N = 4, Q_P = 2, γ = 1/√8. Inside the range the STE gives
    LSQ's round(v) − v (with z): k − v; outside, the STE's extended tail gives the same form."""
    layer = nn.Linear(4, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.3, -0.9, 0.1, 1.2]], dtype=torch.float64))
    qat.quantize_(layer, qat.QuantConfig(bits=2, scale=0.75, learn_step=True))
    fq = qat.quantized_layers(layer)[""]
    assert fq.delta.item() == 0.5 and fq.gradient_scale == pytest.approx(1 / math.sqrt(8))
    layer.weight.sum().backward()  # g = 1
    v = np.array([0.1, -2.3, -0.3, 1.9])  # w/Δ − z
    k = np.array([0.0, -2.0, 0.0, 1.0])  # round(clip(v, −2, 1))
    assert torch.equal(layer.weight.detach(), torch.tensor([[0.25, -0.75, 0.25, 0.75]], dtype=torch.float64))
    assert fq.delta.grad.item() == pytest.approx((k - v).sum() / math.sqrt(8), rel=1e-12)


def test_delta_gradient_is_the_derivative_of_the_straight_through_surrogate():
    """Finite differences of H(Δ) = Σ g·Δ·(k₀ + z + Q̂(v(Δ)) − Q̂(v(Δ₀))) (k₀ held, Q̂ the
    estimator's surrogate), whose derivative at Δ₀ is LSQ's (k + z) − (v + z)Q̂′(v), scaled by γ."""
    est = get_estimator(HTGE)
    layer = _linear(estimator=HTGE)
    fq = qat.quantized_layers(layer)[""]
    g = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (layer.weight * g).sum().backward()
    w, d0, z = qat.latent_weight(layer, "").detach().numpy(), fq.delta.item(), fq.offset
    v0 = w / d0 - z
    k0 = np.round(np.clip(v0, fq.lower, fq.upper))
    inside = (v0 > fq.lower) & (v0 < fq.upper)  # the surrogate is the estimator's on [l, u]

    def h(d):
        v = w / d - z
        return float((g.numpy() * inside * d * (k0 + z + est.surrogate(v) - est.surrogate(v0))).sum())

    eps = 1e-6
    fd = (h(d0 + eps) - h(d0 - eps)) / (2 * eps)
    outside = float((g.numpy() * ~inside * ((k0 + z) - (v0 + z) * est.gradient(v0, fq.lower, fq.upper, z))).sum())
    assert float(fq.delta.grad) == pytest.approx((fd + outside) * fq.gradient_scale, rel=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_the_fixed_delta_quantizer_and_the_core(dtype):
    layer = _linear(per_channel=True).to(dtype)
    fq = qat.quantized_layers(layer)[""]
    w = qat.latent_weight(layer, "").detach()
    learned = layer.weight.detach()
    np.testing.assert_array_equal(learned.numpy(), fq.quantizer()(w.numpy()))
    with torch.no_grad():  # the fixed-Δ path (Δ not trained): the same Q(w)
        assert torch.equal(layer.weight, learned)
    assert fq.delta.requires_grad and fq.delta.shape == (6, 1) and fq.delta.dtype == dtype
    assert "parametrizations.weight.0.delta" in dict(layer.named_parameters())


def test_bad_inputs():
    with pytest.raises(TypeError, match="`learn_step` must be True or False, got 'yes'"):
        qat.QuantConfig(learn_step="yes")
    with pytest.raises(ValueError, match=r"`learn_step=True` needs an estimator in bin units.*binary"):
        qat.QuantConfig(estimator="approx_sign", bits=1, learn_step=True)


def test_delta_going_non_positive_in_training_names_layer_call_and_fix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    qat.quantize_(model, qat.QuantConfig(bits=2, learn_step=True))
    delta = qat.quantized_layers(model)["2"].delta
    opt = torch.optim.SGD([{"params": [delta], "lr": 1e6}])
    x = torch.randn(4, 8)
    model(x).sum().backward()
    delta.grad.abs_()  # a step downhill in Δ, far too long
    opt.step()
    assert delta.item() <= 0
    with pytest.raises(ValueError, match=r"layer '2' \(Linear.weight\): the learned step Δ = -?[\d.e+]+ at "
                                         r"forward call 2 .*lower the learning rate of Δ"):
        model(x)


def test_follower_names_a_non_positive_delta_of_the_qnet():
    layer = _linear()
    twin, twin_opt = sq.to_ste(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    follower = qat.LearnedStepTwin(twin, twin_opt, layer)
    with torch.no_grad():
        qat.quantized_layers(layer)[""].delta.fill_(-0.5)
    with pytest.raises(ValueError, match=r"layer '' \(Linear.weight\): the learned step Δ = -0.5 at "
                                         r"LearnedStepTwin.step after forward call 0"):
        follower.step()


def test_checkpoint_round_trip(tmp_path):
    layer = _linear(per_channel=True)
    with torch.no_grad():
        qat.quantized_layers(layer)[""].delta.mul_(1.3)
    path = sq.save(layer, tmp_path / "lsq.ckpt")
    fresh = nn.Linear(8, 6).double()
    sq.load(path, fresh)
    fq = qat.quantized_layers(fresh)[""]
    assert isinstance(fq, qat.LearnedStepFakeQuant) and fq.delta.requires_grad
    assert torch.equal(fq.delta, qat.quantized_layers(layer)[""].delta)
    assert torch.equal(fresh.weight, layer.weight)
    fixed = nn.Linear(8, 6).double()
    qat.quantize_(fixed, qat.QuantConfig(estimator=HTGE, bits=2, per_channel=True))
    with pytest.raises(ValueError, match="quantized with learn_step=True but this model has learn_step=None"):
        sq.load(path, fixed)
    with pytest.raises(ValueError, match="learn_step=None but this model has learn_step=True"):
        fresh.load_state_dict(fixed.state_dict())


def _train(kind, lr, follow, per_channel=False, steps=25):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    qat.quantize_(model, qat.QuantConfig(estimator=HTGE, bits=2, scale="absmax",
                                         per_channel=per_channel, learn_step=True),
                  filter_fn=lambda module, name: name == "0")
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9),
            "adam": lambda p: torch.optim.Adam(p, lr=lr, eps=1e-14)}[kind]
    opt = make(model.parameters())
    twin, twin_opt = sq.to_ste(model, opt)
    follower = qat.LearnedStepTwin(twin, twin_opt, model)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 16, generator=g, dtype=torch.float64), torch.randint(0, 4, (16,), generator=g)
        for net, o in ((model, opt), (twin, twin_opt)):
            o.zero_grad()
            F.cross_entropy(net(x), y).backward()
            o.step()
        if follow:
            follower.step()
    return qat.alignment(model, twin, remap=kind == "sgd"), model, twin


@pytest.mark.parametrize(("kind", "lr", "per_channel"), [("sgd", 3e-2, False), ("adam", 3e-3, True)])
def test_twin_follows_the_qnet_delta_to_second_order(kind, lr, per_channel):
    big, qnet, twin = _train(kind, lr, True, per_channel)
    small, _, _ = _train(kind, lr / 10, True, per_channel)
    unfollowed, _, _ = _train(kind, lr / 10, False, per_channel)
    assert big.ebar / small.ebar > 30  # second order in η
    assert unfollowed.ebar > 2.5 * small.ebar  # Δ moves slowly (γ ≈ 0.04): a modest gain here
    assert small.agreement == 1.0
    fq_q, fq_t = qat.quantized_layers(qnet)["0"], qat.quantized_layers(twin)["0"]
    assert torch.equal(fq_q.delta, fq_t.delta) and not fq_t.delta.requires_grad
    assert not torch.equal(fq_q.delta, _linear_delta(per_channel))  # Δ was learned


def _linear_delta(per_channel):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    qat.quantize_(model, qat.QuantConfig(estimator=HTGE, bits=2, scale="absmax",
                                         per_channel=per_channel, learn_step=True),
                  filter_fn=lambda module, name: name == "0")
    return qat.quantized_layers(model)["0"].delta.detach()


@pytest.mark.parametrize("layout", ["channel", "group"])
def test_follower_step_rebases_the_weights_exactly_and_leaves_the_state(layout):
    """After a Δ step Δ_old → Δ_new: Δ̃ = Δ_new, M⁻¹(w̃; Δ_new) is the w that M⁻¹(w̃; Δ_old) was
    (not w̃ itself: M moved), and the momentum is kept (an O(η²) correction, see _lsq_twin)."""
    est = get_estimator(HTGE)
    layer = _linear(**LAYOUTS[layout])
    opt = torch.optim.SGD(layer.parameters(), lr=1e-3, momentum=0.9)
    layer(torch.randn(5, 8, dtype=torch.float64)).square().sum().backward()
    opt.step()
    twin, twin_opt = sq.to_ste(layer, opt)
    follower = qat.LearnedStepTwin(twin, twin_opt, layer)
    fq, latent = qat.quantized_layers(twin)[""], qat.latent_weight(twin, "")
    w, w_twin = qat._maps.weight_map(sq.unremap, est, fq)(latent), latent.detach().clone()
    momentum = twin_opt.state[latent]["momentum_buffer"].clone()
    step = qat.quantized_layers(layer)[""].delta
    with torch.no_grad():
        step.mul_(torch.linspace(0.9, 1.1, step.numel(), dtype=torch.float64).reshape(step.shape))
    follower.step()
    assert torch.equal(fq.delta, qat.quantized_layers(layer)[""].delta)
    torch.testing.assert_close(qat._maps.weight_map(sq.unremap, est, fq)(latent), w, rtol=1e-10, atol=1e-12)
    assert (latent != w_twin).double().mean() > 0.85  # moved with its row's Δ (w ≈ 0 stays)
    assert torch.equal(twin_opt.state[latent]["momentum_buffer"], momentum)


def test_follower_refuses_a_twin_that_learns_its_own_delta_and_mismatched_nets():
    layer = _linear()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    twin, twin_opt = sq.to_ste(layer, opt)
    qat.quantized_layers(twin)[""].delta.requires_grad_(True)
    with pytest.raises(ValueError, match=r"the twin trains its own Δ of layer ''.*freeze it"):
        qat.LearnedStepTwin(twin, twin_opt, layer)
    plain = nn.Linear(8, 6).double()
    qat.quantize_(plain, qat.QuantConfig(estimator=HTGE, bits=2))
    with pytest.raises(ValueError, match="learned-Δ layers"):
        qat.LearnedStepTwin(twin, twin_opt, plain)


def test_from_ste_learns_delta_again():
    layer = _linear()
    twin, _ = sq.to_ste(layer, optimizer_kind="sgd")
    assert not qat.quantized_layers(twin)[""].delta.requires_grad
    back, _ = sq.from_ste(twin, HTGE, optimizer_kind="sgd")
    assert qat.quantized_layers(back)[""].delta.requires_grad
    torch.testing.assert_close(qat.latent_weight(back, ""), qat.latent_weight(layer, ""), rtol=1e-12, atol=1e-12)


def test_follower_refuses_an_unrelated_qnet_of_the_same_shape():
    """It followed another net's Δ silently (agreement 0.47)."""
    layer = _linear(seed=0)
    twin, twin_opt = sq.to_ste(layer, torch.optim.SGD(layer.parameters(), lr=0.1))
    other = _linear(seed=1)  # same config and shape, other weights: another Δ under absmax
    with pytest.raises(ValueError, match=r"layer '' of the twin is on another Δ"):
        qat.LearnedStepTwin(twin, twin_opt, other)
    with torch.no_grad():  # the same Δ, but other weights: the levels disagree
        qat.quantized_layers(other)[""].delta.copy_(qat.quantized_layers(layer)[""].delta)
    with pytest.raises(ValueError, match=r"only \d+\.\d% of the twin's quantized weights agree"):
        qat.LearnedStepTwin(twin, twin_opt, other)
    qat.LearnedStepTwin(twin, twin_opt, layer)  # its own Q̂-net
