"""The experiment configuration: typed values, presets, files, and the protocol they select.

* :class:`ExperimentConfig` — every choice of a reproduction as a validated value (defaults in
  one place: the class fields); :data:`PRESETS` and :data:`PRESET_BITS` are named overrides.
* :func:`resolve` — the one resolver, ``defaults < preset < file < --set``, used by
  ``reproduce``, ``study`` and every command of the CLI; a mistake names its key and source.
* :data:`PROTOCOL` — what each experiment pairs the Q̂-net with; :func:`pair_specs` turns a
  config into its paired runs (:class:`PairSpec`).
* :func:`read_config_file`, :func:`parse_assignment` — YAML/JSON files and ``KEY=VALUE`` items.

This package imports nothing else of :mod:`stequiv.experiments`: every other package reads it.
"""

from ._config import IMAGE_FOLDER as IMAGE_FOLDER
from ._config import MAX_BITS as MAX_BITS
from ._config import PARALLEL as PARALLEL
from ._config import PRESET_BITS as PRESET_BITS
from ._config import PRESETS as PRESETS
from ._config import SCHEDULES as SCHEDULES
from ._config import ExperimentConfig as ExperimentConfig
from ._config import default_of as default_of
from ._config_file import parse_assignment as parse_assignment
from ._config_file import read_config_file as read_config_file
from ._config_types import STRICT as STRICT
from ._config_types import ConfigError as ConfigError
from ._config_types import Fraction as Fraction
from ._config_types import ListOf as ListOf
from ._config_types import NonNegativeInt as NonNegativeInt
from ._config_types import PositiveFloat as PositiveFloat
from ._config_types import PositiveInt as PositiveInt
from ._config_types import checked as checked
from ._config_types import close_match as close_match
from ._config_types import registered as registered
from ._pairs import PairSpec as PairSpec
from ._pairs import pair_specs as pair_specs
from ._protocol import ACTIVATION_SWAP as ACTIVATION_SWAP
from ._protocol import ADAM_IS_BASELINE as ADAM_IS_BASELINE
from ._protocol import DEFAULT_EXPERIMENTS as DEFAULT_EXPERIMENTS
from ._protocol import EXPERIMENTS as EXPERIMENTS
from ._protocol import LR_TWEAK as LR_TWEAK
from ._protocol import OPTIMIZERS as OPTIMIZERS
from ._protocol import PARTNERS as PARTNERS
from ._protocol import PROTOCOL as PROTOCOL
from ._protocol import STE as STE
from ._protocol import Experiment as Experiment
from ._resolve import Resolved as Resolved
from ._resolve import resolve as resolve
