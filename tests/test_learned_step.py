"""Learned Δ (LSQ): a twin that learns its own Δ drifts at first order; one tied to the Q̂-net's Δ
(and remapped after each Δ step) tracks to second order."""

import importlib.util
import sys
from pathlib import Path

_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "learned_step.py"
_spec = importlib.util.spec_from_file_location("learned_step_example", _EXAMPLE)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module  # dataclasses look their module up there
_spec.loader.exec_module(_module)
learned_step_pair = _module.learned_step_pair  # examples/learned_step.py, run as users run it


def test_free_twin_breaks_at_first_order_and_tied_twin_holds_to_second():
    big = {r.twin: r for r in learned_step_pair(1e-2, steps=10)}
    small = {r.twin: r for r in learned_step_pair(1e-3, steps=10)}
    assert big["tied"].delta_gap == 0 and big["free"].delta_gap > 0
    assert big["tied"].ebar / small["tied"].ebar > 40  # second order
    assert big["free"].ebar / small["free"].ebar < 20  # first order
    assert small["free"].ebar > 100 * small["tied"].ebar
    assert small["tied"].agreement == 1.0


def test_adam_per_channel_tied_twin_holds_to_second_order_and_free_twin_parts():
    big = {r.twin: r for r in learned_step_pair(1e-3, steps=10, optimizer="adam", per_channel=True)}
    small = {r.twin: r for r in learned_step_pair(1e-4, steps=10, optimizer="adam", per_channel=True)}
    assert big["tied"].ebar / small["tied"].ebar > 40
    assert small["tied"].loss_gap == 0.0 and small["tied"].agreement == 1.0
    assert small["free"].delta_gap > 0 and small["free"].ebar > small["tied"].ebar
