"""The catalogue of published weight gradient estimators; importing it registers them all."""

from . import (  # noqa: F401  (registration side effects)
    _acos,
    _basic,
    _binary,
    _binary_clipped,
    _daq,
    _dorefa,
    _mad,
    _psg,
    _sigmoid,
    _tanh,
)
