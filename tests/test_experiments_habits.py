"""`stequiv reproduce` with gradient clipping and a weight EMA (config keys `clip_grad_norm`,
`ema_decay`): the twin is clipped with the Q̂-net's coefficient, the EMA copies are compared,
the keys are recorded and a resumed run is bit-identical."""


import pytest
import torch

from stequiv.experiments import ExperimentConfig, PairSpec, load_data, run_group
from stequiv.experiments.parallel import Dist
from stequiv.experiments.results import write_config, write_report
from stequiv.experiments.testing import Group

CPU = Dist(0, 1, torch.device("cpu"))
TINY = {"max_train_samples": 128, "epochs": 1, "batch_size": 32, "eval_every": 2,
        "checkpoint_every": 2, "optimizers": ("sgd",), "experiments": ("baseline", "lr-tweak")}
SPECS = [PairSpec("sgd-baseline", "sgd", "baseline"),
         PairSpec("sgd-lr-tweak", "sgd", "lr-tweak", partner="lr-tweak")]


@pytest.fixture(scope="module")
def habits():
    config = ExperimentConfig(**TINY, clip_grad_norm=0.5, ema_decay=0.9)
    return config, load_data(config)


def test_the_twin_is_clipped_with_the_qnet_coefficient(habits):
    config, data = habits
    group = Group(config, SPECS, data, CPU)
    x, y = data.train.batch(list(range(32)))
    nets = [group.qnet, *group.partners]
    for net in nets:
        net.backward(x, y)
    raw = [torch.cat([p.grad.flatten() for p in n.model.parameters()]) for n in nets]
    q_norm = raw[0].norm()
    assert q_norm > 2 * config.clip_grad_norm  # clipping is active
    group._clip(config.clip_grad_norm)
    clipped = [torch.cat([p.grad.flatten() for p in n.model.parameters()]) for n in nets]
    coefficient = config.clip_grad_norm / (q_norm + 1e-6)
    torch.testing.assert_close(clipped[0], raw[0] * coefficient)
    torch.testing.assert_close(clipped[1], raw[1] * coefficient)  # the twin: Q̂'s coefficient
    assert not torch.allclose(raw[1].norm(), q_norm, rtol=1e-3)  # not its own norm's
    torch.testing.assert_close(clipped[2].norm(), torch.tensor(config.clip_grad_norm), rtol=1e-5,
                               atol=0)  # the lr-tweak partner, a Q̂-net: its own norm


def test_clip_and_ema_are_recorded_reported_and_resume_bit_identically(habits, tmp_path,
                                                                       interrupt_at):
    config, data = habits
    dirs = [tmp_path / "a" / "runs" / s.run_id for s in SPECS]
    finals = run_group(config, SPECS, data, dirs, CPU, progress=False)
    for final in finals:
        assert final["clip_grad_norm"] == 0.5 and final["ema_decay"] == 0.9
        assert 0 < final["ebar_ema"] < 1 and 0 < final["agreement_ema"] <= 1
    resumed = [tmp_path / "b" / "runs" / s.run_id for s in SPECS]
    interrupt_at(3, run_group, config, SPECS, data, resumed, CPU, progress=False)
    again = run_group(config, SPECS, data, resumed, CPU, progress=False)
    for one, two in zip(finals, again, strict=True):
        for key in ("ebar", "ebar_ema", "agreement_ema", "nets"):
            assert one[key] == two[key]
    write_config(tmp_path / "a", config.to_dict())
    assert {"clip_grad_norm": 0.5, "ema_decay": 0.9}.items() <= config.to_dict().items()
    assert "clip_grad_norm" not in ExperimentConfig(**TINY).to_dict()  # off: config.json as before
    report = write_report(tmp_path / "a").read_text()
    assert "Clipping and weight EMA" in report and "Ē (EMA)" in report
