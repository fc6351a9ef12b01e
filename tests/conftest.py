"""Test-wide settings: one torch thread per pytest worker (`make test` runs two workers on two cores;
more threads than cores makes them stall each other)."""

import pytest
import torch

from stequiv.experiments._pair import _Group

torch.set_num_threads(1)


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(step, run, *args, **kwargs)``: call ``run`` with paired training made to stop
    on reaching ``step`` (KeyboardInterrupt, as a Ctrl-C would), asserting that it stopped;
    training is normal again afterwards."""
    original = _Group.train_step

    def interrupt(step: int, run, *args, **kwargs) -> None:
        def crash(self, batch):
            if self.step == step:
                raise KeyboardInterrupt
            original(self, batch)

        monkeypatch.setattr(_Group, "train_step", crash)
        try:
            with pytest.raises(KeyboardInterrupt):
                run(*args, **kwargs)
        finally:
            monkeypatch.setattr(_Group, "train_step", original)

    return interrupt
