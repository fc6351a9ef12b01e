"""Evolving estimators: the STE twin follows a scheduled Q̂-net to second order; bad schedules are refused."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from stequiv.core import alpha
from stequiv.models import ConvNet
from stequiv.qat import EstimatorSchedule, ScheduledEstimator, ScheduledTwin
from stequiv.qat.internal import fast_inverse

STEPS = 12
# EDE in weight units on the MLP's hidden layers (weights ≤ 0.125): t from 1 to 8 keeps tw ≤ 1,
# so Q̂′ differs from the STE by up to ~2.4x and M stays well conditioned.
EDE = EstimatorSchedule.ir_net(STEPS, 4, t_min=1.0, t_max=8.0)
DSQ = EstimatorSchedule.anneal("dsq", "alpha", 0.5, 0.1, STEPS, 4)
CASES = {"ede-sgd": (EDE, 1, "sgd"), "dsq-sgd": (DSQ, 2, "sgd"), "dsq-adam": (DSQ, 2, "adam")}
LR = {"sgd": 1e-2, "adam": 1e-3}


def _optimizer(kind, params, lr):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr, eps=1e-200)  # ε → 0 as in Theorem 5.2's proof


def _qnet(schedule, bits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 10)).double()
    cfg = sq.QuantConfig(estimator=schedule.at(0), bits=bits, scale="absmax")
    return sq.quantize_(model, cfg, filter_fn=lambda m, n: n in ("0", "2"))


def _batches(n):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 64, generator=g, dtype=torch.float64),
             torch.randint(0, 10, (32,), generator=g)) for _ in range(n)]


def _train(nets, batches):
    for x, y in batches:
        for net, opt, follower in nets:
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
            if follower is not None:
                follower.step()


def _pair(case, lr, follow=True):
    schedule, bits, kind = CASES[case]
    model = _qnet(schedule, bits)
    opt = _optimizer(kind, model.parameters(), lr)
    twin, twin_opt = sq.to_ste(model, opt)
    follower = ScheduledTwin(twin, twin_opt, schedule) if follow else None
    return (model, opt, ScheduledEstimator(model, schedule)), (twin, twin_opt, follower)


def _ebar(case, lr, follow=True):
    a, b = _pair(case, lr, follow)
    _train([a, b], _batches(STEPS))
    return sq.alignment(a[0], b[0], remap=CASES[case][2] == "sgd").ebar


@pytest.mark.parametrize("case", sorted(CASES))
def test_twin_tracks_a_schedule_to_second_order(case):
    """Ē over a fixed number of steps falls ~100× when η falls 10× (the mismatch per unit of
    travel ~10×): second order. First order would give 10×."""
    lr = LR[CASES[case][2]]
    big, small = _ebar(case, lr), _ebar(case, lr / 10)
    assert small > 0 and big / small > 40


@pytest.mark.parametrize("case", ["ede-sgd", "dsq-sgd", "dsq-adam"])
def test_a_twin_that_ignores_the_schedule_drifts(case):
    lr = LR[CASES[case][2]] / 10
    assert _ebar(case, lr, follow=False) > 20 * _ebar(case, lr)


def test_schedule_changes_estimator_weights_and_learning_rate():
    a, b = _pair("dsq-sgd", 1e-2)
    q = sq.quantized_layers(a[0])["2"].quantizer()
    _train([a, b], _batches(3))  # stage 1 starts at step 3
    new = DSQ.at(3)
    assert sq.quantized_layers(a[0])["2"].estimator == new
    assert isinstance(sq.quantized_layers(b[0])["2"].estimator, type(sq.ste_twin(new, q)))
    lrs = {g["lr"] for g in b[1].param_groups if any(p is sq.latent_weight(b[0], "2") for p in g["params"])}
    assert len(lrs) == 1 and lrs.pop() == pytest.approx(1e-2 * alpha(new, q))
    assert sq.alignment(a[0], b[0]).agreement == 1.0


def test_scheduler_base_lrs_follow_alpha():
    model = _qnet(DSQ, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    twin, twin_opt, twin_sched = sq.to_ste(model, opt, sched)
    follower = ScheduledTwin(twin, twin_opt, DSQ, scheduler=twin_sched)
    before = list(twin_sched.base_lrs)
    _train([(twin, twin_opt, follower)], _batches(3))
    twin_sched.step()
    q = sq.quantized_layers(model)["2"].quantizer()
    ratio = alpha(DSQ.at(3), q) / alpha(DSQ.at(0), q)
    assert any(math.isclose(n, o * ratio) for n, o in zip(twin_sched.base_lrs, before, strict=True))
    assert {g["lr"] for g in twin_opt.param_groups} == set(twin_sched.base_lrs)


def test_checkpoint_resumes_the_schedule_bit_identically():
    batches = _batches(8)
    a, b = _pair("dsq-sgd", 1e-2)
    _train([a, b], batches)
    c, d = _pair("dsq-sgd", 1e-2)
    _train([c, d], batches[:5])
    saved = [{k: obj.state_dict() for k, obj in zip("nof", net, strict=True)} for net in (c, d)]
    e, f = _pair("dsq-sgd", 1e-2)
    # The schedule first: it sets the step-5 estimator, which the model's checkpoint records and
    # load_state_dict checks (a model still at the step-0 estimator is refused).
    for net, s in zip((e, f), saved, strict=True):
        for obj, k in sorted(zip(net, "nof", strict=True), key=lambda ok: ok[1] != "f"):
            obj.load_state_dict(s[k])
    assert f[2].current == DSQ.at(5) and f[2].steps == 5
    _train([e, f], batches[5:])
    for x, y in ((a, e), (b, f)):
        for p, q in zip(x[0].parameters(), y[0].parameters(), strict=True):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match="another estimator schedule"):
        ScheduledEstimator(_qnet(EDE, 1), EDE).load_state_dict(saved[0]["f"])


def test_ir_net_schedule_is_the_sources():
    s = EstimatorSchedule.ir_net(100, 4)  # T_min = 0.1, T_max = 10
    assert [st for st, _ in s.stages] == [0, 25, 50, 75]
    for e, (_, est) in enumerate(s.stages):
        t = 0.1 * 10 ** ((e / 4) * math.log10(100.0))
        assert est.t == pytest.approx(t) and est.k == pytest.approx(max(1 / t, 1.0))
    assert s.at(24) == s.stages[0][1] and s.at(25) == s.stages[1][1] and s.at(10**6) == s.stages[3][1]
    assert EstimatorSchedule.from_dict(s.to_dict()) == s


def test_schedule_outside_the_estimators_range_is_refused():
    with pytest.raises(ValueError, match=r"stage from step 9 .*`alpha` must lie in \(0.0, 1.0\).*allowed range"):
        EstimatorSchedule.anneal("dsq", "alpha", 0.4, 1.0, 12, 4, spacing="linear")
    with pytest.raises(ValueError, match="no parameter 'beta'"):
        EstimatorSchedule.anneal("dsq", "beta", 0.4, 0.1, 12, 4)
    with pytest.raises(ValueError, match="do not fit in 3 steps"):
        EstimatorSchedule.anneal("dsq", "alpha", 0.4, 0.1, 3, 4)
    with pytest.raises(ValueError, match="increase strictly"):
        EstimatorSchedule(((0, "ste"), (0, "htge")))


def test_schedule_that_makes_the_derivative_vanish_in_a_bin_is_refused_at_set_up():
    # HTGE sharpened to t = 2000: sech² underflows to 0 inside every bin, so M does not exist
    schedule = EstimatorSchedule.anneal("htge", "t", 4.0, 2000.0, 12, 3)
    model = _qnet(schedule, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    twin, twin_opt = sq.to_ste(model, opt)
    with pytest.raises(ValueError, match=r"stage from step 8 on layer '0'.*zero or not finite.*end the schedule"):
        ScheduledTwin(twin, twin_opt, schedule)


def test_group_whose_alphas_part_is_refused():
    # α = 1 on a binary grid, α < 1 on a multi-bit one: one group cannot hold both
    model = ConvNet(generator=torch.Generator().manual_seed(0))
    sq.quantize_(model, {"conv2": sq.QuantConfig(estimator="dsq", bits=1),
                         "conv3": sq.QuantConfig(estimator="dsq", bits=3)})
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    twin, twin_opt = sq.to_ste(model, opt)
    # to_ste splits groups by α; merge them back to provoke the refusal
    merged = torch.optim.SGD([p for g in twin_opt.param_groups for p in g["params"]], lr=1e-2)
    with pytest.raises(ValueError, match="whose α differ"):
        ScheduledTwin(twin, merged, DSQ)
    with pytest.raises(ValueError, match="no quantized layer"):
        ScheduledEstimator(nn.Linear(2, 2), DSQ)


@pytest.mark.parametrize("t", [0.1, 3.0, 10.0])
def test_fast_binary_inverse_is_the_cores(t):
    q = sq.BinaryQuantizer(0.1)
    est = sq.get_estimator("ede", t=t, k=max(1 / t, 1.0))
    w = np.random.default_rng(0).normal(0, 0.3, 4000)
    w[:3] = [0.0, 1e-30, -1e-20]
    y = sq.remap(est, q, w)
    fast, exact = fast_inverse(est, q, y), sq.unremap(est, q, y)
    np.testing.assert_allclose(fast[3:], exact[3:], rtol=1e-8)
    np.testing.assert_allclose(fast, w, rtol=1e-8, atol=1e-20)  # and near 0 better than bisection
    assert np.array_equal(q.code(fast), q.code(y))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_state_scaled_in_place_is_the_mapped_state(kind):
    """A schedule change scales the twin's optimizer state in place (``scale_state_``): exactly
    what ``map_state`` writes into a fresh optimizer, bit for bit, and no other state touched."""
    from stequiv.qat import internal as _optim

    model = nn.Linear(6, 3)
    opt = _optimizer(kind, model.parameters(), 0.1)
    F.mse_loss(model(torch.randn(5, 6)), torch.randn(5, 3)).backward()
    opt.step()
    scale = torch.rand_like(model.weight) + 0.5
    mapped = _optimizer(kind, model.parameters(), 0.1)
    _optim.map_state(opt, mapped, {id(p): p for p in model.parameters()},
                     lambda p: scale if p is model.weight else None)
    before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    _optim.scale_state_(opt, {model.weight: scale})
    for p in model.parameters():
        assert opt.state[p].keys() == mapped.state[p].keys()
        for key, value in opt.state[p].items():
            assert torch.equal(value, mapped.state[p][key]), key
    assert all(torch.equal(v, before[model.bias][k]) for k, v in opt.state[model.bias].items())
    moment = "momentum_buffer" if kind == "sgd" else "exp_avg_sq"
    assert not torch.equal(opt.state[model.weight][moment], before[model.weight][moment])
