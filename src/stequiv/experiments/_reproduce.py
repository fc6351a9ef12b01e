"""``stequiv reproduce``: every pair of Section 6 on real data, then the tables, figures and report."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import (
    TEXT_DATASETS,
    DataError,
    ImageFolderDataset,
    ImageFolderSplit,
    load_split,
    load_text,
)
from ..models import LM_SIZES
from ._groups import train_groups
from .config import ADAM_IS_BASELINE, IMAGE_FOLDER, PROTOCOL, ExperimentConfig, PairSpec, pair_specs
from .engine import (
    PhaseTimes,
    TrainData,
    check_builds,
    check_compiles,
    check_estimator_dtype,
    deterministic_algorithms,
)
from .parallel import Dist, balance_groups, setup_distributed
from .results import (
    check_claim,
    config_diff,
    json_text,
    read_claimed_config,
    read_verified,
    remove_partial_writes,
    results_remedy,
    write_config,
    write_json,
    write_with_manifest,
)

__all__ = ["TIMINGS", "group_specs", "load_data", "planned_groups", "reproduce"]

TIMINGS = "timings.json"
"""The file of a results folder holding the wall-clock and CPU seconds of each phase of the last
``reproduce`` call: ``{"phases": [{"phase", "wall_s", "cpu_s"}, ...], "processes", "threads"}``.
Outside every manifest (a rerun's times differ, its results do not)."""


def _image_folders(config: ExperimentConfig) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """``data_dir/train`` and ``data_dir/val``, which must hold the same classes."""
    train, val = (ImageFolderSplit(ImageFolderDataset(config.data_dir, split, seed=config.seed,
                                                      image_size=config.image_size))
                  for split in ("train", "val"))
    only = sorted(set(train.dataset.classes) ^ set(val.dataset.classes))
    if only:
        raise DataError(f"{config.data_dir!r}: train/ and val/ hold different classes (in one "
                        f"only: {only[:5]}{' ...' if len(only) > 5 else ''}); both need the same "
                        "class sub-folders")
    return train, val


def load_data(config: ExperimentConfig) -> TrainData:
    """The train/val splits of ``config.dataset`` (``max_train_samples`` of train and
    ``max_val_samples`` of val, evenly spaced)."""
    if config.dataset == IMAGE_FOLDER:
        train, val = _image_folders(config)
    elif config.dataset in TEXT_DATASETS:
        context = LM_SIZES[config.model].context
        train, val = (load_text(config.dataset, split, context=context, data_dir=config.data_dir)
                      for split in ("train", "val"))
    else:
        train = load_split(config.dataset, "train", data_dir=config.data_dir,
                           download=config.download)
        val = load_split(config.dataset, "val", data_dir=config.data_dir, download=config.download)
    if config.max_train_samples is not None and config.max_train_samples < len(train):
        train = train.subset(config.max_train_samples)
    if config.max_val_samples is not None and config.max_val_samples < len(val):
        val = val.subset(config.max_val_samples)
    return TrainData(train, val)


def checked_data(config: ExperimentConfig, dist: Dist,
                 phases: PhaseTimes | None = None) -> TrainData:
    """The data of ``config``, once the batch size, the estimators' float32 evaluation, (with
    ``compile``) their tracing, and every group's nets and partners are checked: every refusal
    before anything is trained or written. ``phases``, if given, receives the seconds of
    ``load data`` and ``preflight``."""
    phases = PhaseTimes() if phases is None else phases
    with phases.phase("load data"):
        data = load_data(config)
    with phases.phase("preflight"):
        config.check_data(len(data.train), dist.world_size)
        check_estimator_dtype(config, dist.device)
        check_compiles(config)
        check_builds(config, group_specs(pair_specs(config)), data)
    return data


def _differs(saved: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    # how many groups train at once changes no number: a resume may use another count
    return [k for k in config_diff(saved, ours) if k != "processes"]


def _claim_folder(out: Path, config: ExperimentConfig, dist: Dist) -> None:
    """Write ``config.json`` and its manifest, or check that the folder holds this very config
    (resume); then remove the temporary files of writes a kill cut short."""
    claim = check_claim(out, config.to_dict(), "runs", _differs)  # every rank: all refuse alike
    dist.barrier()
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for path in remove_partial_writes(out):
            print(f"note: removed {path} (a write cut short by a kill)", file=sys.stderr)
        if claim:
            write_config(out, config.to_dict())
    dist.barrier()


def _copy_adam_baseline(runs: Path, experiment: str) -> None:
    """An experiment that under Adam *is* the baseline (``adam="baseline"`` in the protocol, e.g.
    "unadjusted": Table 2, no M and no α to drop): record the baseline's run as such.

    Training it again would repeat the baseline bit for bit (runs are deterministic).
    """
    base = runs / "adam-baseline"
    files = {name: read_verified(base / name, results_remedy(base), required=False)
             for name in ("metrics.csv", "weights.npz", "final.json")}
    final = json.loads(files["final.json"])
    run_id = f"adam-{experiment}"
    final.update(run_id=run_id, experiment=experiment,
                 note=ADAM_IS_BASELINE.format(name=experiment))
    write_with_manifest(runs / run_id, {**files, "final.json": json_text(final)})


def group_specs(specs: list[PairSpec]) -> list[list[PairSpec]]:
    """The specs by the Q̂-net they train (optimizer, lr factor), in order of first appearance.

    Each group trains its Q̂-net once with all partners beside it (``run_group``): e.g. SGD's
    baseline, lr-tweak, unadjusted and ablations cost 1 + 5 nets instead of 5 pairs' 10.
    """
    groups: dict[tuple[str, float], list[PairSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.optimizer, spec.lr_factor), []).append(spec)
    return list(groups.values())


def planned_groups(config: ExperimentConfig, processes: int) -> list[list[PairSpec]]:
    """The groups a reproduction trains on ``processes`` worker processes: :func:`group_specs`,
    split where that lets the workers finish sooner (:func:`~.parallel.balance_groups`)."""
    return balance_groups(group_specs(pair_specs(config)), processes, config.switch_fraction)


def _started_processes(out: Path, config: ExperimentConfig, dist: Dist) -> int:
    """The ``processes`` of the claimed ``config.json``: the run's groups are those it started
    with, so a resume with another count finds each group's checkpoint where it left it."""
    if dist.enabled:
        return 1  # under torchrun the groups train one after another
    saved = read_claimed_config(out, "runs", f"delete the folder {out} and run again")
    return int((saved or {}).get("processes", config.processes))


def reproduce(config: ExperimentConfig, out_dir: str | Path, *, progress: bool = True,
              dist: Dist | None = None) -> dict:
    """Run (or resume) every pair of ``config`` into ``out_dir`` and write the report.

    Returns the summary (also saved as ``out_dir/summary.json``). The wall-clock and CPU seconds
    of each phase of this call go to ``out_dir/timings.json`` (:data:`TIMINGS`), which no manifest
    lists: the times differ from run to run, the results do not.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    if dist is None:
        dist = setup_distributed(config.device)
        try:
            return reproduce(config, out_dir, progress=progress, dist=dist)
        finally:
            dist.close()
    deterministic_algorithms()
    phases = PhaseTimes()
    data = checked_data(config, dist, phases)  # before the folder is claimed
    if config.parallel == "fsdp" and not dist.enabled and dist.is_main:
        print("note: `parallel` 'fsdp' in one process: nothing to shard, each net trains whole "
              "(start with `torchrun --nproc-per-node N` to shard the nets over N processes)",
              file=sys.stderr)
    out = Path(out_dir)
    _claim_folder(out, config, dist)
    with phases.phase("train groups (all, worker processes included)"):
        groups = planned_groups(config, _started_processes(out, config, dist))
        train_groups(config, groups, data, out / "runs", dist,
                     progress=progress, phases=phases)
    summary: dict = {}
    if dist.is_main:
        from ..plots import plot_estimators
        from .results import rebuild

        if "adam" in config.optimizers:
            with phases.phase("copy Adam baselines"):
                for name in config.experiments:
                    if PROTOCOL[name].adam == "baseline":
                        _copy_adam_baseline(out / "runs", name)
        with phases.phase("figure 1 (estimators)"):
            plot_estimators(out / "figures", [config.estimator, "ste", "pwl"])
        with phases.phase("summary, tables, figures, report"):
            summary = rebuild(out).summary
        write_json(out / TIMINGS, {"phases": phases.rows, "processes": config.processes,
                                   "threads": config.threads}, newline=True)
    dist.barrier()
    return summary
