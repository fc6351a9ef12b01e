r"""Fake-quantization as one autograd function: forward :math:`Q(w)`, backward :math:`\hat Q'(w)\,g`.

Forward is the core's Eq. 1, :math:`Q(w) = \Delta(\operatorname{round}(\operatorname{clip}(w\Delta^{-1}
- z, l, u)) + z)` (round half to even), by the same operations in the same order, in the weight's
dtype. Backward multiplies the upstream gradient g by the estimator's :math:`\hat Q'` at the
forward's grid coordinate :math:`v = w\Delta^{-1} - z` (or at w, for weight-unit estimators),
through :meth:`~stequiv.core.Estimator.gradient`: the in-range formula on ``[l, u]`` *including its
edges*, the estimator's tail outside. :math:`\hat Q'` depends on w alone, so the forward evaluates
it (on the NumPy path over v's own memory, still in cache) and keeps it for the backward, which is
one multiplication.

**One formula, three ways to evaluate it.** Estimator formulas are written once against the array
API, so the same definition runs on NumPy arrays and on torch tensors:

* ``torch.compile`` (``torch.compiler.is_compiling()``): Q̂′ by torch operations, which inductor
  fuses with the multiply into one kernel (C++/OpenMP on CPU, Triton on CUDA); no graph break;
* eager, CPU, float32/float64 (an activation's backward: without ``create_graph``): NumPy in
  cache-sized chunks, the fastest eager path (vectorised transcendentals; no OpenMP region and no
  fresh 25 M-element temporary per operation, each of which costs a page-faulting allocation or a
  scheduler slice on a busy machine); HTGE and DSQ in one buffer per chunk, by the core's
  operations in the core's order;
* otherwise (accelerators, half precision, an activation's ``create_graph=True``): torch operations.

**User formulas.** :func:`formula_of` calls a user derivative once on a tiny NumPy array and once on
a tiny tensor and records which it accepts: ``"array-api"`` (both), ``"torch"`` (tensors only: never
handed a NumPy array) or ``"numpy"`` (NumPy only: handed ``x.cpu().numpy()``, and under
``torch.compile`` traced by torch's NumPy support, which maps NumPy calls to torch operations; a
NumPy function it does not cover is a graph break there, an error with ``fullgraph=True``).

**Half precision.** float16 and bfloat16 weights: forward in the weight's dtype (as the core's Q on
that dtype), Q̂′ and its product with g evaluated in float32 (as inductor's kernels do, so eager and
compiled agree) and rounded once to the weight's dtype.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from array_api_compat.common import _helpers as _array_api_helpers

from ..core import Estimator
from ..core.estimators._basic import STE
from ..core.estimators._tanh import DSQ, HTGE

__all__ = ["derivative", "fake_quantize", "formula_of", "gradient_times"]

Formula = Literal["array-api", "torch", "numpy"]

_CHUNK = 1 << 18  # elements per NumPy pass of the CPU backward: the temporaries stay in L2
_NUMPY_DTYPES = (torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)
_PROBE = (-3.0, -0.5, 0.0, 0.25, 0.5, 1.75)  # grid coordinates (or weights) to try a formula on
# Q̂′ = A sech²(k(x − ⌊x⌋ − ½)) with a zero tail, (A, k) = sech2_shape. Exact classes: a subclass
# may redefine its derivative, and then takes the core's gradient.
_SECH2_FAMILY = (HTGE, DSQ)



def _prepare_dynamo() -> None:
    """What ``torch.compile`` needs to know of this module, told to dynamo once it is loaded.

    ``formula_of`` is a constant while tracing (dynamo calls it and keeps the answer). Dynamo traces
    array_api_compat's namespace lookup (pure functions of a class) through two lru_cache wrappers
    and warns about each; the cache does not change the result, so tracing the wrapped function is
    exact (torch does the same for einops). Older torch has no such warning.
    """
    torch.compiler.assume_constant_result(formula_of)
    utils = torch._dynamo.utils
    if hasattr(utils, "allow_lru_cache_wrapper_trace_without_warning"):
        for cached in (_array_api_helpers._cls_to_namespace, _array_api_helpers._issubclass_fast):
            utils.allow_lru_cache_wrapper_trace_without_warning(cached)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` right after module ``name`` is first imported, then steps aside.

    torch._dynamo takes about a second to import and is needed only to compile: preparing it at
    import time would make every user of the PyTorch layer pay for it, preparing it on first
    compile would be too late (dynamo traces this module before any of its code runs eagerly).
    """

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader, exec_module = spec.loader, spec.loader.exec_module

        def exec_then_call(module: Any) -> None:
            exec_module(module)
            self.callback()

        loader.exec_module = exec_then_call
        return spec


def _when_imported(name: str, callback: Callable[[], None]) -> None:
    """``callback()`` now if module ``name`` is loaded, else right after its first import."""
    if name in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _accepts(estimator: Estimator, x: Any, kind: type) -> str | None:
    """None if ``estimator.derivative(x)`` returns a ``kind`` shaped like x, else why not."""
    try:
        out = estimator.derivative(x)
    except Exception as err:  # any failure means "does not accept this input"
        return f"{type(err).__name__}: {err}"
    if not isinstance(out, kind) or tuple(out.shape) != tuple(x.shape):
        return f"returned {type(out).__name__} {getattr(out, 'shape', '')}"
    return None


_FORMULAS: dict[Estimator, Formula] = {}


def formula_of(estimator: Estimator) -> Formula:
    """Which inputs ``estimator.derivative`` accepts (see the module docstring); probed once.

    Raises:
        TypeError: it accepts neither NumPy arrays nor torch tensors.
    """
    if estimator not in _FORMULAS:
        _FORMULAS[estimator] = _probe(estimator)
    return _FORMULAS[estimator]


def _probe(estimator: Estimator) -> Formula:
    numpy_fail = _accepts(estimator, np.asarray(_PROBE), np.ndarray)
    # A tensor that requires grad, in grad mode: NumPy ufuncs accept plain CPU tensors (and wrap
    # the result back into one), but not these, nor accelerator tensors, nor traced ones.
    with torch.enable_grad():
        probe = torch.tensor(_PROBE, dtype=torch.float64, requires_grad=True)
        torch_fail = _accepts(estimator, probe, torch.Tensor)
    if numpy_fail is None:
        return "array-api" if torch_fail is None else "numpy"
    if torch_fail is None:
        return "torch"
    raise TypeError(
        f"estimator {estimator.describe()}: `derivative(x)` must accept a NumPy array or a torch "
        f"tensor and return one of the same shape. On a NumPy array: {numpy_fail}. On a tensor: "
        f"{torch_fail}. Write it with array-API functions (xp = array_namespace(x)), torch or NumPy"
    )


def derivative(estimator: Estimator, x: torch.Tensor, lower: float, upper: float,
               offset: float) -> torch.Tensor:
    r""":math:`\hat Q'(x)` as a tensor like ``x`` (float32 for half-precision x), any formula."""
    if x.dtype in _HALF:
        x = x.float()
    if formula_of(estimator) != "numpy":
        return estimator.gradient(x, lower, upper, offset)
    out = estimator.gradient(x.detach().cpu().numpy(), lower, upper, offset)
    return torch.from_numpy(np.asarray(out)).to(x.device, x.dtype)


def _numpy_backward(estimator: Estimator, x: torch.Tensor, grad: torch.Tensor,
                    lower: float, upper: float, offset: float) -> torch.Tensor:
    """``grad · Q̂′(x)`` by NumPy in cache-sized chunks (eager CPU float32/float64)."""
    return _numpy_chunks(estimator, x, grad, torch.empty(x.shape, dtype=x.dtype), lower, upper,
                         offset)


def _numpy_chunks(estimator: Estimator, x: torch.Tensor, grad: torch.Tensor | None,
                  out: torch.Tensor, lower: float, upper: float, offset: float) -> torch.Tensor:
    """``out = Q̂′(x)``, times ``grad`` if given, by NumPy in cache-sized chunks. ``out`` is a
    contiguous tensor shaped like x; it may be x itself (each chunk is read before it is written)."""
    flat_x, flat_out = x.detach().reshape(-1).numpy(), out.view(-1).numpy()
    flat_g = None if grad is None else grad.expand_as(x).reshape(-1).numpy()
    with np.errstate(all="ignore"):  # inf and NaN as torch gives them: silently
        for start in range(0, flat_x.size, _CHUNK):
            part = slice(start, start + _CHUNK)
            scale = _chunk_scale(estimator, flat_x[part], lower, upper, offset)
            if flat_g is None:
                flat_out[part] = scale
            else:
                np.multiply(flat_g[part], scale, out=flat_out[part])
    return out


def _chunk_scale(estimator: Estimator, x: np.ndarray, lower: float, upper: float,
                 offset: float) -> np.ndarray:
    """Q̂′ on one chunk: :func:`_sech2_in_place` for HTGE and DSQ, else the core's
    :meth:`~stequiv.core.Estimator.gradient`."""
    shape = estimator.sech2_shape
    if type(estimator) not in _SECH2_FAMILY or shape is None:
        return estimator.gradient(x, lower, upper, offset)
    return _sech2_in_place(shape, x, lower, upper)


def _sech2_in_place(shape: tuple[float, float], x: np.ndarray, lower: float,
                    upper: float) -> np.ndarray:
    r""":math:`A\,\operatorname{sech}^2(k(x - \lfloor x\rfloor - \tfrac12))` on ``[lower, upper]``,
    0 outside, for ``shape = (A, k)`` (HTGE, DSQ): the core's ``gradient`` by the same operations
    in the same order (``_offset_from_boundary``, ``sech2``, the amplitude, the zero tail), so the
    same numbers, in one buffer instead of a fresh array per operation."""
    amplitude, k = shape
    e = np.floor(x)
    np.subtract(x, e, out=e)
    e -= 0.5
    e *= k
    np.abs(e, out=e)
    e *= -2.0
    np.exp(e, out=e)  # sech²(z) = 4e/(1+e)², e = exp(-2|z|)
    square = e + 1.0
    square *= square
    e *= 4.0
    e /= square
    e *= amplitude
    inside = x >= lower
    inside &= x <= upper
    np.copyto(e, 0.0, where=~inside)
    return e


def _numpy_applies(estimator: Estimator, x: torch.Tensor) -> bool:
    """Whether the NumPy path applies to x: eager, CPU, float32/float64, a NumPy-capable formula."""
    return (not torch.compiler.is_compiling() and x.device.type == "cpu"
            and x.dtype in _NUMPY_DTYPES and formula_of(estimator) != "torch")


def gradient_times(estimator: Estimator, x: torch.Tensor, grad: torch.Tensor, lower: float,
                   upper: float, offset: float) -> torch.Tensor:
    """``grad · Q̂′(x)`` in x's dtype, by the fastest path that applies (module docstring)."""
    if _numpy_applies(estimator, x) and not torch.is_grad_enabled():
        return _numpy_backward(estimator, x, grad, lower, upper, offset)
    scale = derivative(estimator, x, lower, upper, offset)
    return (grad.to(scale.dtype) * scale).to(x.dtype)


def _scale(estimator: Estimator, x: torch.Tensor, lower: float, upper: float, offset: float,
           *, scratch: bool) -> torch.Tensor:
    r""":math:`\hat Q'(x)` for the backward, computed by the forward (x has no autograd history).

    On the NumPy path it is written over x itself when x is ``scratch`` (v, which the forward no
    longer needs; never w) and contiguous: no fresh tensor, and x is still in cache.
    """
    if not _numpy_applies(estimator, x):
        return derivative(estimator, x, lower, upper, offset)
    out = x if scratch and x.is_contiguous() else torch.empty(x.shape, dtype=x.dtype)
    return _numpy_chunks(estimator, x, None, out, lower, upper, offset)


class _FakeQuantize(torch.autograd.Function):
    # Fresh large CPU tensors are slow (every page is faulted in), so the forward allocates only
    # what it keeps: the output, computed in place by the same operations in the same order as the
    # core's Q, and (for the backward; not for the STE, nor without grad) Q̂′, which depends on w
    # alone. Evaluated here, it is written over v on the NumPy path and leaves the backward one
    # multiplication, in the same dtypes as gradient_times (so the same numbers).
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, delta: torch.Tensor, inv_delta: torch.Tensor,
                estimator: Estimator, lower: int, upper: int, offset: float) -> torch.Tensor:
        ctx.estimator = estimator
        v = torch.mul(w, inv_delta.to(w.dtype)).sub_(offset)
        if isinstance(estimator, STE) or not ctx.needs_input_grad[0]:
            out = v.clamp_(lower, upper)
        else:
            out = v.clamp(lower, upper)
            weight_units = estimator.units == "weight"
            ctx.save_for_backward(_scale(estimator, w.detach() if weight_units else v, lower,
                                         upper, offset, scratch=not weight_units))
        return out.round_().add_(offset).mul_(delta.to(w.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if isinstance(ctx.estimator, STE):  # Q̂′ ≡ 1: the upstream gradient passes through
            return grad, None, None, None, None, None, None
        (scale,) = ctx.saved_tensors
        return (grad.to(scale.dtype) * scale).to(grad.dtype), None, None, None, None, None, None


def fake_quantize(w: torch.Tensor, delta: torch.Tensor, inv_delta: torch.Tensor,
                  estimator: Estimator, lower: int, upper: int, offset: float) -> torch.Tensor:
    r""":math:`Q(w)` with the backward :math:`\hat Q'(w)\,g` (see the module docstring).

    Args:
        w: latent weights (any floating dtype, any device).
        delta, inv_delta: Δ and 1/Δ (float64 buffers, broadcastable against ``w``), rounded to
            ``w``'s dtype at use, as the core does.
        estimator: the weight gradient estimator Q̂.
        lower, upper, offset: the quantizer's clip limits l, u and zero-point offset z.
    """
    return _FakeQuantize.apply(w, delta, inv_delta, estimator, lower, upper, offset)


_when_imported("torch._dynamo", _prepare_dynamo)
