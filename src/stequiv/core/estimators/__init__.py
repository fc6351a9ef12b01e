"""The catalogue of published weight gradient estimators; importing it registers them all."""

from . import _basic, _tanh  # noqa: F401  (registration side effects)
