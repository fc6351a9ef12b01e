"""The catalogue of published weight gradient estimators; importing it registers them all.

Every module of this package is imported here (found by :func:`pkgutil.iter_modules`), so adding
an estimator is adding one file with a ``@register_estimator`` class.
"""

import importlib
import pkgutil


def _import_all() -> tuple[str, ...]:
    """Import every module of this package (registration side effects); their names."""
    names = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


MODULES = _import_all()
