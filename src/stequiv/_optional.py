"""Optional dependencies: import one, or say which extra installs it.

The math core needs NumPy and SciPy, the PyTorch layer torch; everything else (experiments, plots,
data sets, Hugging Face, export formats, pretrained networks) is an extra of the ``stequiv``
package. :func:`require` is the one place that turns a missing extra into an error that names the
``pip install`` command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """A feature was used without the optional dependency that it needs."""


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``pip install 'stequiv[extra]'``.

    >>> require("math", "experiments").sqrt(4.0)
    2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        if error.name is not None and error.name.split(".")[0] != top:
            raise  # the module is there but itself failed to import something else
        what = feature or "this feature of stequiv"
        raise MissingExtraError(
            f"{what} needs `{top}`, which is not installed; install it with "
            f"`pip install 'stequiv[{extra}]'`"
        ) from error
