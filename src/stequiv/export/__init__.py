"""Deployment: integer models to files that inference engines load (safetensors, ONNX, GGUF, ...).

Every format holds the trained integer codes and Δ exactly; a grid that a format cannot hold is
refused with the format's limit and the :class:`~stequiv.qat.QuantConfig` that would fit.
"""

from ._command import export_command as export_command
from ._compressed import write_compressed_tensors
from ._gguf import write_gguf
from ._onnx import write_onnx
from ._registry import ExportResult as ExportResult
from ._registry import Format as Format
from ._registry import export as export
from ._registry import export_formats as export_formats
from ._registry import register_format
from ._safetensors import load_integer as load_integer
from ._safetensors import save_integer

register_format(Format("safetensors", lambda model, path, example: save_integer(model, path),
                       "stequiv's integer model: packed codes and Δ (load with load_integer)"))
register_format(Format("onnx", write_onnx,
                       "ONNX QDQ: int4/int8 initializers read by DequantizeLinear (needs example)"))

__all__ = ["ExportResult", "Format", "export", "export_command", "export_formats", "load_integer"]
register_format(Format("gguf", write_gguf,
                       "GGUF: Q4_0/Q8_0 blocks (train with QuantConfig.for_format('gguf-q4_0'))"))
register_format(Format("compressed-tensors", write_compressed_tensors,
                       "Hugging Face folder, pack-quantized Linear weights (from_pretrained loads it)"))
