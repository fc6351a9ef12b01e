"""``stequiv study``: train the grid of a :class:`StudyConfig`, batched, resumably, then report.

Folder layout (every file written atomically, so a stopped study is a valid, resumable folder)::

    config.json          the resolved study config (a folder refuses another one)
    cells/<cell_id>.json one row of study.csv per finished cell
    study.csv            the rows so far (rewritten after every batch)
    bound_check.json     Theorem 5.1/D.3/5.2 checked exactly (stequiv.theory)
    figures/*.png, report.md

Cells train in batches of ``nets_per_batch // 3`` cells (Q̂-net, twin, tweak each) with
:class:`BatchedNets`; the batches are fixed by the config (cell order), so a resumed study trains
each missing batch exactly as an uninterrupted one would. All nets of a dataset see the same seeded
batches. With ``workers`` > 1 the batches are shared out to that many spawned processes (one
thread each by default: on this 2-core machine two workers use both cores, which the single-threaded
batched step cannot); the main process alone writes the folder, one batch at a time as each
finishes, so a stopped study is still a valid, resumable folder.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ... import qat
from ..._memory import keep_freed_memory
from ..._process import die_with_parent
from ...core import BinaryQuantizer, NoRemapError, UniformQuantizer, constants, get_estimator
from ...data import Split, load_split
from ...models import build_model
from ..config import PairSpec
from ..engine import (
    build_partner,
    build_qnet,
    check_estimator_dtype,
    deterministic_algorithms,
    warmup_cosine,
)
from ..parallel import balance, two_parts
from ..results import (
    add_to_manifest,
    check_claim,
    config_diff,
    listed_files,
    read_claimed_config,
    remove_partial_writes,
    remove_unlisted,
    write_config,
)
from ._batched import BatchedNets, NetState
from ._optimizers import STUDY_OPTIMIZERS, study_rule
from ._search import cells_to_train, most_cells, series_of
from ._study_config import Cell, StudyConfig

__all__ = ["StudyData", "build_cell", "cell_batches", "clipper", "index_stream", "load_study_data",
           "report_study", "run_study", "train_lockstep", "train_sequential", "worker_pool"]

NETS_PER_CELL = 3  # Q̂-net, STE twin, lr-tweak partner
CELLS = "cells"  # one <cell_id>.json per finished cell, and their manifest.json


@dataclass(frozen=True)
class StudyData:
    """The training split and ``eval_samples`` validation images, evenly spaced (as tensors)."""

    train: Split
    val_x: torch.Tensor
    val_y: torch.Tensor


def load_study_data(config: StudyConfig, dataset: str) -> StudyData:
    """``dataset``'s splits (``data_dir`` as for ``reproduce``)."""
    train = load_split(dataset, "train", data_dir=config.data_dir)
    val = load_split(dataset, "val", data_dir=config.data_dir)
    if config.eval_samples < len(val):
        val = val.subset(config.eval_samples)  # evenly spaced: every class keeps its share
    x, y = val.batch(list(range(len(val))))
    return StudyData(train, x, y)


def index_stream(n: int, batch_size: int, seed: int, steps: int) -> Iterator[list[int]]:
    """``steps`` batches of indices: a seeded permutation per epoch, last partial batch dropped."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"`batch_size` {batch_size} exceeds the {n} training images")
    for step in range(steps):
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        yield perm[k * batch_size:(k + 1) * batch_size].tolist()


def build_cell(cell: Cell, config: StudyConfig, data: StudyData) -> list[NetState]:
    """The Q̂-net (seeded), its STE twin (``to_ste``'s rule for the cell's optimizer) and its
    lr-tweak partner, each with optimizer and the warm-up + cosine schedule."""
    cfg = cell.experiment_config(config)
    a = build_qnet(cfg, data.train.in_channels, data.train.num_classes, torch.device("cpu"))
    opt = STUDY_OPTIMIZERS[cell.optimizer].make(a.parameters(), cell.lr, config.hyper)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(config.steps, config.warmup_fraction))
    kind = cfg.optimizers[0]  # the twin's kind: study_rule's
    twin = build_partner(cfg, PairSpec("twin", kind, "baseline"), a, opt, sched)
    tweak = build_partner(cfg, PairSpec("tweak", kind, "lr-tweak", partner="lr-tweak"), a, opt, sched)
    return [NetState(a, opt, sched), NetState(*twin), NetState(*tweak)]


def cell_batches(config: StudyConfig, cells: Sequence[Cell] | None = None) -> list[list[Cell]]:
    """``cells`` (default: the whole grid) grouped into training batches (same model and dataset,
    ≤ ``nets_per_batch`` nets), in the order of their first cell."""
    per = max(1, config.nets_per_batch // NETS_PER_CELL)
    cells = config.cells() if cells is None else list(cells)
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.dataset), []).append(cell)
    out = [group[i:i + per] for group in groups.values() for i in range(0, len(group), per)]
    first = {cell.cell_id: k for k, cell in enumerate(cells)}
    return sorted(out, key=lambda batch: first[batch[0].cell_id])


def _finite(net: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in net.parameters())


def _pair_metrics(a: torch.nn.Module, b: torch.nn.Module, remap: bool) -> tuple[float, float]:
    """(Ē, agreement); NaN when a net diverged or M(w) is infinite (a weight went so far out that
    Q̂′ underflows to 0 there: the pair's alignment is undefined, and Point A counts as failed)."""
    if not (_finite(a) and _finite(b)):
        return math.nan, math.nan
    try:
        al = qat.alignment(a, b, remap=remap)
    except NoRemapError:
        return math.nan, math.nan
    return al.ebar, al.agreement


def cell_row(cell: Cell, config: StudyConfig, states: Sequence[NetState],
             scores: Sequence[dict[str, float]], train_loss: Sequence[float]) -> dict[str, Any]:
    """One row of study.csv from a trained cell."""
    a, twin, tweak = (s.net for s in states)
    rule = study_rule(cell.optimizer, config.hyper)
    e_twin, g_twin = _pair_metrics(a, twin, remap=rule.kind == "sgd")
    e_tweak, g_tweak = _pair_metrics(a, tweak, remap=False)
    params = {k: v for k, v in cell.experiment_config(config).estimator_spec().items() if k != "name"}
    row: dict[str, Any] = {
        "estimator": cell.label, "params": json.dumps(params, sort_keys=True), "bits": cell.bits,
        "optimizer": cell.optimizer, "twin_rule": rule.rule, "order": rule.order, "lr": cell.lr,
        "model": cell.model, "dataset": cell.dataset,
        "ebar_twin": e_twin, "ebar_tweak": e_tweak, "agreement_twin": g_twin,
        "agreement_tweak": g_tweak, "coefficient": _coefficient(cell, config), "steps": config.steps}
    for tag, score, loss in zip(("q", "twin", "tweak"), scores, train_loss, strict=True):
        row.update({f"train_loss_{tag}": loss, f"val_loss_{tag}": score["loss"],
                    f"val_acc_{tag}": score["acc"]})
    return row


def _coefficient(cell: Cell, config: StudyConfig) -> float:
    est = get_estimator(cell.experiment_config(config).estimator_spec())
    grid = BinaryQuantizer() if est.kind == "binary" else UniformQuantizer.symmetric(cell.bits, 1.0)
    try:
        return float(constants(est, grid).coefficient)
    except ValueError:  # L₋ ≤ 0: Assumption 5.1.1 fails
        return math.nan


def _train_batch(cells: Sequence[Cell], config: StudyConfig, data: StudyData) -> list[dict[str, Any]]:
    states = [s for cell in cells for s in build_cell(cell, config, data)]
    nets = BatchedNets(states)
    clips = [c for k, cell in enumerate(cells)
             if (c := clipper(cell, config, *(s.net for s in states[3 * k:3 * k + 3])))]
    tail = max(1, config.steps // 10)
    loss_sum = torch.zeros(len(states), dtype=torch.float64)
    for step, idx in enumerate(index_stream(len(data.train), config.batch_size, config.seed, config.steps)):
        x, y = data.train.batch(idx)
        losses = nets.train_step(x, y, before_step=clips)
        if step >= config.steps - tail:
            loss_sum += losses.double()
    scores = nets.evaluate(zip(data.val_x.split(250), data.val_y.split(250), strict=True))
    train_loss = (loss_sum / tail).tolist()
    return [cell_row(cell, config, states[3 * k:3 * k + 3], scores[3 * k:3 * k + 3],
                     train_loss[3 * k:3 * k + 3]) for k, cell in enumerate(cells)]


def clipper(cell: Cell, config: StudyConfig, qnet: nn.Module, twin: nn.Module | None = None,
            tweak: nn.Module | None = None) -> Callable[[], None] | None:
    """The gradient clipping of the cell's optimizer (``clip`` of :mod:`._optimizers`), to call
    between backward and step; None where it does not clip. ``"pair"``: the twin is scaled by the
    Q̂-net's coefficient (:func:`stequiv.qat.clip_grad_norm_pair_`); ``"own"``: by its own norm.
    The lr-tweak partner, a Q̂-net, clips by its own norm."""
    habit, tau = STUDY_OPTIMIZERS[cell.optimizer].clip, config.clip_grad_norm
    if not habit:
        return None

    def clip() -> None:
        if twin is not None and habit == "pair":
            qat.clip_grad_norm_pair_(qnet, twin, tau)
        else:
            nn.utils.clip_grad_norm_(qnet.parameters(), tau)
            if twin is not None:
                nn.utils.clip_grad_norm_(twin.parameters(), tau)
        if tweak is not None:
            nn.utils.clip_grad_norm_(tweak.parameters(), tau)

    return clip


def train_lockstep(states: Sequence[NetState], config: StudyConfig, data: StudyData,
                   clip: Callable[[], None] | None = None) -> None:
    """Train ``states`` side by side, each net one step on every batch of the study's stream
    (``clip``, if given, between the backwards and the steps)."""
    for idx in index_stream(len(data.train), config.batch_size, config.seed, config.steps):
        x, y = data.train.batch(idx)
        for s in states:
            s.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(s.net(x), y).backward()
        if clip is not None:
            clip()
        for s in states:
            s.optimizer.step()
            s.schedule.step()


def train_sequential(cells: Sequence[Cell], config: StudyConfig, data: StudyData) -> list[list[NetState]]:
    """The same cells as pairs one after another, the one-net way (module forward, autograd
    Function backward): (Q̂, twin), then (Q̂, tweak) with a fresh Q̂-net. The reference for tests
    and benchmarks; returns each cell's [Q̂, twin, tweak] (the Q̂-net of the first pair)."""
    out = []
    for cell in cells:
        first = build_cell(cell, config, data)
        second = build_cell(cell, config, data)
        train_lockstep(first[:2], config, data, clipper(cell, config, first[0].net, twin=first[1].net))
        train_lockstep([second[0], second[2]], config, data,
                       clipper(cell, config, second[0].net, tweak=second[2].net))
        out.append([first[0], first[1], second[2]])
    return out


def calibrate(config: StudyConfig, data: StudyData, steps: int = 2, *,
              model: str | None = None) -> float:
    """Seconds per net-step of a full training batch of ``model``'s cells (default: the first
    batch of the grid); throwaway nets, nothing is written."""
    cells = next(b for b in cell_batches(config) if model is None or b[0].model == model)
    nets = BatchedNets([s for c in cells for s in build_cell(c, config, data)])
    stream = index_stream(len(data.train), config.batch_size, config.seed, steps + 1)
    nets.train_step(*data.train.batch(next(stream)))  # warm-up
    started = time.perf_counter()
    for idx in stream:
        nets.train_step(*data.train.batch(idx))
    return (time.perf_counter() - started) / (steps * len(nets.states))


def _claim_remedy(out: Path) -> str:
    return f"delete the folder {out} (or choose another --out folder) and run the study again"


def report_study(config: StudyConfig, out_dir: str | Path) -> dict[str, Any]:
    """study.csv, figures and report.md of the cells finished so far in ``out_dir`` (no
    training): a stopped study is reported as it stands, and can be resumed later. Every cell is
    verified against ``cells/manifest.json``; one listed there but deleted is an error (never
    reported as not yet trained)."""
    from ._study_report import read_rows, write_study_outputs

    out = Path(out_dir)
    saved = read_claimed_config(out, "cells", _claim_remedy(out))
    if saved is None:
        raise ValueError(f"{out} holds no study (no config.json); run `stequiv study` into it first")
    diff = config_diff(saved, config.to_dict())
    if diff:
        raise ValueError(f"{out} holds a study of another config (keys differ: {diff}); give its "
                         "config, or choose another folder")
    listed_files(out / CELLS, "run `stequiv study` with this config into the folder to train "
                              "the missing cells again")
    return write_study_outputs(out, config, read_rows(out, config))


def _check_budget(left: dict[str, int], config: StudyConfig, max_minutes: float,
                  seconds_per_net_step: dict[str, float], workers: int) -> None:
    """Refuse a grid whose cells left need more than ``max_minutes``: Σ over models of cells × 3
    nets × steps × that model's seconds per net-step, shared by ``workers``."""
    need = sum(cells * NETS_PER_CELL * config.steps * seconds_per_net_step[model]
               for model, cells in left.items()) / 60.0 / workers
    if need > max_minutes:
        at_most = " at most" if config.search == "bisect" else ""
        parts = ", ".join(f"{model}: {cells * NETS_PER_CELL} nets at "
                          f"{seconds_per_net_step[model] * 1e3:.0f} ms per net-step"
                          for model, cells in left.items() if cells)
        raise ValueError(
            f"--max-minutes {max_minutes:g} is too small for the grid: {sum(left.values())} cells "
            f"left{at_most} ({parts}, × {config.steps} steps, measured now, on {workers} "
            f"worker(s)) need about {need:.1f} minutes; raise --max-minutes, or shrink the grid "
            "(fewer `lrs`, `estimators`, `bits`, `datasets`, `models`) or `steps`")


def run_study(config: StudyConfig, out_dir: str | Path, *, max_minutes: float | None = None,
              progress: bool = True, workers: int = 1) -> dict[str, Any]:
    """Train (or resume) every cell of ``config`` into ``out_dir``, then write the report.

    ``workers`` > 1 trains that many batches at once in worker processes (each with
    ``config.threads`` threads); every batch is trained exactly as in one process, so the rows do
    not depend on ``workers`` (tests/test_study.py), and a resumed study may use another count.
    Workers are spawned: they know the estimators that importing stequiv registers (the catalogue
    and ``study_cosine``), not ones a program registered at run time — use ``workers=1`` for those."""
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {max_minutes}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"--workers must be an integer ≥ 1, got {workers!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, Path(out_dir), max_minutes, progress, workers)
    finally:
        torch.set_num_threads(threads)


def model_flops(config: StudyConfig, data: dict[str, StudyData]) -> dict[str, float]:
    """Floating-point operations of one forward pass on one image, per model of the grid
    (:class:`torch.utils.flop_counter.FlopCounterMode`): the relative cost of their net-steps,
    for sharing the batches among workers (ResNet-20 ≈ 10 ConvNets on 28 × 28 images)."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for model, dataset in _first_datasets(config).items():
        d = data[dataset]
        x = d.val_x[:1]
        net = build_model(model, num_classes=d.train.num_classes, in_channels=x.shape[1]).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
        out[model] = float(counter.get_total_flops())
    return out


def scheduled(todo: list[list[Cell]], workers: int, flops: dict[str, float]) -> list[list[Cell]]:
    """A round's batches for ``workers`` processes: a batch is cut in two where that lets the
    workers finish sooner, costliest first (:func:`~stequiv.experiments.parallel.balance`; cost
    = nets × the model's :func:`model_flops`). Each cell trains its own three nets, and a cell's
    numbers do not depend on its batch-mates (tests/test_study.py), so a cut changes no row."""
    return balance(todo, workers, lambda b: len(b) * NETS_PER_CELL * flops[b[0].model], two_parts)


def _first_datasets(config: StudyConfig) -> dict[str, str]:
    """Each model of the grid and the dataset of its first cell."""
    return {c.model: c.dataset for c in reversed(config.cells())}


def _run(config: StudyConfig, out: Path, max_minutes: float | None, progress: bool,
         workers: int) -> dict[str, Any]:
    """Check everything, then claim ``out``, then train the missing batches: a refused study
    (its data, estimators in float32, ``--max-minutes``, a folder of another config) writes
    nothing, so the corrected command can run into the same folder."""
    from ._study_report import read_rows, write_study_csv, write_study_outputs

    deterministic_algorithms()
    data = _checked_data(config)
    claim = check_claim(out, config.to_dict(), CELLS, config_diff)
    if out.is_dir():
        _tidy(out)
    read_rows(out, config)  # every saved cell verified before any is trusted as done
    if max_minutes is not None:
        left = _cells_left(config, out)
        if sum(left.values()):
            first = _first_datasets(config)
            speed = {m: calibrate(config, data[first[m]], model=m) for m, n in left.items() if n}
            _check_budget(left, config, max_minutes, speed, workers)
    if claim:
        write_config(out, config.to_dict())
    done = 0
    flops = model_flops(config, data) if workers > 1 else {}
    while todo := cell_batches(config, _cells_to_train(config, out)):
        if workers > 1:
            todo = scheduled(todo, workers, flops)
        batches = _in_workers(todo, config, workers) if workers > 1 else _in_process(todo, config, data)
        for cells, rows, seconds in batches:
            for row in rows:
                row["seconds"] = seconds / len(cells)
            # a diverged cell's NaN stays NaN (Python's JSON reads it back; the report counts it)
            add_to_manifest(out / CELLS, {f"{c.cell_id}.json": json.dumps(row, indent=2) for c, row
                                          in zip(cells, rows, strict=True)}, _claim_remedy(out))
            write_study_csv(out, config)
            done += 1
            if progress:
                print(f"[study] batch {done}{_of(config, len(todo))}: {len(cells)} cells in "
                      f"{seconds:.0f} s", flush=True)
    return write_study_outputs(out, config, read_rows(out, config))


def _trained(out: Path) -> Callable[[Cell], dict[str, Any] | None]:
    """A cell's saved row (verified), or None while it is not trained."""
    from ._study_report import read_cell

    def row(cell: Cell) -> dict[str, Any] | None:
        path = out / CELLS / f"{cell.cell_id}.json"
        return read_cell(path) if path.exists() else None
    return row


def _cells_to_train(config: StudyConfig, out: Path) -> list[Cell]:
    """The cells to train now: every untrained cell of the grid, or (``search: bisect``) the next
    η of each unresolved series (:func:`._search.cells_to_train`)."""
    from ._study_report import point_a_holds

    if config.search == "bisect":
        return cells_to_train(config.cells(), _trained(out), point_a_holds)
    return [c for c in config.cells() if not (out / CELLS / f"{c.cell_id}.json").exists()]


def _cells_left(config: StudyConfig, out: Path) -> dict[str, int]:
    """How many cells of each model the study still trains (bisect: at most, if every series
    bisects fully)."""
    left = dict.fromkeys(config.models, 0)
    if config.search == "grid":
        for cell in _cells_to_train(config, out):
            left[cell.model] += 1
        return left
    trained = _trained(out)
    for series in series_of(config.cells()).values():
        left[series[0].model] += max(0, most_cells(len(series))
                                     - sum(trained(c) is not None for c in series))
    return left


def _of(config: StudyConfig, batches: int) -> str:
    """" of N" for the grid; a bisection's later rounds are not known in advance."""
    return f"/{batches}" if config.search == "grid" else f" (this round: {batches} batches)"


def _checked_data(config: StudyConfig) -> dict[str, StudyData]:
    """Each dataset's data, once its size fits ``batch_size`` and every (estimator, bits) of the
    grid evaluates in float32 as it trains."""
    data = {d: load_study_data(config, d) for d in config.datasets}
    for name, d in data.items():
        if len(d.train) < config.batch_size:
            raise ValueError(f"`batch_size` {config.batch_size} exceeds the {len(d.train)} training "
                             f"images of {name!r}; give a smaller `batch_size`")
    seen = set()
    for cell in config.cells():
        key = (json.dumps(dict(cell.estimator), sort_keys=True), cell.bits)
        if key not in seen:
            seen.add(key)
            check_estimator_dtype(cell.experiment_config(config), torch.device("cpu"))
    return data


def _tidy(out: Path) -> None:
    """Remove what killed writes left: temporary files, and cells the manifest does not list yet
    (written just before a kill; they train again)."""
    stale = remove_partial_writes(out)
    if (out / CELLS).is_dir():
        stale += remove_unlisted(out / CELLS, _claim_remedy(out))
    for path in stale:
        print(f"note: removed {path} (written by a stopped study, not in its manifest)",
              file=sys.stderr)


_Done = tuple[list[Cell], list[dict[str, Any]], float]


def _timed(cells: list[Cell], config: StudyConfig, data: StudyData) -> _Done:
    started = time.perf_counter()
    rows = _train_batch(cells, config, data)
    return cells, rows, time.perf_counter() - started


def _in_process(todo: list[list[Cell]], config: StudyConfig,
                data: dict[str, StudyData]) -> Iterator[_Done]:
    for cells in todo:
        yield _timed(cells, config, data[cells[0].dataset])


# One worker process's data, loaded on its first batch of each dataset (the config is fixed).
_WORKER_DATA: dict[str, StudyData] = {}


def _worker_init(threads: int, parent: int) -> None:
    die_with_parent(parent)
    keep_freed_memory()
    torch.set_num_threads(threads)
    deterministic_algorithms()


def _worker_batch(config: dict[str, Any], cells: list[Cell]) -> _Done:
    """A batch of cells trained in a worker process."""
    study = StudyConfig.from_dict(config)
    dataset = cells[0].dataset
    if dataset not in _WORKER_DATA:
        _WORKER_DATA[dataset] = load_study_data(study, dataset)
    return _timed(cells, study, _WORKER_DATA[dataset])


def worker_pool(config: StudyConfig, workers: int) -> ProcessPoolExecutor:
    """``workers`` fresh (spawned) processes with ``config.threads`` threads each and torch's
    deterministic algorithms, as the main process trains; each is killed if this process dies
    (:func:`~stequiv._process.die_with_parent`)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(config.threads, os.getpid()))


def _in_workers(todo: list[list[Cell]], config: StudyConfig, workers: int) -> Iterator[_Done]:
    pool = worker_pool(config, workers)
    try:
        futures = [pool.submit(_worker_batch, config.to_dict(), cells) for cells in todo]
        for future in as_completed(futures):
            yield future.result()
    finally:  # a stop or an error: drop the batches not started, leave the folder as it is
        pool.shutdown(wait=False, cancel_futures=True)
