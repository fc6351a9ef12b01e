"""The determinism every reproduction and study trains under, at no more cost than it needs."""

from __future__ import annotations

import torch

__all__ = ["deterministic_algorithms"]


def deterministic_algorithms() -> None:
    """torch's deterministic algorithms (a resumed or re-run training repeats the same bits),
    without the NaN fill of every new tensor that comes with them.

    The fill only exposes reads of uninitialized memory, which no number of ours depends on (the
    runs are bit-identical with and without it, tests/test_reproduce_processes.py and
    tests/test_study.py), and costs a pass over every activation: 2–3 % of the study's batched
    ConvNet step, 3–5 % of the CPU seconds of a reproduction's pair-group step.
    """
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
