"""Issue 13 in the experiments: the activation-swap partner, schedule followers, the
degenerate-comparison flag on Point B, and the new presets' configs."""

import pytest
import torch

from stequiv import qat
from stequiv.core import get_estimator
from stequiv.experiments import PRESETS, ExperimentConfig, PairSpec, TrainData
from stequiv.experiments.config import PARTNERS, PROTOCOL
from stequiv.experiments.engine import (
    PARTNER_KINDS,
    NonFiniteError,
    build_partner,
    build_qnet,
    estimator_schedule,
    follower,
    make_optimizer,
)
from stequiv.experiments.parallel import Dist
from stequiv.experiments.results import point_checks
from stequiv.experiments.testing import Group
from stequiv.qat import internal as qat_degenerate

ROW = {"agreement": 0.99, "val_acc": [0.9, 0.9]}


def _summ(baseline, tweak, unadjusted):
    return {"sgd": {"baseline": {"ebar": baseline, **ROW}, "lr-tweak": {"ebar": tweak, **ROW},
                    "unadjusted": {"ebar": unadjusted, **ROW}}}


def test_point_b_holds_when_testable():
    a, b = point_checks(_summ(0.004, 0.005, 0.02), slope_spread=30.0)
    assert a.verdict == "holds" and b.verdict == "holds" and b.holds is True


def test_point_b_cannot_be_tested_when_the_estimator_is_nearly_the_ste():
    """The issue's reproduction: EDE at t = 0.1 has ρ = 1.0067 and Point B 'held'."""
    _, b = point_checks(_summ(3e-9, 1e-6, 3.2e-7), slope_spread=1.0067)
    assert b.holds is None
    assert b.verdict.startswith("cannot test Point B: the estimator is the STE to within 0.67 %")


def test_point_b_cannot_be_tested_below_the_lr_tweak_floor():
    _, b = point_checks(_summ(1e-8, 1e-5, 5e-7), slope_spread=2.0)
    assert b.holds is None and "below the lr-tweak floor" in b.verdict


def _config(**kw):
    return ExperimentConfig(**{**PRESETS["activations-quick"], **kw})


def test_activation_swap_partner_changes_only_the_activation_estimator():
    config = _config()
    qnet = build_qnet(config, 1, 10, torch.device("cpu"))
    acts = qat.activation_quantizers(qnet)
    assert list(acts) == list(qat.quantized_layers(qnet)) and acts["conv1"].config.bits == 4
    opt, sched = make_optimizer(config, "sgd", qnet, 1.0, 100)
    spec = PairSpec("sgd-activation-swap", "sgd", "activation-swap", partner="activation-swap")
    net, net_opt, _ = build_partner(config, spec, qnet, opt, sched)
    assert {a.estimator for a in qat.activation_quantizers(net).values()} == {get_estimator("ste")}
    assert {a.estimator for a in acts.values()} == {get_estimator("htge")}
    assert all(torch.equal(p, q) for p, q in zip(qnet.parameters(), net.parameters(), strict=True))
    assert [g["lr"] for g in net_opt.param_groups] == [g["lr"] for g in opt.param_groups]
    assert not spec.remap


def test_binary_quick_schedule_and_followers():
    config = ExperimentConfig(**PRESETS["binary-quick"])
    schedule = estimator_schedule(config, 100)
    ts = [e.t for _, e in schedule.stages]
    assert len(ts) == 20 and ts[0] == pytest.approx(1.0) and ts[-1] == pytest.approx(10 ** (19 / 20))
    assert {e.k for _, e in schedule.stages} == {1.0}  # t ≥ 1 throughout: Q̂′ = t·sech²(tw)
    qnet = build_qnet(config, 1, 10, torch.device("cpu"))
    assert "conv1" not in qat.quantized_layers(qnet)
    opt, sched = make_optimizer(config, "sgd", qnet, 1.0, 100)
    assert isinstance(follower(schedule, None, qnet, opt, sched, 0), qat.ScheduledEstimator)
    base = PairSpec("sgd-baseline", "sgd", "baseline")
    twin, twin_opt, twin_sched = build_partner(config, base, qnet, opt, sched)
    assert isinstance(follower(schedule, base, twin, twin_opt, twin_sched, 0), qat.ScheduledTwin)
    unadjusted = PairSpec("sgd-unadjusted", "sgd", "unadjusted")
    assert follower(schedule, unadjusted, twin, twin_opt, twin_sched, 0) is None
    assert follower(None, base, twin, twin_opt, twin_sched, 0) is None


def test_binary_quick_can_test_point_b_from_the_first_stage():
    """Issue 13: IR-Net's t = 0.1 start is the STE to < 1 % on these weights (ρ ≤ 1.01, Point B
    untestable); the preset's first stage alone already spreads Q̂′ by more than 1 %."""
    config = ExperimentConfig(**PRESETS["binary-quick"])
    qnet = build_qnet(config, 1, 10, torch.device("cpu"))
    first = estimator_schedule(config, 100).stages[0][1]
    assert qat_degenerate.slope_spread(qnet, [first]) > qat_degenerate.NEARLY_STE
    ir_net = ExperimentConfig(**{**PRESETS["binary-quick"], "schedule_t": (0.1, 10.0)})
    assert qat_degenerate.slope_spread(qnet, [estimator_schedule(ir_net, 100).stages[0][1]]) \
        < qat_degenerate.NEARLY_STE


def test_schedule_t_defaults_to_ir_net_and_must_increase():
    ts = [e.t for _, e in estimator_schedule(ExperimentConfig(estimator="ede", schedule="ir-net"),
                                             100).stages]
    assert ts[0] == pytest.approx(0.1) and ts[-1] == pytest.approx(0.1 * 100 ** (19 / 20))
    assert "schedule_t" not in ExperimentConfig().to_dict()  # an old config.json reads the same
    with pytest.raises(ValueError, match=r"`schedule_t` \(t_min, t_max\) must increase, got \[10.0, 1.0\]"):
        ExperimentConfig(estimator="ede", schedule="ir-net", schedule_t=(10.0, 1.0))


@pytest.mark.parametrize(("kw", "match"), [
    ({"schedule": "ir-net"}, "needs `estimator` 'ede'"),
    ({"activation_bits": None}, "set `activation_bits`"),
    ({"activation_swap_to": "htge"}, "must differ"),
])
def test_bad_beyond_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        _config(**kw)


def test_default_experiments_leave_activation_swap_out():
    assert "activation-swap" not in ExperimentConfig().experiments


def test_every_partner_of_the_protocol_has_one_registry_entry():
    assert tuple(PARTNER_KINDS) == PARTNERS
    assert {row.partner for row in PROTOCOL.values()} <= set(PARTNER_KINDS)


class _Digits:
    """Eight random 28x28 images of ten classes, in memory: enough for one group step."""

    in_channels, num_classes = 1, 10

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.rand(8, 1, 28, 28, generator=g), torch.arange(8) % 10

    def __len__(self) -> int:
        return len(self.y)


@pytest.mark.parametrize(("experiment", "partner", "role"), [
    ("activation-swap", "activation-swap", "the Q̂-net with activation estimator 'ste'"),
    ("lr-tweak", "lr-tweak", "the Q̂-net with lr × lr_tweak"),
    ("baseline", "ste", "the STE twin"),
])
def test_a_nan_loss_of_the_partner_names_that_partner(experiment, partner, role):
    """The error names the partner that failed: the activation swap is not "the STE twin"."""
    config = _config(batch_size=4)
    data = TrainData(_Digits(), _Digits())  # type: ignore[arg-type]
    spec = PairSpec(f"sgd-{experiment}", "sgd", experiment, partner=partner)
    group = Group(config, [spec], data, Dist(0, 1, torch.device("cpu")))
    with torch.no_grad():  # the float classifier's bias: the loss is NaN, every activation finite
        list(group.partners[0].model.parameters())[-1].fill_(float("nan"))
    batch = (data.train.x[:4], data.train.y[:4])
    with pytest.raises(NonFiniteError, match=rf"sgd-{experiment}, step 1: the training loss of net b "
                                             rf"of sgd-{experiment} \({role}\) is nan"):
        group.train_step(batch)


def test_a_learning_rate_beyond_float32_stops_at_the_first_step_naming_it():
    """lr 1e308 cannot be a float32 step size: torch's SGD raised "value cannot be converted to
    type float without overflow" (a RuntimeError with a traceback) inside the first step."""
    config = _config(batch_size=4, lr_sgd=1e308)
    data = TrainData(_Digits(), _Digits())  # type: ignore[arg-type]
    group = Group(config, [PairSpec("sgd-baseline", "sgd", "baseline")], data,
                  Dist(0, 1, torch.device("cpu")))
    before = [p.detach().clone() for p in group.qnet.model.parameters()]
    with pytest.raises(NonFiniteError, match=r"sgd-baseline, step 1: the learning rate of net a .* "
                                             r"is 1e\+308, beyond torch.float32's largest number "
                                             r"3.4e\+38.* try a smaller `lr_sgd`"):
        group.train_step((data.train.x[:4], data.train.y[:4]))
    assert all(torch.equal(p, b) for p, b in zip(group.qnet.model.parameters(), before, strict=True))
