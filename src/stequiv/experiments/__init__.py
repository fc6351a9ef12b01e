"""Experiments: the paired training of Section 6, the reproduction of Tables 3–5 and Figures 1/3.

Five packages, each with one job, read in this order (no package imports a later one):

* :mod:`~stequiv.experiments.config` — the typed config, presets, the one resolver, the protocol;
* :mod:`~stequiv.experiments.parallel` — torchrun, FSDP2 and synchronised BatchNorm;
* :mod:`~stequiv.experiments.results` — run folders, summary, tables, figures, report;
* :mod:`~stequiv.experiments.engine` — the pair engine and its registry of partners;
* :mod:`~stequiv.experiments.study` — ``stequiv study``'s grid of cells;

and on top :func:`reproduce` (every pair of a config, then the report), :func:`reproduce_bits`
(one reproduction per bit width) and :func:`plan` (what a reproduction will train, and how long). The names below are the everyday ones; each package's own face
has the rest.
"""

from ._plan import RunPlan as RunPlan
from ._plan import plan as plan
from ._reproduce import group_specs as group_specs
from ._reproduce import load_data as load_data
from ._reproduce import reproduce as reproduce
from ._sweep import reproduce_bits as reproduce_bits
from .config import EXPERIMENTS as EXPERIMENTS
from .config import PRESET_BITS as PRESET_BITS
from .config import PRESETS as PRESETS
from .config import PROTOCOL as PROTOCOL
from .config import ConfigError as ConfigError
from .config import ExperimentConfig as ExperimentConfig
from .config import PairSpec as PairSpec
from .config import pair_specs as pair_specs
from .engine import TrainData as TrainData
from .engine import run_group as run_group
from .engine import run_pair as run_pair
from .parallel import Dist as Dist
from .parallel import end_worker_process as end_worker_process
from .parallel import setup_distributed as setup_distributed
from .study import StudyConfig as StudyConfig
from .study import report_study as report_study
from .study import run_study as run_study
