"""The ResNet presets end to end on tiny data: the mid-training switch, image folders, bad input."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stequiv.cli import main
from stequiv.data import FASHION_MNIST_SYSTEM_DIR, DataError, ImageFolderDataset, ImageFolderSplit
from stequiv.experiments import ExperimentConfig, PairSpec, load_data, run_pair
from stequiv.experiments.parallel import Dist

CPU = Dist(0, 1, torch.device("cpu"))
CLASSES = ("ant", "bee", "cow")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine (or beside another pytest-xdist worker),
    OpenMP threads that wait for each other lose their time slices and a run takes 10x longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reproduce(out: Path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["reproduce", "--out", str(out), "--device", "cpu",
                                       "--no-progress", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((out / "summary.json").read_text())


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_resnet_preset_switches_mid_training(tmp_path):
    """--preset resnet (ResNet-20, Fashion-MNIST) on 256 images, 8 steps, switch after 25 %."""
    summary = _reproduce(tmp_path, "--preset", "resnet", "--set", "max_train_samples=256",
                         "--set", "epochs=1", "--set", "batch_size=32", "--set", "switch_fraction=0.25",
                         "--set", "optimizers=[sgd]", "--set", "experiments=[baseline]",
                         "--set", "eval_every=2")
    final = json.loads((tmp_path / "runs" / "sgd-baseline" / "final.json").read_text())
    assert (final["steps"], final["switch_step"]) == (8, 2)
    assert not {"conv1", "fc"} & set(final["layers"])  # first conv and classifier stay float
    assert len(final["layers"]) == 20  # the 18 block convs and 2 projection shortcuts
    rows = _rows(tmp_path / "runs" / "sgd-baseline")
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]  # Ē recorded from the switch on
    assert float(rows[0]["ebar"]) == 0.0  # the twin starts at M(w): E = 0 at the switch
    assert all(r["ebar"] != "" for r in rows) and 0 < summary["sgd"]["baseline"]["ebar"] < 1e-3
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["model"], config["quantize_first_conv"]) == ("resnet20", False)


def make_folder(root: Path, per_class: dict[str, int], classes=CLASSES, size=(40, 40)) -> Path:
    """root/{split}/{class}/{k}.png: random 40x40 RGB PNGs, class-dependent colour bias."""
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                rng = np.random.default_rng([c, k, len(split)])
                pixels = rng.integers(0, 200, (size[1], size[0], 3)) + 50 * np.eye(3)[c % 3]
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{k}.png")
    return root


def test_resnet50_preset_on_a_tiny_image_folder(tmp_path):
    """The ResNet-50 preset's path (image folder, switch at 10 %, DataLoader workers) with
    ResNet-18 at 32 px on 3 x 8 training images: 2 pairs of 6 steps, switch after step 1."""
    data = make_folder(tmp_path / "data", {"train": 8, "val": 2})
    summary = _reproduce(tmp_path / "out", "--preset", "resnet50", "--data-dir", str(data),
                         "--model", "resnet18", "--epochs", "1", "--set", "image_size=32",
                         "--set", "batch_size=4", "--set", "optimizers=[sgd]", "--set", "workers=2",
                         "--set", "experiments=[baseline,lr-tweak]", "--set", "eval_every=2")
    assert set(summary["sgd"]) == {"baseline", "lr-tweak"}
    for run in ("sgd-baseline", "sgd-lr-tweak"):
        final = json.loads((tmp_path / "out" / "runs" / run / "final.json").read_text())
        assert (final["steps"], final["switch_step"]) == (6, 1)
        assert [int(r["step"]) for r in _rows(tmp_path / "out" / "runs" / run)] == [2, 4, 6]
        for net in final["nets"].values():  # accuracies are multiples of 1/6 (val) and 1/24 (train)
            assert round(net["val_acc"] * 6, 9).is_integer() and round(net["train_acc"] * 24, 9).is_integer()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["dataset"], config["batch_size"], config["sync_batchnorm"]) == ("imagefolder", 4, True)


def test_image_folder_batches_are_the_same_with_workers(tmp_path):
    """Augmentation depends on (seed, epoch, index) only: DataLoader workers change nothing."""
    split = ImageFolderSplit(ImageFolderDataset(make_folder(tmp_path, {"train": 3}), "train",
                                                image_size=16, seed=3))
    index_batches = [[4, 0, 8], [2, 7, 5]]
    for epoch in (0, 1):
        alone = list(split.batches(index_batches, epoch))
        pooled = list(split.batches(index_batches, epoch, workers=2))
        for (x0, y0), (x1, y1) in zip(alone, pooled, strict=True):
            assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(split.batch([4], 0)[0], split.batch([4], 1)[0])  # fresh crops per epoch
    assert torch.equal(split.eval_view().batch([4], 0)[0], split.eval_view().batch([4], 1)[0])
    sub = split.subset(3)  # evenly spaced: one image of each class
    assert sub.batch([0, 1, 2])[1].tolist() == [0, 1, 2] and (sub.num_classes, sub.in_channels) == (3, 3)


def _config(data_dir: Path, **overrides) -> ExperimentConfig:
    return ExperimentConfig(dataset="imagefolder", data_dir=str(data_dir), **overrides)


def test_bad_image_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"'imagefolder' needs `data_dir` \(--data-dir\)"):
        ExperimentConfig(dataset="imagefolder")
    with pytest.raises(ValueError, match=r"`dataset` 'imagenet' is unknown; choose from"):
        ExperimentConfig(dataset="imagenet")
    empty = tmp_path / "empty"
    for name in CLASSES:
        (empty / "train" / name).mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folder\(s\) \['ant', 'bee', 'cow'\] in .* hold no images"):
        load_data(_config(empty))
    one = make_folder(tmp_path / "one", {"train": 2, "val": 2}, classes=("ant",))
    with pytest.raises(DataError, match=r"has 1 class folder\(s\) \['ant'\]; .* at least 2"):
        load_data(_config(one))
    mixed = make_folder(tmp_path / "mixed", {"train": 2})
    make_folder(mixed, {"val": 1}, classes=("ant", "bee"))
    with pytest.raises(DataError, match="train/ and val/ hold different classes"):
        load_data(_config(mixed))
    result = CliRunner().invoke(main, ["reproduce", "--preset", "resnet50", "--data-dir", str(empty),
                                       "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 1 and "hold no images" in result.output


def test_checkpoint_of_another_config_is_refused(tmp_path, interrupt_at):
    tiny = {"max_train_samples": 64, "epochs": 1, "batch_size": 16, "checkpoint_every": 2,
            "optimizers": ("sgd",)}
    config = ExperimentConfig(**tiny)
    data = load_data(config)
    spec = PairSpec("sgd-baseline", "sgd", "baseline")
    interrupt_at(3, run_pair, config, spec, data, tmp_path, CPU, progress=False)
    other = ExperimentConfig(**{**tiny, "lr_sgd": 2e-3})
    with pytest.raises(ValueError, match=r"written by another run or config .* keys that differ: \['lr_sgd'\]"):
        run_pair(other, spec, data, tmp_path, CPU, progress=False)
    with pytest.raises(ValueError, match=r"run 'sgd-baseline'"):
        run_pair(config, PairSpec("sgd-unadjusted", "sgd", "unadjusted"), data, tmp_path, CPU,
                 progress=False)
    run_pair(config, spec, data, tmp_path, CPU, progress=False)  # the right config resumes
    assert (tmp_path / "final.json").exists()


def test_losses_are_averaged_over_the_steps_each_net_trained(tmp_path):
    """A metrics row straddling the switch averages the partner's loss over its own steps only.

    8 steps, switch after step 2, a row every 3 steps: the STE twin trained only step 3 of the
    first window, so its loss there is that one step's (close to the Q̂-net's mean over steps
    1-3), not a third of it; before the switch a row has no partner loss at all.
    """
    _reproduce(tmp_path, "--set", "max_train_samples=256", "--set", "epochs=1",
               "--set", "batch_size=32", "--set", "switch_fraction=0.25", "--set", "eval_every=3",
               "--set", "optimizers=[sgd]", "--set", "experiments=[baseline]", "--set", "lr_sweep=[]")
    rows = _rows(tmp_path / "runs" / "sgd-baseline")
    assert [int(r["step"]) for r in rows] == [3, 6, 8]
    for row in rows:
        assert 0.8 < float(row["loss_b"]) / float(row["loss_a"]) < 1.25, row

    _reproduce(tmp_path / "early", "--set", "max_train_samples=256", "--set", "epochs=1",
               "--set", "batch_size=32", "--set", "switch_fraction=0.5", "--set", "eval_every=2",
               "--set", "optimizers=[sgd]", "--set", "experiments=[baseline]", "--set", "lr_sweep=[]")
    rows = _rows(tmp_path / "early" / "runs" / "sgd-baseline")
    assert [(int(r["step"]), r["loss_b"] != "", r["ebar"] != "") for r in rows] == [
        (2, False, False), (4, False, True), (6, True, True), (8, True, True)]
