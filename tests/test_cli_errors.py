"""User mistakes at the real command line (a `python -m stequiv` process): one message, exit
status non-zero, no traceback, and no results folder claimed. (Every other mistake runs through
click in tests/test_bad_inputs.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def stequiv(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "stequiv", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize(("args", "status", "message"), [
    (["alpha", "htge", "--bits", "0"], 2, "Invalid value for '--bits': 0 is not in the range"),
    (["reproduce", "--out", "{tmp}/o", "--set", "bits=65", "--set", "epochs=0.37"], 1,
     "2 config errors:\n  `bits` must be <= 16, got 65 (from --set bits=65)\n  `epochs` must be "
     "an integer, got 0.37 (from --set epochs=0.37)\n"),
])
def test_a_mistake_is_one_message_and_a_failing_status(tmp_path, args, status, message):
    done = stequiv(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == status
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "" and not (tmp_path / "o").exists()


def test_a_corrected_rerun_is_not_refused(tmp_path, monkeypatch):
    """An invalid config claims nothing, so the fixed command runs in the same folder."""
    from click.testing import CliRunner

    from stequiv import experiments
    from stequiv.cli import main

    seen = []
    monkeypatch.setattr(experiments, "reproduce", lambda config, *a, **k: seen.append(config) or {})
    out = ["--out", str(tmp_path / "o"), "--quick"]
    bad = CliRunner().invoke(main, ["reproduce", *out, "--set", "betas=0.9"])
    assert bad.exit_code == 1 and "`betas` must be a list, got 0.9" in bad.output
    assert not (tmp_path / "o").exists()
    good = CliRunner().invoke(main, ["reproduce", *out, "--set", "betas=[0.9, 0.99]"])
    assert good.exit_code == 0, good.output
    assert seen[0].betas == (0.9, 0.99)
