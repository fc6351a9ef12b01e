"""The transformer reproduction (issue 11, item 7): the per-target loss, the lm config, and the
lm-quick preset end to end at 4 and 2 bits on a small text the test writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from stequiv import experiments
from stequiv.cli import main
from stequiv.experiments import PRESET_BITS, PRESETS, ExperimentConfig
from stequiv.experiments.engine import build_qnet, correct, cross_entropy, make_optimizer


def test_image_batches_keep_the_plain_cross_entropy_bit_for_bit() -> None:
    logits = torch.randn(7, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(7) % 10
    assert torch.equal(cross_entropy(logits, labels), F.cross_entropy(logits, labels))
    assert correct(logits, labels).item() == (logits.argmax(1) == labels).sum().item()


def test_sequence_batches_average_over_every_position() -> None:
    logits = torch.randn(2, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([[0, 1, 2], [3, 4, 0]])
    by_hand = -sum(torch.log_softmax(logits[n, t], 0)[targets[n, t]]
                   for n in range(2) for t in range(3)) / 6
    torch.testing.assert_close(cross_entropy(logits, targets), by_hand)
    torch.testing.assert_close(cross_entropy(logits, targets, "sum"), 6 * by_hand)
    hits = sum(int(logits[n, t].argmax() == targets[n, t]) for n in range(2) for t in range(3))
    assert correct(logits, targets).item() == hits
    with pytest.raises(ValueError, match=r"shape \(2, 3, 5\) do not fit targets of shape \(2, 4\)"):
        cross_entropy(logits, torch.zeros(2, 4, dtype=torch.int64))


def test_lm_config_and_optimizer() -> None:
    config = ExperimentConfig(**PRESETS["lm-quick"])
    assert PRESET_BITS["lm"] == PRESET_BITS["lm-quick"] == (4, 2)
    net = build_qnet(config, 1, 256, torch.device("cpu"))
    opt, _ = make_optimizer(config, "adam", net, 1.0, 10)
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.1
    plain = ExperimentConfig(**{**PRESETS["lm-quick"], "weight_decay": 0.0})
    assert type(make_optimizer(plain, "adam", net, 1.0, 10)[0]) is torch.optim.Adam
    with pytest.raises(ValueError, match=r"`model` 'convnet' does not fit `dataset` 'fortunes'"):
        ExperimentConfig(dataset="fortunes")
    with pytest.raises(ValueError, match=r"`model` 'transformer-tiny' does not fit `dataset` 'mnist-5k'"):
        ExperimentConfig(model="transformer-tiny")
    with pytest.raises(ValueError, match=r"`weight_decay` must be >= 0, got -1"):
        ExperimentConfig(weight_decay=-1)


@pytest.mark.parametrize(("extra", "expected"), [
    ([], [(4, "4-bit"), (2, "2-bit")]),
    (["--bits", "3"], [(3, "")]),
    (["--set", "bits=3"], [(3, "")]),
])
def test_lm_presets_sweep_bits_unless_given(tmp_path, monkeypatch, extra, expected) -> None:
    seen = []
    monkeypatch.setattr(experiments, "reproduce",
                        lambda config, out, **k: seen.append((config.bits, Path(out))) or {})
    result = CliRunner().invoke(main, ["reproduce", "--preset", "lm-quick", "--out", str(tmp_path),
                                       *extra])
    assert result.exit_code == 0, result.output
    assert seen == [(b, tmp_path / sub) for b, sub in expected]


def _write_text(folder: Path) -> Path:
    """120 short fortunes of English-like words (12 go to validation)."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven",
             "wizards", "quietly", "hex"]
    folder.mkdir()
    entries = [" ".join(words[(k * 7 + j) % len(words)] for j in range(12 + k % 5)) + ".\n"
               for k in range(120)]
    (folder / "fortunes").write_text("%\n".join(entries) + "%\n")
    return folder


def test_lm_quick_end_to_end_at_4_and_2_bits(tmp_path: Path) -> None:
    text = _write_text(tmp_path / "text")
    out = tmp_path / "out"
    args = ["reproduce", "--preset", "lm-quick", "--out", str(out), "--no-progress",
            "--set", f"data_dir={text}", "--set", "max_train_samples=48", "--set", "eval_every=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for bits in (4, 2):
        folder = out / f"{bits}-bit"
        assert json.loads((folder / "config.json").read_text())["bits"] == bits
        runs = {p.name: json.loads((p / "final.json").read_text())
                for p in (folder / "runs").iterdir()}
        assert set(runs) >= {"sgd-baseline", "sgd-lr-tweak", "sgd-unadjusted", "adam-baseline",
                             "adam-lr-tweak"}
        for run in runs.values():
            assert run["steps"] == 3
            for net in run["nets"].values():
                assert math.isfinite(net["val_loss"]) and 0 <= net["val_acc"] <= 1
        # Point A at the switch: the twin starts at M(w) (E = 0); the unadjusted one does not.
        assert runs["sgd-baseline"]["ebar"] < runs["sgd-unadjusted"]["ebar"]
        assert (folder / "report.md").is_file() and (folder / "summary.json").is_file()
    # the overview: both widths, each net's validation loss with its perplexity exp(loss)
    overview = (out / "overview.md").read_text()
    run = json.loads((out / "2-bit" / "runs" / "adam-lr-tweak" / "final.json").read_text())
    loss = run["nets"]["b"]["val_loss"]
    assert "| 2 | AdamW | lr-tweak |" in overview
    assert f"{loss:.4f} ({math.exp(loss):.2f})" in overview
    assert "4 bits, Point A" in overview and "2 bits, Point B" in overview
