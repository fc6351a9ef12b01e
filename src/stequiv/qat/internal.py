"""Internal hooks of :mod:`stequiv.qat` for stequiv's own layers (the experiments) and its tests.

These names are not the user-facing API (that is :mod:`stequiv.qat`): they may change between
versions without notice. They live here, in one documented module, so that no other package has
to import one of ``qat``'s private modules.

* Optimizer state: :func:`rebuild` copies an optimizer onto new parameters (each learning rate
  × a factor), :func:`map_state` carries its state over, :func:`rebuild_scheduler` the schedule.
* :data:`DEFAULT_LAYERS`: the module types ``quantize_`` quantizes by default.
* :func:`slope_spread` ρ = max/min Q̂′ over a model's initial weights, and :data:`NEARLY_STE`, the
  ρ at or below which an estimator is the STE for practical purposes (Point B untestable).
* :func:`weight_map` applies a core map (M, its derivative, ...) in a layer's own weight layout.
* :func:`derivative` / :func:`formula_of`: the torch evaluation of an estimator's Q̂′.
* :func:`fast_inverse`: the schedule's inverse of M on a grid (checked against the core's).
* :func:`scale_state_`: a twin optimizer state scaled in place at a schedule change.
"""

from ._autograd import derivative as derivative
from ._autograd import formula_of as formula_of
from ._degenerate import NEARLY_STE as NEARLY_STE
from ._degenerate import slope_spread as slope_spread
from ._maps import weight_map as weight_map
from ._optim import map_state as map_state
from ._optim import rebuild as rebuild
from ._optim import rebuild_scheduler as rebuild_scheduler
from ._optim import scale_state_ as scale_state_
from ._quantize import DEFAULT_LAYERS as DEFAULT_LAYERS
from ._schedule import _fast_inverse as fast_inverse

__all__ = ["DEFAULT_LAYERS", "NEARLY_STE", "derivative", "fast_inverse", "formula_of", "map_state",
           "rebuild", "rebuild_scheduler", "scale_state_", "slope_spread", "weight_map"]
