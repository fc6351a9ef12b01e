"""Deployment: integer models to files that inference engines load (safetensors, ONNX, GGUF, ...).

Every format holds the trained integer codes and Δ exactly; a grid that a format cannot hold is
refused with the format's limit and the :class:`~stequiv.qat.QuantConfig` that would fit.
"""

from ._command import export_command as export_command
from ._registry import ExportResult as ExportResult
from ._registry import Format as Format
from ._registry import export as export
from ._registry import export_formats as export_formats
from ._registry import register_format as register_format
from ._safetensors import load_integer as load_integer
from ._torchao import to_torchao_ as to_torchao_

__all__ = ["ExportResult", "Format", "export", "export_command", "export_formats", "load_integer",
           "register_format", "to_torchao_"]
