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
