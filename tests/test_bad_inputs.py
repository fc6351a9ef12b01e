"""The bad-input catalogue (issue 10): each row is one mistake a user can make, the error it must
raise and a fragment of its message; files and folders made for a row must be exactly as they were
after the failure (nothing half-written, no temporary files, no results folder claimed).

docs/bad-inputs.md is generated from ``CASES``; after changing them, rewrite it with
``PYTHONPATH=src python tests/test_bad_inputs.py`` (a test fails while it is stale).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import scipy.special
import torch
from array_api_compat import array_namespace
from click.testing import CliRunner
from PIL import Image
from torch import nn

from stequiv.cli import main
from stequiv.core import UniformQuantizer, custom_estimator, get_estimator
from stequiv.core.internal import unregister_estimator
from stequiv.data import ArrayData, DataError, ImageFolderDataset, download, load_split, read_idx
from stequiv.experiments import ConfigError, ExperimentConfig
from stequiv.experiments.config import parse_assignment, read_config_file
from stequiv.experiments.engine import Net, NonFiniteError
from stequiv.experiments.results import (
    IntegrityError,
    add_to_manifest,
    metrics_csv,
    weights_npz,
    write_config,
    write_with_manifest,
)
from stequiv.experiments.study import STUDY_PRESETS, StudyConfig, report_study
from stequiv.models import build_model
from stequiv.qat import QuantConfig, alignment, load, quantize_, save, to_ste

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"


class CommandError(Exception):
    """``stequiv`` stopped with exit status 1 and one ``Error: ...`` message, no traceback."""


class UsageError(Exception):
    """``stequiv`` stopped with exit status 2: a usage line and one ``Error: ...`` message."""


@dataclass(frozen=True)
class Case:
    """``call(setup(folder))`` must raise ``error`` with a message matching ``match``."""

    area: str
    bad: str
    error: type[BaseException]
    match: str
    call: Callable[[Any], object]
    setup: Callable[[Path], Any] = field(default=lambda folder: folder)


# ---------------------------------------------------------------- helpers that make bad inputs


def cli(*args: str) -> Callable[[Path], object]:
    """Run ``stequiv ARGS`` (``{tmp}`` in an argument: the case's folder) through click."""

    def run(folder: Path) -> object:
        result = CliRunner().invoke(main, [a.format(tmp=folder) for a in args])
        if result.exit_code == 0:
            return result
        if not isinstance(result.exception, SystemExit):  # a traceback: the case fails
            raise result.exception  # type: ignore[misc]
        assert "Traceback" not in result.output and result.output.count("Error:") == 1
        raise {1: CommandError, 2: UsageError}[result.exit_code](result.output)

    return run


def files(**contents: str | bytes) -> Callable[[Path], Path]:
    """Write ``contents`` (relative path -> text or bytes) into the folder."""

    def make(folder: Path) -> Path:
        for name, content in contents.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        return folder

    return make


def idx(magic: bytes, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file: magic, big-endian uint32 dimensions, payload."""
    return magic + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def png(size: int = 8) -> bytes:
    """A grey ``size`` x ``size`` PNG image."""
    out = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(out, format="PNG")
    return out.getvalue()


LABELS = idx(b"\x00\x00\x08\x01", (3,), bytes([1, 2, 3]))
MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def config(**values: Any) -> Callable[[Any], object]:
    return lambda _: ExperimentConfig(**values)


def registering(name: str, derivative: Callable[[Any], Any],
                run: Callable[[Path], object]) -> Callable[[Path], object]:
    """``run(folder)`` while a custom estimator ``name`` is registered (removed afterwards, so that
    no other test finds it in the registry)."""

    def call(folder: Path) -> object:
        custom_estimator(name, derivative)
        try:
            return run(folder)
        finally:
            unregister_estimator(name)

    return call


def scipy_slope(x: Any) -> Any:
    """Q̂′ = 1 + σ(x)/4 through SciPy, which torch.compile cannot trace."""
    return 1.0 + 0.25 * scipy.special.expit(np.asarray(x))


def overflowing_slope(x: Any) -> Any:
    """Q̂′ = e^{100x}/e^{100x} = 1, but 0/0 or inf/inf in float32 once |100x| passes ~88."""
    big = array_namespace(x).exp(100 * x)
    return big / big


def adam_pair() -> tuple[nn.Module, nn.Module]:
    """A Q̂-net and its exact Adam twin (weights w, unchanged)."""
    qnet = quantize_(nn.Linear(8, 8), QuantConfig(estimator="htge"))
    return qnet, to_ste(qnet, torch.optim.Adam(qnet.parameters())).model


def read(name: str) -> Callable[[Path], object]:
    return lambda folder: read_config_file(folder / name)


def read_only_folder(folder: Path) -> Path:
    """A folder this process cannot write into (as root, /sys: permissions do not stop root)."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    ro = folder / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def disk_full(run: Callable[[Path], object]) -> Callable[[Path], object]:
    """``run(folder)`` on a disk that is full: every ``fsync`` fails with ENOSPC, as a write whose
    blocks the file system cannot allocate does."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def call(folder: Path) -> object:
        with mock.patch("os.fsync", fsync):
            return run(folder)

    return call


def raw_checkpoint(payload: object) -> Callable[[Path], Path]:
    """``c.pt`` holding ``payload`` under a valid stequiv-checkpoint header (the hash matches)."""

    def make(folder: Path) -> Path:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        header = b"stequiv-checkpoint 1 " + hashlib.sha256(data).hexdigest().encode() + b"\n"
        (folder / "c.pt").write_bytes(header + data)
        return folder

    return make


def results(change: Callable[[Path], object]) -> Callable[[Path], Path]:
    """A results folder ``r`` as stequiv writes it (config.json and one run, under manifests),
    then ``change(r)`` (an edit or a deletion made by hand)."""

    def make(folder: Path) -> Path:
        root = folder / "r"
        net = {"train_acc": 0.9, "train_loss": 0.2, "val_acc": 0.9, "val_loss": 0.2}
        final = {"run_id": "sgd-baseline", "optimizer": "sgd", "experiment": "baseline",
                 "lr": 1e-3, "remap": True, "ebar": 0.004, "agreement": 0.98,
                 "nets": {"a": net, "b": net}}
        weights = weights_npz([np.zeros(4)], [np.zeros(4)], ["fc"], [np.zeros(3)])
        write_with_manifest(root / "runs" / "sgd-baseline", {
            "metrics.csv": metrics_csv([{"step": 1, "ebar": 0.004}]), "weights.npz": weights,
            "final.json": json.dumps(final)})
        write_config(root, {"optimizers": ["sgd"], "lr_sgd": 1e-3})
        change(root)
        return folder

    return make


def study_with_cut_cell() -> Callable[[Path], Path]:
    """A ``--quick`` study folder ``s`` (config and one cell under their manifests) whose cell
    file was then cut short."""

    def make(folder: Path) -> Path:
        config = StudyConfig.from_dict(STUDY_PRESETS["quick"])
        write_config(folder / "s", config.to_dict())
        name = f"{config.cells()[0].cell_id}.json"
        add_to_manifest(folder / "s" / "cells", {name: '{"estimator": "htge(sharpness=5.5)"}'}, "")
        (folder / "s" / "cells" / name).write_text('{"estimator": "htge(sharp')
        return folder

    return make


def sgd_step(lr: float) -> Callable[[Any], object]:
    """One training step of a small net under SGD with learning rate ``lr``."""

    def call(_: Any) -> object:
        model = nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        net = Net("net a", model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), model)
        net.backward(torch.ones(4, 3), torch.zeros(4, dtype=torch.long))
        return net.step()

    return call


def edit_json(path: str, **values: Any) -> Callable[[Path], object]:
    """Set ``values`` in the JSON object at ``root/path``, as an editor would."""

    def edit(root: Path) -> object:
        target = root / path
        return target.write_text(json.dumps({**json.loads(target.read_text()), **values}))

    return edit


def study_cell(folder: Path) -> Path:
    """A one-cell study folder in ``s`` as stequiv writes it, whose cell's Ē was then edited."""
    config = StudyConfig.from_dict(ONE_CELL)
    write_config(folder / "s", config.to_dict())
    name = f"{config.cells()[0].cell_id}.json"
    add_to_manifest(folder / "s" / "cells", {name: json.dumps({"ebar_twin": 0.2})}, "")
    (folder / "s" / "cells" / name).write_text(json.dumps({"ebar_twin": 0.02}))
    return folder


# ---------------------------------------------------------------- the catalogue

API, CONFIG, FILE, CLI, DATA = "Python API", "config value", "config file", "command line", "data"
FOLDER = "results folder"
ONE_CELL = {"datasets": ["mnist-5k"], "steps": 1, "batch_size": 8, "eval_samples": 20,
            "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]}],
            "optimizers": ["sgd"], "lrs": {"sgd": [0.05]}, "nets_per_batch": 3}
CASES: list[Case] = [
    # -- typed experiment config: ExperimentConfig(...), the same checks for files and --set
    Case(CONFIG, "epochs=0.37", ConfigError, r"`epochs` must be an integer, got 0\.37",
         config(epochs=0.37)),
    Case(CONFIG, "batch_size=7.5", ConfigError, r"`batch_size` must be an integer, got 7\.5",
         config(batch_size=7.5)),
    Case(CONFIG, "epochs=3.0 (an integral float)", ConfigError, "`epochs` must be an integer",
         config(epochs=3.0)),
    Case(CONFIG, "epochs=True", ConfigError, "`epochs` must be an integer, got True",
         config(epochs=True)),
    Case(CONFIG, "epochs='3' (a string)", ConfigError, "`epochs` must be an integer, got '3'",
         config(epochs="3")),
    Case(CONFIG, "download='false' (a string)", ConfigError,
         "`download` must be true or false .*got 'false'", config(download="false")),
    Case(CONFIG, "sync_batchnorm=1", ConfigError, "`sync_batchnorm` must be true or false",
         config(sync_batchnorm=1)),
    Case(CONFIG, "betas=0.9 (not a list)", ConfigError, "`betas` must be a list, got 0.9",
         config(betas=0.9)),
    Case(CONFIG, "betas=[0.9]", ConfigError, "`betas` must hold exactly 2 values, got 1",
         config(betas=[0.9])),
    Case(CONFIG, "betas=[0.9, 1.0]", ConfigError, r"`betas\[1\]` must be < 1, got 1\.0",
         config(betas=[0.9, 1.0])),
    Case(CONFIG, "lr_sgd='abc'", ConfigError, "`lr_sgd` must be a number, got 'abc'",
         config(lr_sgd="abc")),
    Case(CONFIG, "lr_sgd=nan", ConfigError, "`lr_sgd` must be finite", config(lr_sgd=float("nan"))),
    Case(CONFIG, "lr_adam=-1e-4", ConfigError, "`lr_adam` must be > 0, got -0.0001",
         config(lr_adam=-1e-4)),
    Case(CONFIG, "momentum=1.0", ConfigError, "`momentum` must be < 1", config(momentum=1.0)),
    Case(CONFIG, "warmup_fraction=-0.1", ConfigError, "`warmup_fraction` must be >= 0",
         config(warmup_fraction=-0.1)),
    Case(CONFIG, "bits=0", ConfigError, "`bits` must be >= 1, got 0", config(bits=0)),
    Case(CONFIG, "bits=65", ConfigError, "`bits` must be <= 16, got 65", config(bits=65)),
    Case(CONFIG, "seed=-1", ConfigError, "`seed` must be >= 0", config(seed=-1)),
    Case(CONFIG, "workers=-1", ConfigError, "`workers` must be >= 0", config(workers=-1)),
    Case(CONFIG, "max_train_samples=0", ConfigError, "`max_train_samples` must be > 0",
         config(max_train_samples=0)),
    Case(CONFIG, "epoch=3 (unknown key)", ConfigError,
         r"unknown config key\(s\) \['epoch'\] \(did you mean 'epochs'\?\)", config(epoch=3)),
    Case(CONFIG, "model='resnet21'", ConfigError,
         "`model` 'resnet21' is unknown; choose from .* \\(did you mean 'resnet20'",
         config(model="resnet21")),
    Case(CONFIG, "dataset='imagenet'", ConfigError, "`dataset` 'imagenet' is unknown",
         config(dataset="imagenet")),
    Case(CONFIG, "estimator='htgee'", ConfigError,
         "`estimator` 'htgee' is not registered.*did you mean 'htge'", config(estimator="htgee")),
    Case(CONFIG, "device='gpu'", ConfigError, "`device` 'gpu' is unknown; choose from",
         config(device="gpu")),
    Case(CONFIG, "optimizers=['sgd', 'sgd']", ConfigError, "`optimizers` lists 'sgd' more than once",
         config(optimizers=["sgd", "sgd"])),
    Case(CONFIG, "optimizers=[]", ConfigError, "`optimizers` must hold at least 1 value",
         config(optimizers=[])),
    Case(CONFIG, "optimizers=['adamw']", ConfigError, r"`optimizers\[0\]` 'adamw' is unknown",
         config(optimizers=["adamw"])),
    Case(CONFIG, "experiments=['lr-tweak'] (no baseline)", ConfigError, "must include 'baseline'",
         config(experiments=["lr-tweak"])),
    Case(CONFIG, "lr_sweep=[0.25, -4]", ConfigError, r"`lr_sweep\[1\]` must be > 0",
         config(lr_sweep=[0.25, -4])),
    Case(CONFIG, "estimator_params={'t': -1}", ConfigError,
         "`estimator_params` .* do not fit `estimator` 'htge': `t` must be > 0",
         config(estimator_params={"t": -1})),
    Case(CONFIG, "estimator_params={'tt': 1}", ConfigError, r"has no parameter\(s\) \['tt'\]",
         config(estimator_params={"tt": 1})),
    Case(CONFIG, "estimator_params={'t': 'abc'}", ConfigError,
         "value of 't' must be a number, got 'abc'", config(estimator_params={"t": "abc"})),
    Case(CONFIG, "dataset='imagefolder' without data_dir", ConfigError,
         "'imagefolder' needs `data_dir`", config(dataset="imagefolder")),
    Case(CONFIG, "dataset='mnist-5k' with data_dir", ConfigError,
         "`data_dir` does not apply to 'mnist-5k'", config(data_dir="/data")),
    Case(CONFIG, "data_dir=''", ConfigError, "`data_dir` must not be empty", config(data_dir="")),
    Case(CONFIG, "quantize_first_conv='yes'", ConfigError,
         "`quantize_first_conv` must be true or false", config(quantize_first_conv="yes")),
    Case(CONFIG, "two unknown keys", ConfigError,
         r"2 config errors:\n  unknown config key\(s\) \['epoch'\].*\n  unknown config key\(s\) "
         r"\['bitz'\] \(did you mean 'bits'\?\)", config(epoch=1, bitz=2)),
    Case(CONFIG, "batch_size=64 for 10 training images", ConfigError,
         "`batch_size` 64 exceeds the 10 training images",
         lambda _: ExperimentConfig().check_data(10)),
    Case(CONFIG, "parallel='zero3'", ConfigError,
         r"`parallel` 'zero3' is unknown; choose from \['ddp', 'fsdp'\]", config(parallel="zero3")),
    Case(CONFIG, "compile='true' (a string)", ConfigError, "`compile` must be true or false",
         config(compile="true")),
    Case(CONFIG, "batch_size=64 on 3 processes, parallel='fsdp'", ConfigError,
         r"`batch_size` 64 must be divisible by the number of processes 3 \(`parallel` 'fsdp'.*"
         "--nproc-per-node dividing 64", lambda _: ExperimentConfig(parallel="fsdp").check_data(5000, 3)),
    Case(CONFIG, "schedule='ir-net' with parallel='fsdp'", ConfigError,
         "`schedule` 'ir-net' is not supported with `parallel` 'fsdp'",
         config(estimator="ede", schedule="ir-net", parallel="fsdp")),
    Case(CONFIG, "several mistakes at once", ConfigError,
         "2 config errors:\n  `bits` must be >= 1.*\n  `epochs` must be an integer",
         config(epochs=0.5, bits=0)),
    # -- config files (YAML/JSON) and --set values
    Case(FILE, "malformed YAML", ConfigError, r"cfg\.yaml, line 3, column 1: malformed YAML: .* \(while parsing a flow sequence "
         r"at line 2, column 7\)",
         read("cfg.yaml"), files(**{"cfg.yaml": "epochs: 2\nbits: [2\n"})),
    Case(FILE, "malformed JSON", ConfigError, r"cfg\.json, line 3, column \d+: malformed JSON",
         read("cfg.json"), files(**{"cfg.json": '{\n "epochs": 2,\n}\n'})),
    Case(FILE, "a key twice (YAML)", ConfigError, "line 2.*found the key 'epochs' twice",
         read("cfg.yaml"), files(**{"cfg.yaml": "epochs: 2\nepochs: 3\n"})),
    Case(FILE, "a key twice (JSON)", ConfigError, r"found the key\(s\) \['bits'\] twice",
         read("cfg.json"), files(**{"cfg.json": '{"bits": 2, "bits": 3}'})),
    Case(FILE, "a list instead of a mapping", ConfigError, "must hold a mapping of keys to values",
         read("cfg.yaml"), files(**{"cfg.yaml": "- epochs\n- 2\n"})),
    Case(FILE, "a number as a key", ConfigError, r"config keys must be names, got \[1\]",
         read("cfg.yaml"), files(**{"cfg.yaml": "1: 2\n"})),
    Case(FILE, "not UTF-8 text", ConfigError, "not UTF-8 text", read("cfg.yaml"),
         files(**{"cfg.yaml": b"epochs: \xff\xfe\n"})),
    Case(FILE, "a missing file", ConfigError, "cannot be read", read("nope.yaml")),
    Case(FILE, "epochs: 1e1 (YAML float for an integer)", ConfigError,
         r"`epochs` must be an integer, got 10\.0",
         lambda f: ExperimentConfig.load(f / "cfg.yaml"), files(**{"cfg.yaml": "epochs: 1e1\n"})),
    Case(FILE, "download: 'false' (quoted)", ConfigError, "`download` must be true or false",
         lambda f: ExperimentConfig.load(f / "cfg.yaml"),
         files(**{"cfg.yaml": "download: 'false'\n"})),
    Case(FILE, "--set without '='", ConfigError, "--set expects KEY=VALUE",
         lambda _: parse_assignment("epochs")),
    Case(FILE, "--set with an empty key", ConfigError, "--set expects KEY=VALUE",
         lambda _: parse_assignment("=3")),
    # -- the command line (through click; exit status 1 = error, 2 = usage error)
    Case(CLI, "stequiv estimators --bits 0", UsageError, "'--bits': 0 is not in the range",
         cli("estimators", "--bits", "0")),
    Case(CLI, "stequiv estimators --bits 65", CommandError, "`bits` must be <= 52, got 65",
         cli("estimators", "--bits", "65")),
    Case(CLI, "stequiv estimators --delta -1", CommandError, "`delta` must be > 0",
         cli("estimators", "--delta", "-1")),
    Case(CLI, "stequiv alpha htge --bits 0", UsageError, "'--bits': 0 is not in the range",
         cli("alpha", "htge", "--bits", "0")),
    Case(CLI, "stequiv alpha htge --bits 2 --t 1e-300", CommandError,
         r"htge\(t=1e-300\) is nan, so α = 1/∫ is not a finite positive float64",
         cli("alpha", "htge", "--bits", "2", "--t", "1e-300")),
    Case(CLI, "stequiv alpha htgee --bits 2", CommandError, "did you mean 'htge'",
         cli("alpha", "htgee", "--bits", "2")),
    Case(CLI, "stequiv alpha htge --bits 2 --t", UsageError, "--t needs a value",
         cli("alpha", "htge", "--bits", "2", "--t")),
    Case(CLI, "stequiv alpha htge --bits 2 --t abc", CommandError, "`t` must be a real number",
         cli("alpha", "htge", "--bits", "2", "--t", "abc")),
    Case(CLI, "reproduce --set bits=65", CommandError,
         r"`bits` must be <= 16, got 65 \(from --set bits=65\)",
         cli("reproduce", "--out", "{tmp}/o", "--set", "bits=65")),
    Case(CLI, "reproduce --set epochs=0.37", CommandError,
         r"`epochs` must be an integer, got 0\.37 \(from --set epochs=0\.37\)",
         cli("reproduce", "--out", "{tmp}/o", "--set", "epochs=0.37")),
    Case(CLI, "reproduce --set lr_sgd=abc", CommandError, "`lr_sgd` must be a number, got 'abc'",
         cli("reproduce", "--out", "{tmp}/o", "--set", "lr_sgd=abc")),
    Case(CLI, "reproduce --set betas=0.9", CommandError, "`betas` must be a list",
         cli("reproduce", "--out", "{tmp}/o", "--set", "betas=0.9")),
    Case(CLI, "reproduce --set sync_batchnorm=yes-please", CommandError,
         "`sync_batchnorm` must be true or false",
         cli("reproduce", "--out", "{tmp}/o", "--set", "sync_batchnorm=yes-please")),
    Case(CLI, "reproduce --set compile=true, estimator written with SciPy", CommandError,
         r"`compile` true, but torch.compile cannot trace `estimator` scipy-slope\(\).*"
         "write its derivative with array-API or torch functions, or set `compile` false",
         registering("scipy-slope", scipy_slope, cli(
             "reproduce", "--out", "{tmp}/o", "--set", "compile=true", "--set",
             "estimator=scipy-slope"))),
    Case(CLI, "reproduce, estimator not finite in float32", CommandError,
         r"`estimator` overflow-slope\(\) cannot be evaluated in float32 .* is nan in float32 but "
         "1 in float64", registering("overflow-slope", overflowing_slope, cli(
             "reproduce", "--out", "{tmp}/o", "--set", "estimator=overflow-slope"))),
    Case(CLI, "reproduce, activation estimator not finite in float32", CommandError,
         r"`activation_estimator` overflow-slope\(\) cannot be evaluated in float32",
         registering("overflow-slope", overflowing_slope, cli(
             "reproduce", "--out", "{tmp}/o", "--set", "activation_bits=4", "--set",
             "activation_estimator=overflow-slope"))),
    Case(CLI, "reproduce --set epoch=3", CommandError, "did you mean 'epochs'",
         cli("reproduce", "--out", "{tmp}/o", "--set", "epoch=3")),
    Case(CLI, "reproduce --set epochs (no '=')", UsageError, "--set expects KEY=VALUE",
         cli("reproduce", "--out", "{tmp}/o", "--set", "epochs")),
    Case(CLI, "reproduce --set 'betas=[0.9'", UsageError,
         r"--set betas=\[0\.9, line 1, column \d+: malformed YAML",
         cli("reproduce", "--out", "{tmp}/o", "--set", "betas=[0.9")),
    Case(CLI, "reproduce --epochs 0.5", UsageError, "'--epochs': '0.5' is not a valid integer",
         cli("reproduce", "--out", "{tmp}/o", "--epochs", "0.5")),
    Case(CLI, "reproduce --model resnet21", CommandError,
         r"did you mean 'resnet20'\?\) \(from --model\)",
         cli("reproduce", "--out", "{tmp}/o", "--model", "resnet21")),
    Case(CLI, "reproduce --quick --preset full", UsageError, "name different presets",
         cli("reproduce", "--quick", "--preset", "full", "--out", "{tmp}/o")),
    Case(CLI, "reproduce --out naming a file", UsageError, "'--out': Directory .* is a file",
         cli("reproduce", "--quick", "--out", "{tmp}/f"), files(f="x")),
    Case(CLI, "reproduce --out inside a file", UsageError, "'--out': .* is a file; name a folder",
         cli("reproduce", "--quick", "--out", "{tmp}/f/o"), files(f="x")),
    Case(CLI, "reproduce --out in a read-only folder", UsageError,
         "'--out': cannot write into .*; name a folder you can write to",
         lambda ro: cli("reproduce", "--quick", "--out", str(ro / "o"))(ro), read_only_folder),
    Case(CLI, "reproduce --config that does not exist", UsageError, "'--config': File .* not exist",
         cli("reproduce", "--config", "{tmp}/nope.yaml", "--out", "{tmp}/o")),
    Case(CLI, "reproduce --config naming a folder", UsageError, "'--config': File .* is a directory",
         cli("reproduce", "--config", "{tmp}", "--out", "{tmp}/o")),
    Case(CLI, "reproduce --config with malformed YAML", CommandError,
         r"cfg\.yaml, line 2, column 1: malformed YAML",
         cli("reproduce", "--config", "{tmp}/cfg.yaml", "--out", "{tmp}/o"),
         files(**{"cfg.yaml": "epochs: [\n"})),
    Case(CLI, "reproduce --config holding bits: 0", CommandError,
         r"`bits` must be >= 1, got 0 \(from .*cfg\.yaml\)",
         cli("reproduce", "--config", "{tmp}/cfg.yaml", "--out", "{tmp}/o"),
         files(**{"cfg.yaml": "bits: 0\n"})),
    Case(CLI, "reproduce --set max_train_samples=10 (batch 64)", CommandError,
         "`batch_size` 64 exceeds the 10 training images",
         cli("reproduce", "--out", "{tmp}/o", "--set", "max_train_samples=10")),
    Case(CLI, "reproduce --dataset mnist --data-dir EMPTY", CommandError,
         "MNIST 'train' files .* not found",
         cli("reproduce", "--dataset", "mnist", "--data-dir", "{tmp}/d", "--out", "{tmp}/o"),
         files(**{"d/keep": ""})),
    Case(CLI, "plot-estimators -o naming a file", UsageError, "'-o' / '--out': Directory .* file",
         cli("plot-estimators", "-o", "{tmp}/f"), files(f="x")),
    Case(CLI, "plot-estimators --name nope", CommandError, "unknown estimator 'nope'",
         cli("plot-estimators", "-o", "{tmp}", "--name", "nope")),
    Case(CLI, "report on a missing folder", UsageError, "'RESULTS_DIR': Directory .* not exist",
         cli("report", "{tmp}/nope")),
    Case(CLI, "report on an empty folder", CommandError, "no runs/<run_id>/final.json under",
         cli("report", "{tmp}")),
    # -- data files and folders
    Case(DATA, "IDX file missing", DataError, "does not exist", lambda f: read_idx(f / "x.idx")),
    Case(DATA, "IDX payload truncated", DataError, "truncated: its header declares shape",
         lambda f: read_idx(f / "x.idx"), files(**{"x.idx": idx(b"\0\0\x08\x01", (5,), b"ab")})),
    Case(DATA, "IDX with trailing bytes", DataError, "has trailing bytes",
         lambda f: read_idx(f / "x.idx"), files(**{"x.idx": LABELS + b"\0"})),
    Case(DATA, "IDX header truncated", DataError, "truncated inside its header",
         lambda f: read_idx(f / "x.idx"), files(**{"x.idx": b"\0\0\x08\x03\0\0"})),
    Case(DATA, "IDX with a bad magic number", DataError, "this is not an IDX file",
         lambda f: read_idx(f / "x.idx"), files(**{"x.idx": b"PK\x03\x04" + bytes(8)})),
    Case(DATA, "gzip IDX without .gz", DataError, "the file is gzip-compressed: name it",
         lambda f: read_idx(f / "x.idx"), files(**{"x.idx": gzip.compress(LABELS)})),
    Case(DATA, "corrupt gzip IDX", DataError, "is not valid gzip",
         lambda f: read_idx(f / "x.gz"), files(**{"x.gz": b"\x1f\x8bnot really gzip"})),
    Case(DATA, "MNIST images and labels of different lengths", DataError, "do not form a dataset",
         lambda f: load_split("mnist", "train", data_dir=f),
         files(**{MNIST_NAMES[0]: gzip.compress(idx(b"\0\0\x08\x03", (2, 2, 2), bytes(8))),
                  MNIST_NAMES[1]: gzip.compress(LABELS)})),
    Case(DATA, "load_split of an unknown dataset", DataError, "unknown dataset 'cifar'",
         lambda _: load_split("cifar", "train")),
    Case(DATA, "load_split of an unknown split", DataError, "has no split 'dev'",
         lambda _: load_split("mnist", "dev")),
    Case(DATA, "MNIST files not found, no download", DataError, "not found; looked in",
         lambda f: load_split("mnist", "val", data_dir=f / "d"), files(**{"d/keep": ""})),
    Case(DATA, "download: md5 not 32 hex digits", DataError, "`md5` must be 32 hex digits",
         lambda f: download("x", ["file:///nowhere/"], f / "dl", "abc")),
    Case(DATA, "download: no mirrors", DataError, "`mirrors` is empty",
         lambda f: download("x", [], f / "dl", "0" * 32)),
    Case(DATA, "download: the mirror serves other bytes", DataError,
         "every mirror failed:\n.*checksum mismatch",
         lambda f: download("x.gz", [(f / "src").as_uri()], f / "dl", "0" * 32),
         files(**{"src/x.gz": b"not the file", "dl/keep": ""})),
    Case(DATA, "download: the mirror lacks the file", DataError, "every mirror failed",
         lambda f: download("x.gz", [(f / "src").as_uri()], f / "dl", "0" * 32),
         files(**{"src/other": b"", "dl/keep": ""})),
    Case(DATA, "download: a corrupt file already there", DataError, "exists but its md5 is",
         lambda f: download("x.gz", ["file:///nowhere/"], f / "dl", "0" * 32),
         files(**{"dl/x.gz": b"old"})),
    Case(DATA, "image folder missing", DataError, "does not exist",
         lambda f: ImageFolderDataset(f, "train")),
    Case(DATA, "image folder with one class", DataError, r"has 1 class folder\(s\)",
         lambda f: ImageFolderDataset(f, "train"), files(**{"train/ant/a.png": png()})),
    Case(DATA, "image folder with an empty class", DataError, r"class folder\(s\) \['bee'\]",
         lambda f: ImageFolderDataset(f, "train"),
         files(**{"train/ant/a.png": png(), "train/bee/notes.txt": "x"})),
    Case(DATA, "an image that is not an image", DataError, "cannot decode image",
         lambda f: ImageFolderDataset(f, "val").load(1),
         files(**{"val/ant/a.png": png(), "val/bee/b.png": b"not a png"})),
    Case(DATA, "ImageFolderDataset image_size=0", DataError, "`image_size` must be a positive int",
         lambda f: ImageFolderDataset(f, "train", image_size=0)),
    Case(DATA, "ArrayData with float64 images", DataError, "`images` must be a float32 tensor",
         lambda _: ArrayData(torch.zeros(2, 1, 4, 4, dtype=torch.float64),
                             torch.zeros(2, dtype=torch.int64), "x", 10)),
    Case(DATA, "ArrayData label 10 of 10 classes", DataError, r"`labels` must lie in \[0, 10\)",
         lambda _: ArrayData(torch.zeros(2, 1, 4, 4), torch.tensor([0, 10]), "x", 10)),
    # -- the core, models and qat (the cases that hold today; see the report for open ones)
    Case(API, "UniformQuantizer(bits=0)", ValueError, "`bits` must be >= 1",
         lambda _: UniformQuantizer(bits=0, delta=1.0)),
    Case(API, "UniformQuantizer(bits=2.5)", ValueError, "`bits` must be an integer",
         lambda _: UniformQuantizer(bits=2.5, delta=1.0)),
    Case(API, "UniformQuantizer(bits=53)", ValueError, "`bits` must be <= 52, got 53",
         lambda _: UniformQuantizer(bits=53, delta=1.0)),
    Case(API, "channel_axis=7 on a 2-D weight", ValueError, "`channel_axis`=7 is out of range",
         lambda _: UniformQuantizer(bits=2, delta=np.ones(3), channel_axis=7)(np.ones((3, 3)))),
    Case(API, "UniformQuantizer(delta=-1)", ValueError, "`delta` must be > 0",
         lambda _: UniformQuantizer(bits=2, delta=-1.0)),
    Case(API, "get_estimator('htgee')", ValueError, "did you mean 'htge'",
         lambda _: get_estimator("htgee")),
    Case(API, "get_estimator('htge', t=nan)", ValueError, "`t` must be finite",
         lambda _: get_estimator("htge", t=float("nan"))),
    Case(API, "get_estimator(3)", TypeError, "must be a name, a dict or an Estimator",
         lambda _: get_estimator(3)),
    Case(API, "build_model('resnet21')", ValueError, "Did you mean 'resnet20'",
         lambda _: build_model("resnet21")),
    Case(API, "QuantConfig(bits=0)", ValueError, "`bits` must be >= 1",
         lambda _: QuantConfig(bits=0)),
    Case(API, "get_estimator('htge', t=True)", ValueError, "`t` must be a real number, got the boolean",
         lambda _: get_estimator("htge", t=True)),
    Case(API, "QuantConfig(per_channel='false')", ValueError, "`per_channel` must be True or False",
         lambda _: QuantConfig(per_channel="false")),
    Case(API, "quantize_(model, 'htge')", TypeError, "`config` must be a QuantConfig",
         lambda _: quantize_(nn.Linear(2, 2), "htge")),
    Case(API, "quantize_(tensor, config)", TypeError, "`model` must be a torch.nn.Module",
         lambda _: quantize_(torch.zeros(2), QuantConfig())),
    Case(API, "QuantConfig(learn_step='yes')", TypeError, "`learn_step` must be True or False",
         lambda _: QuantConfig(learn_step="yes")),
    Case(API, "QuantConfig(estimator='ede', bits=1, learn_step=True)", ValueError,
         "needs an estimator in bin units", lambda _: QuantConfig(estimator="ede", bits=1, learn_step=True)),
    Case(CONFIG, "schedule_t=[10, 1]", ConfigError, r"`schedule_t` \(t_min, t_max\) must increase",
         lambda _: ExperimentConfig(schedule_t=[10.0, 1.0])),
    Case(CONFIG, "lr_tweak=1.0", ConfigError, r"`lr_tweak` 1\.0 makes the lr-tweak partner",
         config(lr_tweak=1.0)),
    Case(CONFIG, "clip_grad_norm=0", ConfigError, "clip_grad_norm", config(clip_grad_norm=0.0)),
    Case(CONFIG, "ema_decay=1.0", ConfigError, "ema_decay", config(ema_decay=1.0)),
    Case(CONFIG, "ema_decay with parallel=fsdp", ConfigError,
         "`ema_decay` is not supported with `parallel` 'fsdp'", config(ema_decay=0.9, parallel="fsdp")),
    Case(API, "StudyConfig(optimizers=['sgdm'])", ValueError,
         r"`optimizers`: unknown optimizer 'sgdm'; choose from \['sgd', 'adam', 'nesterov'",
         lambda _: StudyConfig(optimizers=("sgdm",))),
    Case(API, "StudyConfig(clip_grad_norm=0)", ValueError, "`clip_grad_norm` must be > 0, got 0",
         lambda _: StudyConfig(clip_grad_norm=0.0)),
    Case(FILE, "epochs: 1_0 (YAML 1.1's ten, YAML 1.2's string)", ConfigError, "epochs",
         lambda f: ExperimentConfig.load(f / "c.yaml"), files(**{"c.yaml": "epochs: 1_0\n"})),
    Case(CLI, "stequiv alpha ede --bits 2 (a binary estimator)", UsageError,
         "is a binary estimator.*give --bits 1", cli("alpha", "ede", "--bits", "2")),
    Case(API, "quantize_(strict=True) of a model with an LSTM", ValueError,
         r"strict=True\): 2 weights would stay float: 0\.weight_ih_l0",
         lambda _: quantize_(nn.Sequential(nn.LSTM(32, 32), nn.Linear(32, 4)), QuantConfig(),
                             strict=True)),
    Case(API, "QuantConfig(group_size=32) on a 147-input conv", ValueError,
         "does not divide the 147 input.*group_fallback='per-channel'",
         lambda _: quantize_(nn.Conv2d(3, 8, 7), QuantConfig(group_size=32))),
    Case(API, "QuantConfig(group_fallback='skip')", ValueError, "`group_fallback` must be one of",
         lambda _: QuantConfig(group_size=32, group_fallback="skip")),
    Case(API, "alignment of a 2-bit and a 4-bit net", ValueError,
         "is quantized with lower=-2 in model_a but lower=-8",
         lambda _: alignment(quantize_(nn.Linear(8, 8), QuantConfig(bits=2)),
                             quantize_(nn.Linear(8, 8), QuantConfig(bits=4)))),
    Case(API, "alignment(qnet, adam_twin, remap=True)", ValueError,
         r"`remap=True` compares with M\(w\) .* but to_ste made the twin with weights w unchanged",
         lambda _: alignment(*adam_pair(), remap=True)),
    Case(API, "alignment of two nets, neither a to_ste twin, without `remap`", ValueError,
         r"`remap` is known only for a Q̂-net and its stequiv.to_ste twin.*give `remap=True`",
         lambda _: alignment(quantize_(nn.Linear(8, 8), QuantConfig()),
                             quantize_(nn.Linear(8, 8), QuantConfig()))),
    Case(API, "load into a model with one more layer", ValueError,
         r"does not fit the model: missing keys \['1\.bias', '1\.weight'\].*Nothing was loaded",
         lambda f: load(f / "c.pt", nn.Sequential(quantize_(nn.Linear(8, 8), QuantConfig()),
                                                  nn.Linear(8, 2))),
         lambda f: (save(nn.Sequential(quantize_(nn.Linear(8, 8), QuantConfig())), f / "c.pt"),
                    f)[1]),
    # -- issue 24: tracebacks and vague errors found by hostile input
    Case(CONFIG, "epochs=99999999999999999999999", ConfigError,
         "`epochs` must be <= 100000, got 99999999999999999999999",
         config(epochs=99999999999999999999999)),
    Case(CONFIG, "optimizers='sgd' (a name, not a list)", ConfigError,
         r"`optimizers` must be a list, got 'sgd'; a list of one name is written \[sgd\]",
         config(optimizers="sgd")),
    Case(FILE, "YAML merge key <<:", ConfigError,
         r"cfg\.yaml, line 3, column 1: the merge key `<<` is YAML 1\.1, not YAML 1\.2 .*write the "
         r"merged keys out in this mapping",
         read("cfg.yaml"), files(**{"cfg.yaml": "base: &b {epochs: 2}\nbits: 2\n<<: *b\n"})),
    Case(CLI, "study --set steps=1.5", CommandError,
         r"`steps` must be an integer, got 1\.5 \(from --set steps=1\.5\)",
         cli("study", "--quick", "--out", "{tmp}/s", "--set", "steps=1.5")),
    Case(CLI, "study --set steps=99999999999999999999999", CommandError,
         "`steps` must be <= 10000000, got 99999999999999999999999",
         cli("study", "--quick", "--out", "{tmp}/s", "--set", "steps=99999999999999999999999")),
    Case(CLI, "study --set momentum=abc", CommandError, "`momentum` must be a number, got 'abc'",
         cli("study", "--quick", "--out", "{tmp}/s", "--set", "momentum=abc")),
    Case(CLI, "study --set datasets=mnist-5k (a name, not a list)", CommandError,
         r"^Error: `datasets` must be a list, got 'mnist-5k'; a list of one name is written "
         r"\[mnist-5k\] \(from --set datasets=mnist-5k\)\n$",
         cli("study", "--quick", "--out", "{tmp}/s", "--set", "datasets=mnist-5k")),
    Case(CLI, "study --set 'lrs={sgdd: [0.1], adam: [0.001]}' (misspelt)", CommandError,
         r"`lrs` has the key 'sgdd', which is not an optimizer \(did you mean 'sgd'\?\); its keys "
         r"are optimizer names: \['sgd', 'adam', 'nesterov', .*\]",
         cli("study", "--quick", "--out", "{tmp}/s", "--set", "lrs={{sgdd: [0.1], adam: [0.001]}}")),
    Case(CLI, "study --set 'lrs={sgd: [1e308], adam: [0.001]}'", CommandError,
         r"`lrs.sgd` holds 1e\+308, beyond what float32 .* holds as a step size",
         cli("study", "--quick", "--out", "{tmp}/s", "--set", "lrs={{sgd: [1e308], adam: [0.001]}}")),
    Case(CLI, "study --report-only with a cell file cut short", CommandError,
         r"s/cells/.*\.json does not match its SHA-256 digest in .*cells/manifest\.json.* delete "
         r".*\.json and run `stequiv study`", cli("study", "--quick", "--report-only", "--out", "{tmp}/s"),
         study_with_cut_cell()),
    Case(API, "a training step with lr 1e308 (beyond float32)", NonFiniteError,
         r"the learning rate of net a is 1e\+308, beyond torch.float32's largest number 3.4e\+38",
         sgd_step(1e308)),
    Case(API, "load of a valid-hash checkpoint without 'quantization'", ValueError,
         r"c\.pt: the checkpoint's payload must be a dict with 'quantization' and 'state_dict'",
         lambda f: load(f / "c.pt", nn.Linear(8, 8)),
         raw_checkpoint({"state_dict": nn.Linear(8, 8).state_dict()})),
    Case(API, "load of a checkpoint whose layer record lacks its fields", ValueError,
         r"c\.pt: the quantization record of layer '' lacks \['estimator', 'lower'",
         lambda f: load(f / "c.pt", nn.Linear(8, 8)),
         raw_checkpoint({"quantization": {"": {"bits": 2}}, "state_dict": {}})),
    Case(API, "save on a full disk (ENOSPC)", OSError,
         r"the disk is full \(No space left on device\): .* free there, the file needs .*; free "
         r"some space or write to another disk.*: '.*c\.pt'",
         disk_full(lambda f: save(quantize_(nn.Linear(8, 8), QuantConfig()), f / "c.pt"))),


    # -- results folders: claimed only after every check; every file read under its manifest
    Case(CLI, "reproduce --set sharpness=1e-300", CommandError,
         "out of the range it can be evaluated in",
         cli("reproduce", "--out", "{tmp}/o", "--set", "sharpness=1e-300")),
    Case(CLI, "reproduce --set group_size=7 (conv1 has 9 inputs)", CommandError,
         "`group_size`=7 does not divide the 9 input elements",
         cli("reproduce", "--out", "{tmp}/o", "--set", "group_size=7")),
    Case(CLI, "reproduce --set estimator=ede (2 bits)", CommandError, "ede.* is a binary estimator",
         cli("reproduce", "--out", "{tmp}/o", "--set", "estimator=ede")),
    Case(CLI, "reproduce, ede schedule_t=[1, 1e6] (no M at its last stage)", CommandError,
         "schedule stage from step .* M does not exist",
         cli("reproduce", "--out", "{tmp}/o", "--set", "estimator=ede", "--set", "bits=1",
             "--set", "schedule=ir-net", "--set", "schedule_t=[1, 1e6]")),
    Case(CLI, "study --set seed=-1", CommandError, "`seed` must be >= 0, got -1",
         cli("study", "--quick", "--out", "{tmp}/o", "--set", "seed=-1")),
    Case(CLI, "study --set batch_size=7.5", CommandError, r"`batch_size` must be an integer, got 7\.5",
         cli("study", "--quick", "--out", "{tmp}/o", "--set", "batch_size=7.5")),
    Case(CLI, "study --set 'lrs={sgd: [.inf]}'", CommandError,
         r"`lrs\.sgd\[0\]` must be finite, got inf",
         cli("study", "--quick", "--out", "{tmp}/o", "--set", "lrs={{sgd: [.inf]}}")),
    Case(CLI, "study --set search=dense", CommandError,
         r"`search` Input should be 'grid' or 'bisect', got 'dense'",
         cli("study", "--quick", "--out", "{tmp}/o", "--set", "search=dense")),
    Case(CLI, "study --max-minutes 0.0001", CommandError, "--max-minutes 0.0001 is too small",
         cli("study", "--quick", "--out", "{tmp}/o", "--workers", "1", "--max-minutes", "0.0001")),
    Case(FOLDER, "report: config.json edited (lr_sgd 0.5)", CommandError,
         r"config\.json does not match its SHA-256 digest",
         cli("report", "{tmp}/r"), results(edit_json("config.json", lr_sgd=0.5))),
    Case(FOLDER, "report: config.json deleted", CommandError,
         r"config\.json is missing, but .* holds runs/ and manifest\.json",
         cli("report", "{tmp}/r"), results(lambda r: (r / "config.json").unlink())),
    Case(FOLDER, "reproduce into a folder whose config.json was deleted", CommandError,
         r"config\.json is missing, but .* holds runs/",
         cli("reproduce", "--quick", "--out", "{tmp}/r"), results(lambda r: (r / "config.json").unlink())),
    Case(FOLDER, "report: final.json edited (ebar)", CommandError,
         r"final\.json does not match its SHA-256 digest",
         cli("report", "{tmp}/r"), results(edit_json("runs/sgd-baseline/final.json", ebar=0.4))),
    Case(FOLDER, "report: weights.npz deleted (Figure 3's data)", CommandError,
         r"weights\.npz listed in manifest\.json is missing",
         cli("report", "{tmp}/r"),
         results(lambda r: (r / "runs" / "sgd-baseline" / "weights.npz").unlink())),
    Case(FOLDER, "study --report-only: a cell's ebar_twin edited", IntegrityError,
         r"\.json does not match its SHA-256 digest.* to train that cell again",
         lambda f: report_study(StudyConfig.from_dict(ONE_CELL), f / "s"), study_cell),
]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.bad}" for c in CASES])
def test_bad_input_is_refused_clearly_and_leaves_nothing_behind(case: Case, tmp_path: Path):
    made = case.setup(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(case.error, match=case.match):
        case.call(made)
    assert _tree(tmp_path) == before, "a failed call left files behind"


def test_the_catalogue_is_large_and_distinct():
    assert len(CASES) >= 60
    assert len({(c.area, c.bad) for c in CASES}) == len(CASES)


def _code(text: str) -> str:
    """``text`` as a Markdown code span inside a table cell (backticks and pipes kept)."""
    text = text.replace("|", r"\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render() -> str:
    """docs/bad-inputs.md from ``CASES``."""
    errors = {CommandError: "exit status 1", UsageError: "exit status 2 (usage)"}
    lines = [
        "# Bad inputs and the errors they raise",
        "",
        "Generated from `CASES` in `tests/test_bad_inputs.py`, which checks every row: the error "
        "type, a fragment of the message (a regular expression), and that files and folders made "
        "for the row are unchanged after the failure (no half-written file, no temporary file, "
        "no results folder claimed). Regenerate with "
        "`PYTHONPATH=src python tests/test_bad_inputs.py`.",
        "",
        f"{len(CASES)} inputs. Command-line rows run `stequiv` through click: exit status 1 is an "
        "error (`Error: ...`), 2 a usage error (usage line, then `Error: ...`); never a traceback.",
        "",
        "| # | where | bad input | error | message contains |",
        "|---|---|---|---|---|",
    ]
    for i, c in enumerate(CASES, 1):
        error = errors.get(c.error, f"`{c.error.__name__}`")
        fragment = _code(c.match.replace("\n", r"\n"))
        lines.append(f"| {i} | {c.area} | {_code(c.bad)} | {error} | {fragment} |")
    return "\n".join(lines) + "\n"


def test_docs_table_is_up_to_date():
    assert DOC.read_text() == render(), (
        "docs/bad-inputs.md is stale: run `PYTHONPATH=src python tests/test_bad_inputs.py`")


if __name__ == "__main__":
    DOC.write_text(render())
    json.dump({"rows": len(CASES)}, sys.stdout)
    print()
