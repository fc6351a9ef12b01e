"""Optimizer families: each twin's next step equals the Q̂-net's through M (float64), and the
optimizers without a twin are refused with their reason (or drift at first order when forced)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from twin_reference import mismatch_per_movement

HTGE = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, scale="init-bound")
EXACT = 1e-10  # relative one-step mismatch of an exact twin in float64 (roundoff only)


def _model(seed=0):
    """A float64 MLP whose two Linear weights are quantized (2-D, as Muon requires)."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.2)
    return sq.quantize_(model, HTGE, filter_fn=lambda m, n: isinstance(m, nn.Linear))


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 20, generator=g, dtype=torch.float64), torch.randint(0, 10, (32,), generator=g)


def _step(model, opt, batch):
    opt.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()


def _weights(model):
    return [p for n, p in model.named_parameters() if n.endswith("weight") or "original" in n]


def _relative_residual(make, lr_scale=1.0, before=3, approximate=False, params=None):
    """After ``before`` steps, convert; one more step of both: Σ|M(w_Q̂) − w_twin| / Σ|Δw_twin|."""
    model = _model()
    chosen = (params or (lambda m: m.parameters()))(model)
    opt = make(chosen)
    for group in opt.param_groups:
        group["lr"] *= lr_scale
    for seed in range(before):
        _step(model, opt, _batch(seed))
    twin, twin_opt = sq.to_ste(model, opt, approximate=approximate)
    remap = sq.optimizer_kind(opt, approximate=approximate) == "sgd" if approximate is False else False
    start = {n: sq.latent_weight(twin, n).detach().clone() for n in sq.quantized_layers(twin)}
    _step(model, opt, _batch(10))
    _step(twin, twin_opt, _batch(10))
    return mismatch_per_movement(model, twin, start, remap)


def _muon(p):
    return torch.optim.Muon(p, lr=0.02, weight_decay=0.1)


def _matrices(model):
    return [sq.latent_weight(model, n) for n in sq.quantized_layers(model)]


EXACT_TWINS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-200),
    "amsgrad": lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-200, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3, eps=1e-200, weight_decay=0.1),
    "nadam": lambda p: torch.optim.NAdam(p, lr=1e-3, eps=1e-200),
    "nadam-decoupled": lambda p: torch.optim.NAdam(p, lr=1e-3, eps=1e-200, weight_decay=0.1,
                                                   decoupled_weight_decay=True),
    "adamax": lambda p: torch.optim.Adamax(p, lr=1e-3, eps=1e-200),
    "rmsprop-centered": lambda p: torch.optim.RMSprop(p, lr=1e-3, eps=1e-200, centered=True,
                                                      momentum=0.9),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2, eps=1e-200, initial_accumulator_value=0.1),
}


@pytest.mark.parametrize("name", list(EXACT_TWINS))
def test_adaptive_twin_next_step_is_exact(name):
    assert _relative_residual(EXACT_TWINS[name]) < EXACT


def test_radam_decoupled_twin_is_exact_after_its_unrectified_steps():
    def make(p):
        return torch.optim.RAdam(p, lr=1e-3, eps=1e-200, betas=(0.9, 0.99), weight_decay=0.1,
                                 decoupled_weight_decay=True)

    assert _relative_residual(make, before=8) < EXACT  # β₂ = 0.99: 5 unrectified steps
    with pytest.raises(ValueError, match=r"RAdam's first 5 steps.*taken 2\. Convert after step 5"):
        _relative_residual(make, before=2)


def test_lion_twin_next_step_is_exact_sign_unchanged_by_positive_factor():
    lion = pytest.importorskip("lion_pytorch")
    make = lambda p: lion.Lion(p, lr=1e-4, weight_decay=1.0, decoupled_weight_decay=True)  # noqa: E731
    assert _relative_residual(make) == 0.0
    model = _model()
    _, twin_opt = sq.to_ste(model, make(model.parameters()))
    assert twin_opt.decoupled_wd is True  # the constructor flag kept outside `defaults` follows


def test_schedule_free_adamw_twin_next_step_is_exact():
    sf = pytest.importorskip("schedulefree")

    def make(p):
        opt = sf.AdamWScheduleFree(p, lr=1e-3, eps=1e-200, weight_decay=0.01)
        opt.train()
        return opt

    assert _relative_residual(make) < EXACT


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9, "dampening": 0.3}, {"momentum": 0.9, "nesterov": True}])
def test_sgd_twin_agrees_to_second_order(kw):
    make = lambda p: torch.optim.SGD(p, lr=0.01, **kw)  # noqa: E731
    rel, rel_small = _relative_residual(make), _relative_residual(make, lr_scale=0.1)
    assert rel < 1e-2
    assert rel_small < 0.2 * rel  # the Taylor remainder: relative to the step it falls with η


@pytest.mark.parametrize("eps", [1e-4, 1e-3])
def test_adam_epsilon_effect_is_first_order_and_proportional_to_epsilon(eps):
    """The twin would need ε/Q̂′: with one ε its relative error ~ ε|1/Q̂′ − 1|/√v̂, which does not
    fall with η and grows in proportion to ε (while ε ≪ √v̂)."""
    make = lambda e: lambda p: torch.optim.Adam(p, lr=1e-3, eps=e)  # noqa: E731
    rel = _relative_residual(make(eps))
    assert rel > 1e3 * EXACT
    assert _relative_residual(make(eps), lr_scale=0.1) == pytest.approx(rel, rel=0.05)
    assert 3 < rel / _relative_residual(make(eps / 10)) < 11


def test_muon_is_refused_for_its_update_not_for_decay_and_drifts_at_first_order():
    model = _model()
    with pytest.raises(ValueError, match=r"Muon \(Muon\) has no exact STE twin: its update "
                       r"orth\(b\).*not coordinatewise.*decoupled decay is exact") as info:
        sq.to_ste(model, _muon(_matrices(model)))
    assert "coupled decay λw" not in str(info.value)
    with pytest.warns(UserWarning, match="approximate twin"):
        rel = _relative_residual(_muon, approximate=True, params=_matrices)
        rel_small = _relative_residual(_muon, lr_scale=0.1, approximate=True, params=_matrices)
    assert rel > 1e-3 and rel_small > 0.5 * rel  # first order: does not fall with η


def test_adafactor_refused_and_first_order_when_forced():
    make = lambda p: torch.optim.Adafactor(p, lr=1e-2)  # noqa: E731
    model = _model()
    with pytest.raises(ValueError, match=r"Adafactor.*factored second moment.*not coordinatewise"):
        sq.to_ste(model, make(model.parameters()))
    with pytest.warns(UserWarning, match="approximate twin"):
        rel = _relative_residual(make, approximate=True)
        rel_small = _relative_residual(make, lr_scale=0.1, approximate=True)
    assert rel > 1e-3 and rel_small > 0.5 * rel


@pytest.mark.parametrize(("package", "name"), [("pytorch_optimizer", "Shampoo"),
                                                ("pytorch_optimizer", "SOAP"), ("heavyball", "SOAP")])
def test_matrix_preconditioners_are_refused(package, name):
    cls = getattr(pytest.importorskip(package), name)
    model = _model()
    with pytest.raises(ValueError, match=rf"{name} \(Shampoo/SOAP\) has no exact STE twin.*"
                       r"matrix preconditioner.*Pass approximate=True"):
        sq.to_ste(model, cls(model.parameters(), lr=1e-3))


def test_schedule_free_sgd_is_refused_even_approximately():
    sf = pytest.importorskip("schedulefree")
    model = _model()
    opt = sf.SGDScheduleFree(model.parameters(), lr=0.1)
    for approximate in (False, True):
        with pytest.raises(ValueError, match=r"M\(y\) ≠ \(1−β\)M\(z\).*No nearest twin"):
            sq.to_ste(model, opt, approximate=approximate)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.Adam(p, weight_decay=1e-2),
    lambda p: torch.optim.NAdam(p, weight_decay=1e-2),
    lambda p: torch.optim.RMSprop(p, weight_decay=1e-2),
])
def test_coupled_decay_refused_and_warned_when_forced(make):
    model = _model()
    with pytest.raises(ValueError, match=r"weight_decay=0\.01 .*coupled decay λw enters the gradient"):
        sq.to_ste(model, make(model.parameters()))
    with pytest.warns(UserWarning, match="approximate twin.*coupled decay"):
        sq.to_ste(model, make(model.parameters()), approximate=True)


def test_family_recognised_by_update_rule_not_by_isinstance():
    class Renamed(torch.optim.Adam):  # keeps Adam's step: Adam's family
        pass

    class Custom(torch.optim.Adam):  # its own step: unknown, never guessed
        def step(self, closure=None):
            return super().step(closure)

    model = _model()
    assert sq.optimizer_kind(Renamed(model.parameters())) == "adam"
    with pytest.raises(ValueError, match=r"does not know optimizer Custom.*overrides step\(\)"):
        sq.to_ste(model, Custom(model.parameters()))
    opt = torch.optim.Adam(model.parameters())
    del opt.param_groups[0]["amsgrad"]  # not Adam's group layout any more
    with pytest.raises(ValueError, match="does not know optimizer Adam"):
        sq.optimizer_kind(opt)


def test_optional_optimizer_packages_not_imported_by_stequiv():
    code = ("import sys, stequiv, stequiv.qat; bad = [m for m in ('lion_pytorch', 'schedulefree', "
            "'heavyball', 'pytorch_optimizer') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def _clipped_residual(lr, own_norm, tau=0.05):
    """One clipped SGD step of the Q̂-net and its twin after the switch, relative to the twin's
    step: the twin scaled by the Q̂-net's clip coefficient, or clipping by its own norm."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    twin, twin_opt = sq.to_ste(model, opt)
    start = {n: sq.latent_weight(twin, n).detach().clone() for n in sq.quantized_layers(twin)}
    for net in (model, twin):
        net.zero_grad()
        F.cross_entropy(net(_batch(10)[0]), _batch(10)[1]).backward()
    norm = float(nn.utils.clip_grad_norm_(model.parameters(), tau))
    assert norm > tau  # clipping is active
    if own_norm:
        nn.utils.clip_grad_norm_(twin.parameters(), tau)
    else:
        for p in twin.parameters():
            p.grad.mul_(tau / (norm + 1e-6))
    opt.step()
    twin_opt.step()
    layers = sq.quantized_layers(model)
    step = residual = 0.0
    for n, w0 in start.items():
        mapped = sq.remap(layers[n].estimator, layers[n].quantizer(),
                          sq.latent_weight(model, n).detach().numpy())
        w_twin = sq.latent_weight(twin, n).detach().numpy()
        step += np.abs(w_twin - w0.numpy()).sum()
        residual += np.abs(mapped - w_twin).sum()
    return residual / step


def test_global_norm_clipping_keeps_the_sgd_twin_only_with_the_qnet_coefficient():
    """Through M the twin's step is α·c·∇f for the Q̂-net's coefficient c = τ/‖Q̂′∇f‖; clipping
    by its own norm ‖∇f‖ scales the step by another factor: a first-order error."""
    shared = [_clipped_residual(lr, own_norm=False) for lr in (1e-2, 1e-3)]
    own = [_clipped_residual(lr, own_norm=True) for lr in (1e-2, 1e-3)]
    assert shared[1] < 0.2 * shared[0]  # second order
    assert own[1] > 0.5 * own[0] and own[1] > 10 * shared[1]  # first order


def test_clip_grad_norm_pair_scales_the_twin_by_the_qnet_coefficient():
    model = _model()
    twin, _ = sq.to_ste(model, torch.optim.SGD(model.parameters(), lr=0.1))
    for net in (model, twin):
        F.cross_entropy(net(_batch(0)[0]), _batch(0)[1]).backward()
    before = {n: p.grad.clone() for n, p in twin.named_parameters()}
    q_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    norm = sq.qat.clip_grad_norm_pair_(model, twin, 0.01)
    torch.testing.assert_close(norm, q_norm)
    c = 0.01 / (float(q_norm) + 1e-6)
    assert c < 1  # clipping is active
    for n, p in twin.named_parameters():
        torch.testing.assert_close(p.grad, before[n] * c, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"`max_norm` must be > 0, got 0"):
        sq.qat.clip_grad_norm_pair_(model, twin, 0)


def test_optimizer_rule_names_family_rule_and_verdict():
    model = _model()
    rule = sq.qat.optimizer_rule(torch.optim.Muon(_matrices(model)))
    assert (rule.family, rule.kind, rule.verdict) == ("Muon", "adam", "first order")
    assert sq.qat.optimizer_rule(torch.optim.SGD(model.parameters(), lr=0.1)).verdict == "second order"
    with pytest.raises(ValueError, match="does not know optimizer LBFGS"):
        sq.qat.optimizer_rule(torch.optim.LBFGS(model.parameters()))


@pytest.mark.parametrize(("package", "make"), [
    ("torch", lambda p: torch.optim.Adagrad(p, lr=1e-2, initial_accumulator_value=0.1)),
    ("torch", lambda p: torch.optim.RMSprop(p, lr=1e-3, centered=True)),
    ("lion_pytorch", lambda p: __import__("lion_pytorch").Lion(p, lr=1e-4)),
])
def test_from_ste_maps_the_state_back(package, make):
    pytest.importorskip(package)
    model = _model()
    opt = make(model.parameters())
    for seed in range(2):
        _step(model, opt, _batch(seed))
    twin, twin_opt = sq.to_ste(model, opt)
    back, back_opt = sq.from_ste(twin, sq.get_estimator("htge", t=3.0), twin_opt)
    for (name, p), p_back in zip(model.named_parameters(), back.parameters(), strict=True):
        for key, value in opt.state[p].items():
            torch.testing.assert_close(back_opt.state[p_back][key], value, rtol=1e-12, atol=0,
                                       msg=f"{name} {key}")
