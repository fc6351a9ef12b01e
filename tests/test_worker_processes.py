"""Worker processes die with the process that started them (Linux): a killed ``reproduce`` or
``study`` leaves no orphan training on, nor writing into a run folder beside a resumed run."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")

SRC = str(Path(__file__).resolve().parents[1] / "src")

POOLS = {
    "reproduce": "from stequiv.experiments._groups import group_pool\npool = group_pool(1)",
    "study": ("from stequiv.experiments.study import StudyConfig, STUDY_PRESETS\n"
              "from stequiv.experiments.study._study import worker_pool\n"
              "pool = worker_pool(StudyConfig.from_dict(STUDY_PRESETS['quick']), 1)"),
    "plain": ("import multiprocessing\nfrom concurrent.futures import ProcessPoolExecutor\n"
              "pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'))"),
}

PARENT = """
import os, sys, time
{pool}
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 120)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie left for init to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _worker_after_parent_killed(pool: str) -> tuple[int, bool]:
    """Start a parent holding a one-worker pool busy for 2 minutes, SIGKILL the parent, and say
    whether its worker is still alive 5 s later."""
    code = textwrap.dedent(PARENT).format(pool=pool)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          stderr=subprocess.DEVNULL, env=env) as parent:
        worker = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker, _alive(worker)


@pytest.mark.parametrize("pool", ["reproduce", "study"])
def test_a_worker_dies_with_its_killed_parent(pool):
    _, alive = _worker_after_parent_killed(POOLS[pool])
    assert not alive


def test_without_it_a_plain_pool_s_worker_outlives_its_killed_parent():
    """The control: what the two pools above would do without die_with_parent."""
    worker, alive = _worker_after_parent_killed(POOLS["plain"])
    try:
        assert alive
    finally:
        if alive:
            os.kill(worker, signal.SIGKILL)
