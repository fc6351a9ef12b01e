"""The jobs users run, timed phase by phase: wall-clock and CPU seconds.

* **reproduce** — ``stequiv reproduce --quick`` (``make reproduce``: one worker process per core):
  the whole command, then each phase of the run from the ``timings.json`` it writes (load data,
  preflight, the pair groups — each group's set-up, training, evaluation and writing, measured in
  the worker that trained it — figure 1, the summary/tables/figures/report), and the rest
  (start-up: Python, torch and stequiv imports; worker start-up);
* **study** — ``stequiv study --quick`` (2 worker processes);
* **test** — ``make test``'s test run, ``pytest -n 2 -q`` (the default suite: slow tests skipped);
* **export** — ``stequiv export`` of a 2-bit ConvNet checkpoint to ONNX.

Each job runs as a child process of this script. CPU seconds are user + system time of that
child and of every process it waited for (worker processes included): on a shared machine they
are the measure that does not grow with the load, and on idle cores a job's wall time is about
its CPU seconds divided by the processes it keeps busy. Rows of the groups (indented) are inside
``train groups``; "start-up and the rest" is the whole command less the run's own phases.

``--tiny`` runs every job (``--tiny test,study``: those jobs) at toy size (a few steps; one test
file) to check that every phase is reported, not to time anything; the table marks them.
Writes ``benchmarks/results/jobs.md`` (or ``--out``).
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_jobs.py [--tiny [JOBS]] [--jobs JOBS]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _bench import environment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "jobs.md"
STEQUIV = [sys.executable, "-m", "stequiv"]
TINY_REPRODUCE = ["--set", "max_train_samples=64", "--set", "epochs=1", "--set", "batch_size=32",
                  "--set", "eval_every=1", "--set", "optimizers=[sgd]", "--set",
                  "experiments=[baseline]", "--set", "lr_sweep=[]"]
TINY_STUDY = ["--set", "steps=2", "--set", "eval_samples=32", "--set",
              "estimators=[{name: htge, bits: [2]}]", "--set", "lrs={sgd: [0.01], adam: [0.001]}"]
TINY_TESTS = ["tests/test_models.py"]


@dataclass(frozen=True)
class Phase:
    """One row: a job's phase (``indent``: inside the row above it) and its seconds."""

    job: str
    phase: str
    wall_s: float
    cpu_s: float
    indent: bool = False


@dataclass(frozen=True)
class Job:
    """A command, what to prepare for it in ``folder`` (untimed), and its phases after it ran."""

    name: str  # for --jobs
    label: str  # in the table
    command: Callable[[Path, bool], list[str]]
    prepare: Callable[[Path], None] = lambda folder: None
    phases: Callable[[Path, Phase], list[Phase]] = lambda folder, whole: []


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _timed(job: str, command: list[str]) -> Phase:
    """Run ``command`` from the repository root; its wall and CPU seconds as the job's first row."""
    wall, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{job}: {' '.join(command)} exited with {done.returncode}:\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return Phase(job, "whole command", time.perf_counter() - wall, _children_cpu() - cpu)


def _reproduce_command(folder: Path, tiny: bool) -> list[str]:
    processes = 1 if tiny else os.cpu_count() or 1
    return [*STEQUIV, "reproduce", "--quick", "--out", str(folder / "quick"), "--set",
            f"processes={processes}", "--no-progress", *(TINY_REPRODUCE if tiny else [])]


def _reproduce_phases(folder: Path, whole: Phase) -> list[Phase]:
    """The run's phases from its ``timings.json``; a group's rows indented under the groups."""
    rows = json.loads((folder / "quick" / "timings.json").read_text())["phases"]
    phases = [Phase(whole.job, r["phase"], r["wall_s"], r["cpu_s"], ": " in r["phase"])
              for r in rows]
    own = [p for p in phases if not p.indent]
    rest = Phase(whole.job, "start-up and the rest", whole.wall_s - sum(p.wall_s for p in own),
                 whole.cpu_s - sum(p.cpu_s for p in own))
    return [*phases, rest]


def _study_command(folder: Path, tiny: bool) -> list[str]:
    return [*STEQUIV, "study", "--quick", "--out", str(folder / "study"), "--no-progress",
            *(TINY_STUDY if tiny else [])]


def _test_command(folder: Path, tiny: bool) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            *(TINY_TESTS if tiny else ["-n", "2"])]


def _save_convnet(folder: Path) -> None:
    """A 2-bit quantized ConvNet checkpoint, as ``stequiv.save`` writes it."""
    import torch

    import stequiv
    from stequiv import qat
    from stequiv.models import build_model

    model = build_model("convnet", generator=torch.Generator().manual_seed(0))
    qat.quantize_(model, qat.QuantConfig(bits=2), log=False)
    stequiv.save(model, folder / "convnet.pt")


def _export_command(folder: Path, tiny: bool) -> list[str]:
    return [*STEQUIV, "export", str(folder / "convnet.pt"), str(folder / "convnet.onnx"),
            "--model", "convnet", "--format", "onnx", "--input-shape", "1,1,28,28"]


JOBS = {job.name: job for job in (
    Job("reproduce", "reproduce --quick", _reproduce_command, phases=_reproduce_phases),
    Job("study", "study --quick", _study_command),
    Job("test", "make test's pytest run", _test_command),
    Job("export", "export (2-bit ConvNet to ONNX)", _export_command, prepare=_save_convnet),
)}


def _label(name: str, tiny: set[str]) -> str:
    return JOBS[name].label + (" (tiny)" if name in tiny else "")


def run(names: list[str], tiny: set[str]) -> list[Phase]:
    """Every phase of the jobs ``names`` (those in ``tiny`` at toy size), each job run once in a
    fresh temporary folder."""
    rows: list[Phase] = []
    for name in names:
        job = JOBS[name]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            job.prepare(folder)
            whole = _timed(_label(name, tiny), job.command(folder, name in tiny))
            rows += [whole, *job.phases(folder, whole)]
    return rows


def markdown(rows: list[Phase], tiny: set[str], commands: dict[str, str], made_by: str) -> str:
    size = ("the jobs marked (tiny) at toy sizes, to check that their phases are reported (their "
            "times are not the real jobs'); the others at their real size" if tiny else
            "every job at its real size")
    lines = ["# The jobs users run: wall-clock and CPU seconds per phase", "",
             environment(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"), "",
             f"Made by `{made_by}`: {size}. "
             "CPU seconds (user + system, the job's worker processes included) are the "
             "load-independent measure; wall seconds grow with the machine's load.", "",
             "| job | phase | wall s | CPU s |", "|---|---|---:|---:|"]
    for r in rows:
        phase = f"· {r.phase}" if r.indent else f"**{r.phase}**" if r.phase == "whole command" \
            else r.phase
        lines.append(f"| {r.job} | {phase} | {r.wall_s:.1f} | {r.cpu_s:.1f} |")
    lines += ["", "Commands (from the repository root; `FOLDER` a fresh temporary folder):", ""]
    lines += [f"- {name}: `{command}`" for name, command in commands.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", nargs="?", const="all", default="",
                        help="toy-size jobs (checks the phases): all, or a comma-separated list")
    parser.add_argument("--jobs", default=",".join(JOBS),
                        help=f"comma-separated, of: {', '.join(JOBS)} (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the Markdown table's file")
    args = parser.parse_args()
    names = [n.strip() for n in args.jobs.split(",")]
    tiny = set(JOBS) if args.tiny == "all" else {n.strip() for n in args.tiny.split(",") if n}
    unknown = sorted((set(names) | tiny) - set(JOBS))
    if unknown:
        parser.error(f"--jobs/--tiny: unknown {unknown}; choose from {list(JOBS)}")
    rows = run(names, tiny)
    folder = Path("FOLDER")
    commands = {_label(n, tiny): " ".join(JOBS[n].command(folder, n in tiny))
                .replace(sys.executable, "python") for n in names}
    made_by = " ".join(["python benchmarks/bench_jobs.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, tiny, commands, made_by), encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
