"""Hugging Face methods that cannot work on a fake-quantized model, shadowed while it is quantized.

``save_pretrained`` would write the latent weights under ``…parametrizations.weight.original``;
``tie_weights`` looks the embedding up as a plain parameter (a parametrized weight is a property)
and fails with an unrelated AttributeError; ``resize_token_embeddings`` would give the embedding a
shape that its per-channel Δ does not have. Each is replaced on the instance by a method that does
the right thing or refuses saying what to do; :func:`unguard` (called by ``dequantize_``) removes
them.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.utils import parametrize

__all__ = ["guard", "unguard"]

_GUARDED = ("save_pretrained", "tie_weights", "resize_token_embeddings")


def _refuse_save(*args: Any, **kwargs: Any) -> None:
    raise TypeError(
        "model.save_pretrained of a model fake-quantized by stequiv would write the latent weights "
        "under '...parametrizations.weight.original' (from_pretrained would drop them and "
        "re-initialise); use sq.save_pretrained(model, directory) and "
        "sq.load_pretrained(ModelClass, directory), or sq.export(model, directory, "
        "format='compressed-tensors') for a folder plain transformers loads as the quantized model")


def _refuse_resize(*args: Any, **kwargs: Any) -> None:
    raise TypeError(
        "model.resize_token_embeddings of a model fake-quantized by stequiv would change the "
        "embedding's shape under its quantizer (one Δ per row); resize before quantizing, or "
        "sq.dequantize_(model), resize, then sq.quantize_ again")


def _latent(module: nn.Module | None) -> Any:
    if module is None:
        return None
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original  # type: ignore[union-attr]
    return getattr(module, "weight", None)


def _tie_weights(model: nn.Module) -> Any:
    def tie_weights(*args: Any, **kwargs: Any) -> None:
        """Already tied by ``quantize_`` (one latent weight for both layers): nothing to do."""
        config = getattr(model, "config", None)
        if not getattr(config, "tie_word_embeddings", False):
            return
        inputs = model.get_input_embeddings()  # type: ignore[operator]
        outputs = model.get_output_embeddings()  # type: ignore[operator]
        if outputs is None or _latent(inputs) is _latent(outputs):
            return
        raise TypeError(
            "model.tie_weights on a model fake-quantized by stequiv whose input and output "
            "embeddings hold different latent weights: tie them before quantizing, or "
            "sq.dequantize_(model), model.tie_weights(), then sq.quantize_ again")

    return tie_weights


def guard(model: nn.Module) -> None:
    """Shadow the Hugging Face methods of ``model`` (if it has them) while it is quantized."""
    replacements = {"save_pretrained": _refuse_save, "tie_weights": _tie_weights(model),
                    "resize_token_embeddings": _refuse_resize}
    for name, method in replacements.items():
        if callable(getattr(type(model), name, None)):
            setattr(model, name, method)


def unguard(model: nn.Module) -> None:
    """The model's own methods again (after ``dequantize_``)."""
    for name in _GUARDED:
        model.__dict__.pop(name, None)
