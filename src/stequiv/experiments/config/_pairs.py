"""The paired runs of a config: which Q̂-net trains beside which partner (:data:`PROTOCOL`'s rows)."""

from __future__ import annotations

from dataclasses import dataclass

from ._config import ExperimentConfig
from ._protocol import LR_TWEAK, PROTOCOL, STE

__all__ = ["PairSpec", "pair_specs"]


@dataclass(frozen=True)
class PairSpec:
    """One paired run: the Q̂-net (``optimizer``, lr × ``lr_factor``) against ``partner``."""

    run_id: str
    optimizer: str
    experiment: str
    lr_factor: float = 1.0
    partner: str = STE

    @property
    def remap(self) -> bool:
        """Eq. 5's SGD form (through M) where the partner started at M(w), so that E(0) = 0."""
        return self.optimizer == "sgd" and self.partner == STE and PROTOCOL[self.experiment].remap


def pair_specs(config: ExperimentConfig) -> list[PairSpec]:
    """The runs of ``config``: its experiments for each optimizer (Adam's
    copied and skipped ones left out), then the SGD lr sweep against both partners."""
    specs = [PairSpec(f"{opt}-{name}", opt, name, partner=PROTOCOL[name].partner)
             for opt in config.optimizers for name in config.experiments
             if opt == "sgd" or PROTOCOL[name].adam == "trained"]
    if "sgd" in config.optimizers:
        for f in config.lr_sweep:
            specs.append(PairSpec(f"sgd-lr-sweep-x{f:g}", "sgd", "lr-sweep", lr_factor=f))
            specs.append(PairSpec(f"sgd-lr-sweep-tweak-x{f:g}", "sgd", "lr-sweep", lr_factor=f,
                                  partner=LR_TWEAK))
    return specs
