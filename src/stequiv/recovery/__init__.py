"""QAT recovery from pretrained networks: float, PTQ and QAT per estimator, beside STE twins."""

from ._command import recovery_command as recovery_command
from ._networks import NETWORKS as NETWORKS
from ._networks import Network as Network
from ._networks import layer_configs as layer_configs
from ._protocol import PRESETS as PRESETS
from ._protocol import RecoveryPreset as RecoveryPreset
from ._protocol import recovery_ratio as recovery_ratio
from ._report import read_summary as read_summary
from ._run import run_recovery as run_recovery
