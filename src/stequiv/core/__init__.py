"""stequiv's math core: NumPy/SciPy only, no deep-learning framework.

Quantizers (Eq. 1), the estimator catalogue, and the equivalence math of Eq. 4 (α, M, M⁻¹),
Appendix G (twins of vanishing estimators) and Appendix H (the constants of Theorem 5.1).
"""

from . import estimators as estimators
from ._constants import TheoremConstants as TheoremConstants
from ._constants import constants as constants
from ._estimator import Estimator as Estimator
from ._estimator import custom_estimator as custom_estimator
from ._estimator import get_estimator as get_estimator
from ._estimator import list_estimators as list_estimators
from ._estimator import param as param
from ._estimator import register_estimator as register_estimator
from ._plan import plan_for as plan_for
from ._quantizer import BinaryQuantizer as BinaryQuantizer
from ._quantizer import UniformQuantizer as UniformQuantizer
from ._quantizer import grid_coordinate as grid_coordinate
from ._remap import NoRemapError as NoRemapError
from ._remap import alpha as alpha
from ._remap import remap as remap
from ._remap import remap_derivative as remap_derivative
from ._remap import unremap as unremap
from ._twin import ste_twin as ste_twin

__all__ = [
    "BinaryQuantizer",
    "Estimator",
    "NoRemapError",
    "TheoremConstants",
    "UniformQuantizer",
    "alpha",
    "constants",
    "custom_estimator",
    "estimators",
    "get_estimator",
    "grid_coordinate",
    "list_estimators",
    "param",
    "plan_for",
    "register_estimator",
    "remap",
    "remap_derivative",
    "ste_twin",
    "unremap",
]
