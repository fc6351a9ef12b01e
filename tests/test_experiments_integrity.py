"""Runs you can trust: checked checkpoints and result files, loud numerics, valid JSON (issue 10)."""

import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stequiv.cli import main
from stequiv.experiments import ExperimentConfig, PairSpec, load_data, run_pair
from stequiv.experiments.engine import Net, NonFiniteError, load_checkpoint
from stequiv.experiments.results import (
    MANIFEST,
    IntegrityError,
    atomic_write,
    json_text,
    metrics_csv,
    rebuild,
    write_config,
    write_json,
    write_report,
    write_with_manifest,
)
from test_experiments import CPU, TINY

SPEC = PairSpec("sgd-baseline", "sgd", "baseline")


@pytest.fixture(scope="module")
def tiny():
    config = ExperimentConfig(**TINY)
    return config, load_data(config)


@pytest.fixture
def stopped(tiny, tmp_path, interrupt_at):
    """A pair stopped at step 7: its checkpoint (step 5) and manifest in ``tmp_path``."""
    config, data = tiny
    interrupt_at(7, run_pair, config, SPEC, data, tmp_path, CPU, progress=False)
    return tmp_path / "checkpoint.pt"


def _resume(tiny, folder):
    config, data = tiny
    return run_pair(config, SPEC, data, folder, CPU, progress=False)


def _assert_unused(ckpt: Path, content: bytes) -> None:
    """The refused checkpoint is left as it was, and nothing was trained from it."""
    assert ckpt.read_bytes() == content
    assert not (ckpt.parent / "final.json").exists() and not (ckpt.parent / "metrics.csv").exists()

# ------------------------------------------------------------------------------------ checkpoints


def test_flipped_bytes_inside_a_checkpoint_tensor_are_refused(tiny, stopped):
    """The reported case: 64 flipped bytes inside a tensor resumed silently and changed Ē 100×."""
    raw = stopped.read_bytes()
    weight = next(v for k, v in load_checkpoint(stopped, torch.device("cpu"))["a"].items()
                  if k.endswith("weight.original") and v.numel() >= 64)
    start = raw.index(weight.numpy().tobytes())  # the tensor's bytes inside checkpoint.pt
    bad = bytearray(raw)
    bad[start:start + 64] = bytes(b ^ 0xFF for b in raw[start:start + 64])
    stopped.write_bytes(bytes(bad))
    with pytest.raises(IntegrityError, match=r"checkpoint\.pt does not match its SHA-256 digest .*"
                                             r"delete .*checkpoint\.pt to restart that group"):
        _resume(tiny, stopped.parent)
    _assert_unused(stopped, bytes(bad))


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_is_one_clear_error_naming_it(tiny, stopped, damage):
    raw = stopped.read_bytes()
    bad = {"truncated": raw[: len(raw) // 2], "empty": b"",
           "garbage": np.random.default_rng(0).bytes(len(raw))}[damage]
    stopped.write_bytes(bad)
    with pytest.raises(IntegrityError, match=rf"{stopped}.* does not match its SHA-256"):
        _resume(tiny, stopped.parent)
    _assert_unused(stopped, bad)


@dataclass
class Foreign:
    """Not a checkpoint: an object that a full unpickler would construct (and could run code for)."""

    value: int = 1


@pytest.mark.parametrize(("content", "match"), [
    (b"not a zip file at all", "is not a readable stequiv checkpoint"),
    (pickle.dumps(Foreign()), "is not a readable stequiv checkpoint"),
    ("torch", "holds a list, not a stequiv checkpoint"),
    ("foreign", "is not a readable stequiv checkpoint"),
])
def test_foreign_file_with_a_valid_manifest_is_refused(tiny, stopped, content, match):
    """Digests that match are not enough: the file must also load with weights_only=True."""
    if content == "torch":
        content = _torch_bytes([torch.zeros(3)])
    elif content == "foreign":
        content = _torch_bytes({"a": Foreign()})  # weights_only refuses to build the object
    write_with_manifest(stopped.parent, {stopped.name: content})
    with pytest.raises(IntegrityError, match=match) as info:
        _resume(tiny, stopped.parent)
    assert str(stopped) in str(info.value) and "to restart that group" in str(info.value)
    _assert_unused(stopped, content)


def _torch_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_checkpoint_without_its_manifest_is_refused(tiny, stopped):
    (stopped.parent / MANIFEST).unlink()
    with pytest.raises(IntegrityError, match=rf"{stopped} has no manifest\.json beside it"):
        _resume(tiny, stopped.parent)
    (stopped.parent / MANIFEST).write_text("{not json")
    with pytest.raises(IntegrityError, match=r"manifest\.json is not a stequiv manifest"):
        _resume(tiny, stopped.parent)


def test_finished_run_lists_its_files_and_drops_the_checkpoint(tiny, stopped):
    _resume(tiny, stopped.parent)
    listed = json.loads((stopped.parent / MANIFEST).read_text())["files"]
    assert sorted(listed) == ["final.json", "metrics.csv", "weights.npz"]
    assert not stopped.exists()
    (stopped.parent / "final.json").write_text("{}")  # a finished group is verified as well
    with pytest.raises(IntegrityError, match=r"final\.json does not match .* delete the folder"):
        _resume(tiny, stopped.parent)

# ---------------------------------------------------------------------------------- result files


def _results(root: Path, ebar: float = 0.004) -> Path:
    """A results folder with one SGD baseline run written as the engine writes it (manifest)."""
    net = {"label": "x", "train_acc": 0.9, "train_loss": 0.2, "val_acc": 0.9, "val_loss": 0.2}
    final = {"run_id": "sgd-baseline", "optimizer": "sgd", "experiment": "baseline", "lr": 1e-3,
             "remap": True, "ebar": ebar, "agreement": 0.98, "nets": {"a": net, "b": net}}
    history = [{"step": s, "epoch": s / 8, "ebar": ebar * s, "agreement": 0.99, "loss_a": 0.5,
                "loss_b": 0.5, "lr": 1e-3} for s in (4, 8)]
    write_with_manifest(root / "runs" / "sgd-baseline", {
        "metrics.csv": metrics_csv(history), "final.json": json.dumps(final)})
    write_config(root, {"optimizers": ["sgd"], "lr_sgd": 1e-3})
    return root


@pytest.mark.parametrize("name", ["final.json", "metrics.csv"])
def test_report_refuses_a_changed_result_file(tmp_path, name):
    root = _results(tmp_path / "out")
    path = root / "runs" / "sgd-baseline" / name
    path.write_bytes(path.read_bytes().replace(b"0.98", b"0.99").replace(b"0.5", b"0.6"))
    with pytest.raises(IntegrityError, match=rf"{name} does not match .* delete the folder "
                                             r".*sgd-baseline to train its group again"):
        write_report(root)
    result = CliRunner().invoke(main, ["report", str(root)])
    assert result.exit_code == 1 and result.output.startswith("Error:") and name in result.output
    assert not (root / "summary.json").exists()


def test_report_reads_an_intact_folder(tmp_path):
    root = _results(tmp_path / "out")
    write_report(root)
    assert json.loads((root / "summary.json").read_text())["sgd"]["baseline"]["ebar"] == 0.004


@pytest.mark.parametrize(("cut", "match"), [
    (lambda text: text[:-4], r"line 3 is cut off"),  # mid-number: "0.001" would parse as "0.0"
    (lambda text: text.rsplit(",", 3)[0] + "\n", r"line 3 has 4 of 7 columns"),
    (lambda text: text.replace("0.99", "0.9x", 1), r"line 2, column `agreement` is '0.9x'"),
    (lambda text: "step,ebar\n" + text.split("\n", 1)[1], r"its header is \['step', 'ebar'\]"),
])
def test_a_truncated_metrics_row_is_refused(tmp_path, cut, match):
    root = _results(tmp_path / "out")
    path = root / "runs" / "sgd-baseline" / "metrics.csv"
    path.write_text(cut(path.read_text()))
    for manifest in (path.parent / MANIFEST, root / MANIFEST):
        manifest.unlink()  # a hand-made folder: read unverified, but strictly
    with pytest.raises(ValueError, match=rf"metrics\.csv is malformed: {match}"):
        write_report(root)


def test_nan_is_written_as_null_and_read_back_as_nan(tmp_path):
    """A NaN Ē (as an older engine wrote it, bare ``NaN``) ends up in summary.json as ``null``."""
    root = _results(tmp_path / "out")
    final = root / "runs" / "sgd-baseline" / "final.json"
    final.write_text(final.read_text().replace('"ebar": 0.004', '"ebar": NaN'))
    (final.parent / MANIFEST).unlink()
    (root / MANIFEST).unlink()
    assert rebuild(root).summary["sgd"]["baseline"]["ebar"] is None  # what reproduce returns
    text = (root / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert summary["sgd"]["baseline"]["ebar"] is None
    assert "nan%" in (root / "tables" / "table3.md").read_text()
    assert json_text({"a": [math.inf, -math.inf, 1.5], "b": (math.nan,)}) == \
        '{\n  "a": [\n    null,\n    null,\n    1.5\n  ],\n  "b": [\n    null\n  ]\n}'


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "final.json"
    write_json(target, {"old": 1})

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["final.json"]

# -------------------------------------------------------------------------------------- numerics


@dataclass
class NanAt:
    """A training split whose ``step``-th batch (counted over every call) holds a NaN pixel."""

    split: Any
    step: int
    seen: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.split, name)

    def __len__(self) -> int:
        return len(self.split)

    def batches(self, index_batches, epoch=0, workers=0):
        for x, y in self.split.batches(index_batches, epoch, workers):
            self.seen += 1
            if self.seen == self.step:
                x = x.clone()
                x.view(-1)[0] = math.nan
            yield x, y


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tiny, tmp_path):
    config, data = tiny
    poisoned = type(data)(NanAt(data.train, step=7), data.val)
    with pytest.raises(NonFiniteError, match=r"sgd-baseline, step 7: the training loss of net a "
                                             r"\(the Q̂-net, htge, sgd\) is nan: the run stops here "
                                             r"and the last checkpoint \(step 5\) is kept.*"
                                             r"Likely cause: a learning rate too large"):
        run_pair(config, SPEC, poisoned, tmp_path, CPU, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt", torch.device("cpu"))["step"] == 5
    assert not (tmp_path / "final.json").exists()
    run_pair(config, SPEC, data, tmp_path, CPU, progress=False)  # resumes from the good step 5
    assert (tmp_path / "final.json").exists()


def test_a_non_finite_gradient_stops_before_the_step(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    net = Net("net b of test", model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), model)
    before = model.weight.detach().clone()
    model.bias.register_hook(lambda g: g * math.inf)
    with pytest.raises(NonFiniteError, match=r"the gradient of net b of test is not finite in `bias`"):
        net.backward(torch.ones(4, 3), torch.zeros(4, dtype=torch.long))
    assert torch.equal(model.weight, before)  # the bad step was not taken
