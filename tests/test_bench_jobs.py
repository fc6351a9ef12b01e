"""benchmarks/bench_jobs.py on a tiny job: the table has a row for every phase of the run (the
timings themselves are not checked: they depend on the machine and its load)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ["whole command", "load data", "preflight", "group 1 of 1: set-up",
          "group 1 of 1: train", "group 1 of 1: evaluate", "group 1 of 1: write results",
          "train groups (all, worker processes included)", "figure 1 (estimators)",
          "summary, tables, figures, report", "start-up and the rest"]


def test_the_jobs_benchmark_reports_every_phase_of_a_reproduction(tmp_path):
    out = tmp_path / "jobs.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_jobs.py"), "--tiny",
                    "--jobs", "reproduce", "--out", str(out)], check=True, env=env,
                   capture_output=True)
    text = out.read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| reproduce --quick (tiny)")]
    phases = [cells[1].strip("*· ") for cells in rows]
    assert phases == PHASES
    seconds = [(float(cells[2]), float(cells[3].rstrip(" |"))) for cells in rows]  # wall, CPU
    assert all(wall >= 0 for wall, _ in seconds)
    assert "commit " in text and "torch " in text and "OMP_NUM_THREADS=1" in text
