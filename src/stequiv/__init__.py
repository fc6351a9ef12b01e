"""stequiv: custom gradient estimators are straight-through estimators in disguise.

The math core (:mod:`stequiv.core`: quantizers, estimators, α, M, M⁻¹, Appendix G and H) needs only
NumPy and SciPy and is imported eagerly. The PyTorch layer (:mod:`stequiv.qat`: ``quantize_``,
``to_ste``, ``alignment``, ...) is imported on first use, so ``import stequiv`` stays torch-free
until a torch feature is touched.
"""

from __future__ import annotations

import importlib as _importlib

from .core import BinaryQuantizer as BinaryQuantizer
from .core import Estimator as Estimator
from .core import NoRemapError as NoRemapError
from .core import TheoremConstants as TheoremConstants
from .core import UniformQuantizer as UniformQuantizer
from .core import alpha as alpha
from .core import constants as constants
from .core import custom_estimator as custom_estimator
from .core import get_estimator as get_estimator
from .core import list_estimators as list_estimators
from .core import register_estimator as register_estimator
from .core import remap as remap
from .core import remap_derivative as remap_derivative
from .core import ste_twin as ste_twin
from .core import unremap as unremap

# The one version source: setuptools reads it (pyproject's dynamic version).
__version__ = "0.1.0"

_CORE_NAMES = [
    "BinaryQuantizer", "Estimator", "NoRemapError", "TheoremConstants", "UniformQuantizer",
    "alpha", "constants", "custom_estimator", "get_estimator", "list_estimators",
    "register_estimator", "remap", "remap_derivative", "ste_twin", "unremap",
]
_TORCH_NAMES = [
    "QuantConfig", "quantize_", "dequantize_", "to_ste", "from_ste", "alignment",
    "AlignmentTracker", "quantized_layers", "latent_weight", "optimizer_kind", "Conversion",
    "save", "load", "save_pretrained", "load_pretrained",
    "ActivationConfig", "quantize_activations_", "dequantize_activations_", "activation_quantizers",
    "EstimatorSchedule", "ScheduledEstimator", "ScheduledTwin", "LearnedStepTwin",
    "QuantizationReport", "quantization_report", "LayerKind", "register_layer_kind",
    "unregister_layer_kind", "registered_kinds", "convert_", "from_integer", "integer_layers",
    "optimizer_rule", "OptimizerRule", "clip_grad_norm_pair_",
    "Pair", "PairStep",
]
# deployment (stequiv.export; its formats' packages are the `export` extra, imported on use)
_EXPORT_NAMES = ["export", "export_formats", "load_integer", "to_torchao_"]
__all__ = [*_CORE_NAMES, *_TORCH_NAMES, *_EXPORT_NAMES]


def __getattr__(name: str) -> object:
    """The PyTorch names, imported from :mod:`stequiv.qat` or :mod:`stequiv.export` (and so
    torch) on first use."""
    if name in _TORCH_NAMES:
        return getattr(_importlib.import_module("stequiv.qat"), name)
    if name in _EXPORT_NAMES:
        return getattr(_importlib.import_module("stequiv.export"), name)
    raise AttributeError(f"module 'stequiv' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (lazy ones included), the subpackages loaded so far and ``__version__``."""
    loaded = [k for k, v in globals().items() if not k.startswith("_") and k not in __all__
              and getattr(v, "__name__", "").startswith("stequiv.")]
    return sorted([*__all__, *loaded, "__version__"])
