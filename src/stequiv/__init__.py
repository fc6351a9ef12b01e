"""stequiv: custom gradient estimators are straight-through estimators in disguise.

The math core (:mod:`stequiv.core`: quantizers, estimators, α, M, M⁻¹, Appendix G and H) needs only
NumPy and SciPy and is imported eagerly. The PyTorch layer (:mod:`stequiv.qat`: ``quantize_``,
``to_ste``, ``alignment``, ...) is imported on first use, so ``import stequiv`` stays torch-free
until a torch feature is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

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

__version__ = "0.1.0"

_TORCH_NAMES = {
    "QuantConfig", "quantize_", "dequantize_", "to_ste", "from_ste", "alignment",
    "AlignmentTracker", "quantized_layers", "latent_weight", "optimizer_kind", "Conversion",
    "save", "load", "save_pretrained",
    "ActivationConfig", "quantize_activations_", "dequantize_activations_", "activation_quantizers",
    "EstimatorSchedule", "ScheduledEstimator", "ScheduledTwin", "LearnedStepTwin",
    "Pair", "PairStep",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module("stequiv.qat"), name)
    raise AttributeError(f"module 'stequiv' has no attribute {name!r}")
