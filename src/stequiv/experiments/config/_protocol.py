"""The experiment protocol of Section 6 as one table: what each experiment pairs the Q̂-net with.

Every experiment trains the Q̂-net and one *partner* beside it on the same batches, and measures
how far apart their weights drift (Ē, agreement). A row of :data:`PROTOCOL` says what the partner
is; the engine (its partner registry, :data:`~stequiv.experiments.engine.PARTNER_KINDS`), the
config (``experiments``), the report, the figures and the command line read it from here. A new
experiment is a new row.

==============  =========  =======  ========  ============  ======================================
experiment      partner    M on w   lr × α    under Adam    partner set-up
==============  =========  =======  ========  ============  ======================================
``baseline``    STE twin   yes      yes       trained       the paper's twin (Tables 1/2)
``lr-tweak``    Q̂-net      —        —         trained       the Q̂-net itself, lr × ``lr_tweak``
``unadjusted``  STE twin   no       no        = baseline    neither adjustment (Point B)
``m-only``      STE twin   yes      no        skipped       ablation: M only
``alpha-only``  STE twin   no       yes       skipped       ablation: α only
``lr-sweep``    both       yes      yes       skipped       baseline and lr-tweak at lr × f
``activation-   Q̂-net      —        —         trained       the Q̂-net with another *activation*
swap``                                                      estimator (Section 8: no twin exists)
==============  =========  =======  ========  ============  ======================================

"M on w" and "lr × α" apply to SGD only: under Adam the STE twin needs neither (Table 2), so Adam's
``unadjusted`` *is* its baseline (its numbers are copied, not retrained) and the ablations, which
drop one of the two, have nothing to drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ACTIVATION_SWAP", "ADAM_IS_BASELINE", "DEFAULT_EXPERIMENTS", "EXPERIMENTS", "LR_TWEAK",
           "OPTIMIZERS", "PARTNERS", "PROTOCOL", "STE", "Experiment"]

OPTIMIZERS = ("sgd", "adam")
STE, LR_TWEAK, ACTIVATION_SWAP = "ste", "lr-tweak", "activation-swap"
PARTNERS = (STE, LR_TWEAK, ACTIVATION_SWAP)
AdamRule = Literal["trained", "baseline", "skipped"]


@dataclass(frozen=True)
class Experiment:
    """One row of the protocol (see the module docstring for the table)."""

    name: str
    partner: str  # STE: the Q̂-net's STE twin (qat.to_ste); LR_TWEAK: the Q̂-net, lr × lr_tweak
    remap: bool  # (SGD) the partner's weights start at M(w): Eq. 5, so that E(0) = 0
    scale_lr: bool  # (SGD) the partner's learning rate is the Q̂-net's × α
    adam: AdamRule  # trained; "baseline": Adam's run is the baseline's; skipped
    setup: str  # the partner's set-up for tables; ``{lr_tweak}`` is the configured factor
    color: str  # its line in the figures (also their drawing order)
    in_summary: bool = False  # a row of summary.json and of Table 4
    selectable: bool = True  # named in the config's ``experiments`` (lr-sweep: by ``lr_sweep``)
    default: bool = True  # in the config's default ``experiments``

    def describe(self, lr_tweak: float) -> str:
        """The partner's set-up with the configured factor, e.g. ``lr × 1.01``."""
        return self.setup.format(lr_tweak=f"{lr_tweak:g}")


PROTOCOL: dict[str, Experiment] = {e.name: e for e in (
    Experiment("baseline", STE, remap=True, scale_lr=True, adam="trained", in_summary=True,
               setup="the paper's twin (for SGD: weights through M, lr × α)", color="C0"),
    Experiment("lr-tweak", LR_TWEAK, remap=False, scale_lr=False, adam="trained", in_summary=True,
               setup="Q̂ with lr × {lr_tweak}", color="C1"),
    Experiment("unadjusted", STE, remap=False, scale_lr=False, adam="baseline", in_summary=True,
               setup="neither adjustment", color="C3"),
    Experiment("m-only", STE, remap=True, scale_lr=False, adam="skipped",
               setup="weights through M, lr not adjusted", color="C2"),
    Experiment("alpha-only", STE, remap=False, scale_lr=True, adam="skipped",
               setup="lr × α, weights not re-initialized", color="C4"),
    Experiment("lr-sweep", STE, remap=True, scale_lr=True, adam="skipped", selectable=False,
               setup="the baseline and lr-tweak partners of a Q̂-net with lr × f", color="0.6"),
    Experiment("activation-swap", ACTIVATION_SWAP, remap=False, scale_lr=False, adam="trained",
               in_summary=True, default=False, color="C5",
               setup="Q̂ with another activation estimator (no twin)"),
)}

#: The experiments a config can select (``lr-sweep`` is selected by a non-empty ``lr_sweep``).
EXPERIMENTS = tuple(name for name, e in PROTOCOL.items() if e.selectable)
#: The config's default ``experiments`` (activation-swap needs quantized activations: opt-in).
DEFAULT_EXPERIMENTS = tuple(name for name in EXPERIMENTS if PROTOCOL[name].default)
#: The note a copied Adam run carries (``adam="baseline"``).
ADAM_IS_BASELINE = ("Adam: the STE-net needs neither M nor α (Table 2), so '{name}' is the baseline "
                    "set-up; its numbers are the baseline run's (the paper reports no such row)")
