"""PyTorch integration: fake-quantize any model, convert it to its STE twin, measure alignment."""

from ._activations import ActivationConfig as ActivationConfig
from ._activations import ActivationFakeQuant as ActivationFakeQuant
from ._activations import activation_quantizers as activation_quantizers
from ._activations import dequantize_activations_ as dequantize_activations_
from ._activations import quantize_activations_ as quantize_activations_
from ._alignment import Alignment as Alignment
from ._alignment import AlignmentTracker as AlignmentTracker
from ._alignment import alignment as alignment
from ._checkpoint import load as load
from ._checkpoint import load_pretrained as load_pretrained
from ._checkpoint import save as save
from ._checkpoint import save_pretrained as save_pretrained
from ._clip import clip_grad_norm_pair_ as clip_grad_norm_pair_
from ._config import QuantConfig as QuantConfig
from ._convert import IntegerLayer as IntegerLayer
from ._convert import IntegerWeight as IntegerWeight
from ._convert import convert_ as convert_
from ._convert import from_integer as from_integer
from ._convert import integer_layers as integer_layers
from ._fake_quant import WeightFakeQuant as WeightFakeQuant
from ._layout import LayerKind as LayerKind
from ._layout import register_layer_kind as register_layer_kind
from ._layout import registered_kinds as registered_kinds
from ._layout import unregister_layer_kind as unregister_layer_kind
from ._lsq import LearnedStepFakeQuant as LearnedStepFakeQuant
from ._lsq_twin import LearnedStepTwin as LearnedStepTwin
from ._lsq_twin import learned_step_layers as learned_step_layers
from ._optim import optimizer_kind as optimizer_kind
from ._optim import optimizer_rule as optimizer_rule
from ._optim_rules import OptimizerRule as OptimizerRule
from ._pair import Pair as Pair
from ._pair import PairStep as PairStep
from ._quantize import default_filter as default_filter
from ._quantize import dequantize_ as dequantize_
from ._quantize import latent_weight as latent_weight
from ._quantize import quantize_ as quantize_
from ._quantize import quantized_layers as quantized_layers
from ._report import QuantizationReport as QuantizationReport
from ._report import quantization_report as quantization_report
from ._schedule import EstimatorSchedule as EstimatorSchedule
from ._schedule import ScheduledEstimator as ScheduledEstimator
from ._schedule import ScheduledTwin as ScheduledTwin
from ._twin import Conversion as Conversion
from ._twin import from_ste as from_ste
from ._twin import to_ste as to_ste

__all__ = [
    "ActivationConfig",
    "ActivationFakeQuant",
    "Alignment",
    "AlignmentTracker",
    "Conversion",
    "EstimatorSchedule",
    "IntegerLayer",
    "IntegerWeight",
    "LayerKind",
    "LearnedStepFakeQuant",
    "LearnedStepTwin",
    "OptimizerRule",
    "Pair",
    "PairStep",
    "QuantConfig",
    "QuantizationReport",
    "ScheduledEstimator",
    "ScheduledTwin",
    "WeightFakeQuant",
    "activation_quantizers",
    "alignment",
    "clip_grad_norm_pair_",
    "convert_",
    "default_filter",
    "dequantize_",
    "dequantize_activations_",
    "from_integer",
    "from_ste",
    "integer_layers",
    "latent_weight",
    "learned_step_layers",
    "load",
    "load_pretrained",
    "optimizer_kind",
    "optimizer_rule",
    "quantization_report",
    "quantize_",
    "quantize_activations_",
    "quantized_layers",
    "register_layer_kind",
    "registered_kinds",
    "save",
    "save_pretrained",
    "to_ste",
    "unregister_layer_kind",
]
