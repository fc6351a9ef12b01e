"""The STE twin: one step of the Q̂-model and of its twin agree through M (SGD) or directly (Adam)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from stequiv.models import ConvNet
from twin_reference import mismatch_per_movement

HTGE = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, scale="init-bound")


def _model(seed=0, config=HTGE):
    # float64, so that the float32 rounding of M (~1e-8 per weight) does not hide the
    # second-order remainder being measured
    model = ConvNet(generator=torch.Generator().manual_seed(seed)).double()
    return sq.quantize_(model, config, filter_fn=lambda m, n: n.startswith("conv"))


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, 1, 28, 28, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 10, (16,), generator=g)


def _step(model, opt, batch):
    opt.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()


def _latents(model):
    return {n: sq.latent_weight(model, n).detach().clone() for n in sq.quantized_layers(model)}


def _misalignment(q_model, twin, remap):
    """max |M(w_Q̂) − w_twin| relative to the size of the twin's last step."""
    return sq.alignment(q_model, twin, remap=remap).ebar


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=1e-3),
    "momentum": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
    "nesterov": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True),
    # ε ≈ 0 (1e-200: no 0/0 for unused weights) as in Theorem 5.2's proof: a finite ε makes the correspondence first-order inexact
    # (relative error ~ ε/√v, ~5e-5 here with the default 1e-8)
    "adam": lambda p: torch.optim.Adam(p, lr=1e-4, betas=(0.9, 0.95), eps=1e-200),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-4, weight_decay=0.01, eps=1e-200),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-4, eps=1e-200),
}


def _relative_residual(name, lr_scale):
    """|M(w_Q̂) − w_twin| after one more step, relative to the twin's step (summed over weights)."""
    model = _model()
    opt = OPTIMIZERS[name](model.parameters())
    for group in opt.param_groups:
        group["lr"] *= lr_scale
    for seed in range(3):  # build up optimizer state
        _step(model, opt, _batch(seed))
    twin, twin_opt = sq.to_ste(model, opt)
    remap = sq.optimizer_kind(opt) == "sgd"
    assert sq.alignment(model, twin, remap=remap).agreement == 1.0
    start = _latents(twin)
    batch = _batch(10)
    _step(model, opt, batch)
    _step(twin, twin_opt, batch)
    return mismatch_per_movement(model, twin, start, remap)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_mid_training_switch_next_step_matches_to_first_order(name):
    rel = _relative_residual(name, 0.1)
    rel_small = _relative_residual(name, 0.01)
    assert rel < 1e-2
    # The mismatch is the Taylor remainder of Eq. 10: second order in η, so relative to the step
    # it shrinks with η (a first-order mistake in the mapping would leave it constant). Adam's
    # mapping is exact up to ε.
    assert rel_small < 0.2 * rel or rel < 1e-9, (rel, rel_small)


def _next_step_residual(model, opt, twin, twin_opt):
    batch = _batch(10)
    _step(model, opt, batch)
    _step(twin, twin_opt, batch)
    return sq.alignment(model, twin, remap=True).ebar


def test_unmapped_momentum_would_not_match():
    """The state mapping matters: the Q̂-net's momentum copied unchanged breaks the next step."""
    model = _model()
    opt = OPTIMIZERS["momentum"](model.parameters())
    for seed in range(3):
        _step(model, opt, _batch(seed))
    twin, twin_opt = sq.to_ste(model, opt)
    naive, naive_opt = sq.to_ste(model, opt)
    by_name = dict(model.named_parameters())
    naive_params = dict(naive.named_parameters())
    for name, p in by_name.items():
        if p in opt.state:
            naive_opt.state[naive_params[name]]["momentum_buffer"] = opt.state[p]["momentum_buffer"].clone()
    mapped = _next_step_residual(*copy.deepcopy((model, opt)), twin, twin_opt)
    unmapped = _next_step_residual(model, opt, naive, naive_opt)
    assert unmapped > 100 * mapped


def test_learning_rates_scale_by_alpha_only_for_quantized_weights_and_scheduler_follows():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    twin, twin_opt, twin_sched = sq.to_ste(model, opt, sched)
    a = sq.alpha(sq.get_estimator("htge", t=3.0), sq.UniformQuantizer(bits=2, delta=1.0))
    quantized = {id(sq.latent_weight(twin, n)) for n in sq.quantized_layers(twin)}
    for group in twin_opt.param_groups:
        is_q = {id(p) in quantized for p in group["params"]}
        assert len(is_q) == 1
        assert group["lr"] == pytest.approx(1e-3 * a if is_q.pop() else 1e-3)
    for _ in range(3):
        _step(model, opt, _batch())
        _step(twin, twin_opt, _batch())
        sched.step()
        twin_sched.step()
    ratios = sorted({round(g["lr"] / opt.param_groups[0]["lr"], 12) for g in twin_opt.param_groups})
    assert ratios == pytest.approx(sorted({1.0, a}))


def test_weights_remapped_for_sgd_untouched_for_adam():
    model = _model()
    twin, _ = sq.to_ste(model, torch.optim.SGD(model.parameters(), lr=1e-3))
    twin_adam, _ = sq.to_ste(model, torch.optim.Adam(model.parameters(), lr=1e-4))
    for name, fq in sq.quantized_layers(model).items():
        w = sq.latent_weight(model, name).detach().numpy()
        np.testing.assert_array_equal(sq.latent_weight(twin, name).detach().numpy(),
                                      sq.remap(fq.estimator, fq.quantizer(), w))
        np.testing.assert_array_equal(sq.latent_weight(twin_adam, name).detach().numpy(), w)
        assert sq.quantized_layers(twin)[name].estimator.name == "pwl"  # Appendix G: HTGE vanishes outside


def test_from_ste_inverts_to_ste():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for seed in range(2):
        _step(model, opt, _batch(seed))
    twin, twin_opt = sq.to_ste(model, opt)
    back, back_opt = sq.from_ste(twin, sq.get_estimator("htge", t=3.0), twin_opt)
    for name in sq.quantized_layers(model):
        torch.testing.assert_close(sq.latent_weight(back, name), sq.latent_weight(model, name),
                                   rtol=0, atol=1e-6)
    for g_back, g in zip(back_opt.param_groups, twin_opt.param_groups, strict=True):
        assert g_back["lr"] > 0 and g["lr"] > 0
    assert {round(g["lr"], 12) for g in back_opt.param_groups} == {1e-3}


def test_conversion_errors():
    model = _model()
    opt_sgd_wd = torch.optim.SGD(model.parameters(), lr=1e-3, weight_decay=1e-4)
    with pytest.raises(ValueError, match=r"weight_decay=0\.0001.*not mapped by M"):
        sq.to_ste(model, opt_sgd_wd)
    with pytest.raises(ValueError, match="does not know optimizer LBFGS; supported: SGD"):
        sq.to_ste(model, torch.optim.LBFGS(model.parameters()))
    other = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="not the model's"):
        sq.to_ste(model, torch.optim.SGD(other.parameters(), lr=1.0))
    with pytest.raises(ValueError, match="no quantized layer"):
        sq.to_ste(nn.Linear(3, 3), torch.optim.SGD(nn.Linear(3, 3).parameters(), lr=1.0))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    cyclic = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 1e-3)
    with pytest.raises(ValueError, match="does not know scheduler CyclicLR"):
        sq.to_ste(model, opt, cyclic)
    with pytest.raises(ValueError, match="quantized layers differ"):
        sq.alignment(model, sq.quantize_(ConvNet(), HTGE))


def test_alignment_tracker_records_history():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    twin, twin_opt = sq.to_ste(model, opt)
    tracker = sq.AlignmentTracker(model, twin, every=2)
    for step in range(5):
        _step(model, opt, _batch(step))
        _step(twin, twin_opt, _batch(step))
        tracker.update(step)
    assert [h["step"] for h in tracker.history] == [0, 2, 4]
    assert all(0 <= h["ebar"] < 0.01 and h["agreement"] > 0.99 for h in tracker.history)


@pytest.mark.parametrize(("name", "scale"), [("momentum", "M′/α"), ("adam", "1/Q̂′")])
def test_state_scale_inside_and_outside_the_range(name, scale):
    """SGD momentum maps by M′(w)/α (1/α where HTGE vanishes, beyond the range: M′ = 1 there),
    Adam's first moment by 1/Q̂′(w) (1 where it vanishes), checked weight by weight."""
    model = _model()
    opt = OPTIMIZERS[name](model.parameters())
    _step(model, opt, _batch())
    layers = sq.quantized_layers(model)
    key = "momentum_buffer" if name == "momentum" else "exp_avg"
    with torch.no_grad():
        for n in layers:
            w = sq.latent_weight(model, n)
            w[0].mul_(3.0)  # push one filter's weights partly beyond the clip range
            opt.state[w][key] = torch.ones_like(w)
    twin, twin_opt = sq.to_ste(model, opt)
    for n, fq in layers.items():
        est, q = fq.estimator, fq.quantizer()
        w = sq.latent_weight(model, n).detach().numpy()
        a = sq.alpha(est, q)
        v = q.to_grid(w)
        if scale == "M′/α":
            expected = sq.remap_derivative(est, q, w) / a
        else:
            g = est.gradient(v, q.lower, q.upper, q.offset)
            expected = np.where(g > 0, 1 / np.where(g > 0, g, 1), 1.0)
        outside = (v < q.lower) | (v > q.upper)
        assert outside.any() and not outside.all()
        got = twin_opt.state[sq.latent_weight(twin, n)][key].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12)
