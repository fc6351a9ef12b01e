"""Test-wide settings: one torch thread per pytest worker (`make test` runs two workers on two cores;
more threads than cores makes them stall each other)."""

import pytest
import torch

from stequiv.experiments.testing import interrupted_pairs

torch.set_num_threads(1)


@pytest.fixture
def interrupt_at():
    """``interrupt_at(step, run, *args, **kwargs)``: call ``run`` with paired training made to stop
    on reaching ``step`` (KeyboardInterrupt, as a Ctrl-C would), asserting that it stopped;
    training is normal again afterwards."""

    def interrupt(step: int, run, *args, **kwargs) -> None:
        with interrupted_pairs(step), pytest.raises(KeyboardInterrupt):
            run(*args, **kwargs)

    return interrupt


@pytest.fixture
def small_bound_check(monkeypatch):
    """``theory.bound_check`` on one estimator and a few steps, in place of a study's full one."""
    from stequiv import theory

    real = theory.bound_check
    monkeypatch.setattr(theory, "bound_check", lambda: real(["mad"], steps=10, etas=(0.1,)))
