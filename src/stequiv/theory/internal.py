"""Internal hooks of :mod:`stequiv.theory` for stequiv's own tests.

Not the user-facing API (that is :mod:`stequiv.theory`): these names may change without notice.

* :class:`Tally` — the counts of one bound check (checks, violations, tightness).
* :func:`runs` — the paired runs a bound check simulates for one setting.
"""

from ._bound_check import Tally as Tally
from ._bound_check import _runs as runs

__all__ = ["Tally", "runs"]
