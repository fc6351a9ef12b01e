"""``stequiv reproduce``: every pair of Section 6 on real data, then the tables, figures and report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..data import load_split
from ._config import ExperimentConfig
from ._distributed import Dist, setup_distributed
from ._pair import TrainData, atomic_write, run_pair
from ._setup import pair_specs

__all__ = ["load_data", "reproduce"]


def load_data(config: ExperimentConfig) -> TrainData:
    """The train/val splits of ``config.dataset`` (optionally the first ``max_train_samples``)."""
    train = load_split(config.dataset, "train", data_dir=config.data_dir, download=config.download)
    val = load_split(config.dataset, "val", data_dir=config.data_dir, download=config.download)
    if config.max_train_samples is not None and config.max_train_samples < len(train):
        n = config.max_train_samples
        train = type(train)(train.images[:n], train.labels[:n], train.name, train.num_classes)
    return TrainData(train, val)


def _claim_folder(out: Path, config: ExperimentConfig, dist: Dist) -> None:
    """Write ``config.json``, or check that the folder holds this very config (resume)."""
    path = out / "config.json"
    resolved = config.to_dict()
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != json.loads(json.dumps(resolved)):
            diff = sorted(k for k in set(saved) | set(resolved)
                          if saved.get(k) != json.loads(json.dumps(resolved)).get(k))
            raise ValueError(f"{out} already holds results of a different config (keys differ: "
                             f"{diff}); choose another --out folder or delete it")
    elif dist.is_main:
        atomic_write(path, json.dumps(resolved, indent=2))
    dist.barrier()


def reproduce(config: ExperimentConfig, out_dir: str | Path, *, progress: bool = True,
              dist: Dist | None = None) -> dict:
    """Run (or resume) every pair of ``config`` into ``out_dir`` and write the report.

    Returns the summary (also saved as ``out_dir/summary.json``).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    dist = dist or setup_distributed(config.device)
    torch.use_deterministic_algorithms(True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _claim_folder(out, config, dist)
    data = load_data(config)
    for spec in pair_specs(config):
        run_pair(config, spec, data, out / "runs" / spec.run_id, dist, progress=progress)
    summary: dict = {}
    if dist.is_main:
        from ..plots import plot_estimators
        from ._report import write_report

        plot_estimators(out / "figures", [config.estimator, "ste", "pwl"])
        write_report(out)
        summary = json.loads((out / "summary.json").read_text())
    dist.barrier()
    return summary
