"""Checks of a reproduction at set-up, before any folder is claimed or any net trained.

The estimator's formula runs deep inside every backward pass; a formula that cannot be evaluated
in the training dtype, or that ``torch.compile`` cannot trace, would fail there (or graph-break
silently in every quantized layer). Both are tried here on one small tensor instead.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ... import qat
from ...core import Estimator, UniformQuantizer, get_estimator
from ...qat.internal import derivative
from ..config import ConfigError, ExperimentConfig

__all__ = ["TRAIN_DTYPE", "check_compiles", "check_estimator_dtype"]

TRAIN_DTYPE = torch.float32
"""The nets of a reproduction train in float32 (where M is exact to 16 bits)."""
_PROBE_POINTS = 4097


def _estimators(config: ExperimentConfig) -> list[tuple[str, Estimator, int]]:
    """Every estimator the run trains with: (config key, estimator, bits)."""
    found = [("estimator", get_estimator(config.estimator_spec()), config.bits)]
    if config.activation_bits is not None:
        found.append(("activation_estimator", get_estimator(config.activation_estimator),
                      config.activation_bits))
        if "activation-swap" in config.experiments:
            found.append(("activation_swap_to", get_estimator(config.activation_swap_to),
                          config.activation_bits))
    return found


def check_estimator_dtype(config: ExperimentConfig, device: torch.device) -> None:
    """Refuse an estimator (of the weights, or of the activations) whose Q̂′ fails, or is not
    finite where float64 is, in float32 on ``device`` (:data:`TRAIN_DTYPE`), on points covering
    its grid and two bins beyond: every backward pass would stop there."""
    for key, est, bits in _estimators(config):
        q = UniformQuantizer.symmetric(bits, 1.0)
        lo, hi = (-2.0, 2.0) if est.units == "weight" else (q.lower - 2.0, q.upper + 2.0)
        points = np.linspace(lo, hi, _PROBE_POINTS)
        args = (float(q.lower), float(q.upper), float(q.offset))
        exact = derivative(est, torch.from_numpy(points), *args).double().cpu().numpy()
        name = f"`{key}` {est.describe()}"
        try:
            got = derivative(est, torch.from_numpy(points).to(device, TRAIN_DTYPE), *args)
            got = got.double().cpu().numpy()
        except Exception as err:  # any failure of a user formula: report it, with the fix
            raise ConfigError([(key, f"{name} cannot be evaluated in float32 on {device} (the "
                                f"nets train in float32): {type(err).__name__}: {err}; write its "
                                "derivative so that it accepts float32 tensors, or choose another "
                                "estimator")]) from None
        bad = np.isfinite(exact) & ~np.isfinite(got)
        if bad.any():
            raise ConfigError([(key, f"{name} cannot be evaluated in float32 (the nets train in "
                                f"float32): Q̂′({points[bad][0]:.4g}) is {got[bad][0]} in float32 "
                                f"but {exact[bad][0]:.6g} in float64; rewrite its derivative so "
                                "that no intermediate overflows float32 (e.g. a ratio of "
                                "exponentials as one exponential), or choose another estimator")])


def check_compiles(config: ExperimentConfig) -> None:
    """With ``compile`` true: refuse an estimator whose backward ``torch.compile`` cannot trace in
    one graph (a NumPy or SciPy function dynamo does not cover), found by compiling the forward
    and backward of one quantized linear layer with ``fullgraph=True`` and the ``aot_eager``
    backend (traced, no code generated: a fraction of a second)."""
    if not config.compile:
        return
    est = get_estimator(config.estimator_spec())
    layer = torch.nn.Linear(8, 4)
    scale = 1.0 if est.kind == "binary" else "absmax"
    qat.quantize_(layer, qat.QuantConfig(estimator=est, bits=config.bits, scale=scale), log=False)
    x = torch.linspace(-1.0, 1.0, 16).reshape(2, 8)
    failure = ""
    try:
        with warnings.catch_warnings():  # torch's own notices while tracing
            warnings.simplefilter("ignore")
            step = torch.compile(lambda inp: layer(inp).sum(), fullgraph=True, backend="aot_eager")
            step(x).backward()
    except Exception as err:  # dynamo's refusal to trace: report its reason, with the fix
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith("Explanation:")), lines[0] if lines else "")
        failure = f"{type(err).__name__}: {why}"
    finally:
        torch._dynamo.reset()
    if failure:
        raise ConfigError([("compile", f"`compile` true, but torch.compile cannot trace "
                            f"`estimator` {est.describe()} in one graph ({failure}); write its "
                            "derivative with array-API or torch functions, or set `compile` "
                            "false")])
