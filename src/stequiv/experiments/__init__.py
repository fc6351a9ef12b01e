"""Experiments: the paired training of Section 6, the reproduction of Tables 3–5 and Figures 1/3."""

from ._config import PRESETS as PRESETS
from ._config import ConfigError as ConfigError
from ._config import ExperimentConfig as ExperimentConfig
from ._distributed import Dist as Dist
from ._distributed import setup_distributed as setup_distributed
from ._pair import TrainData as TrainData
from ._pair import run_group as run_group
from ._pair import run_pair as run_pair
from ._protocol import EXPERIMENTS as EXPERIMENTS
from ._protocol import PROTOCOL as PROTOCOL
from ._protocol import PairSpec as PairSpec
from ._protocol import pair_specs as pair_specs
from ._reproduce import group_specs as group_specs
from ._reproduce import load_data as load_data
from ._reproduce import reproduce as reproduce
