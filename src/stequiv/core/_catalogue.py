"""The estimator catalogue table of ``docs/estimators.md``, generated from the registry.

Run ``python -m stequiv.core._catalogue docs/estimators.md`` to rewrite the table between the
``<!-- catalogue:begin -->`` and ``<!-- catalogue:end -->`` markers; a test fails when the file
differs from what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._estimator import Estimator, get_estimator, list_estimators
from ._quantizer import BinaryQuantizer, UniformQuantizer
from ._remap import NoRemapError, alpha

__all__ = ["catalogue_table", "update_doc"]

BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"
_HEADER = ("| name | estimator | parameters (defaults) | kind / units | P B L C | tail "
           "| closed forms | α, 2-bit grid | reference |\n|---|---|---|---|---|---|---|---|---|")


def _closed_forms(est: Estimator) -> str:
    forms = [label for label, hook in (("P(d)", est.boundary_primitive),
                                       ("W(w)", est.weight_primitive),
                                       ("tail + inverse", est.tail_primitive_inverse),
                                       ("A sech²(k e)", est.sech2_shape)) if hook is not None]
    return ", ".join(forms) or "none (numeric)"


def _alpha_text(est: Estimator) -> str:
    """α on ``UniformQuantizer.symmetric(2, 1)`` (binary estimators: ``BinaryQuantizer()``)."""
    q = BinaryQuantizer() if est.kind == "binary" else UniformQuantizer.symmetric(2, 1.0)
    try:
        value = float(alpha(est, q))
    except NoRemapError:
        return "no M"
    except ValueError:  # a weight-unit multi-bit estimator that is not cyclical, etc.
        return "n/a"
    return f"{value:.6g}" + (" (binary)" if est.kind == "binary" else "")


def _row(est: Estimator) -> str:
    params = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                       for k, v in est.params.items()) or "—"
    flags = " ".join("✓" if v else "✗" for v in est.properties().values())
    tail = est.tail if est.units == "bin" else "—"
    cells = (f"`{est.name}`", est.title or type(est).__name__, params,
             f"{est.kind} / {est.units}", flags, tail, _closed_forms(est), _alpha_text(est),
             est.reference)
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


_CATALOGUE_PACKAGE = f"{__package__}.estimators."


def catalogue_table() -> str:
    """The markdown table of every catalogue estimator (the modules of ``core/estimators``) at its
    default parameters; estimators a program registers with ``custom_estimator`` are not listed."""
    ests = (get_estimator(n) for n in list_estimators())
    return "\n".join([_HEADER, *(_row(e) for e in ests
                                  if type(e).__module__.startswith(_CATALOGUE_PACKAGE))])


def update_doc(path: Path, *, write: bool = True) -> bool:
    """Put the current table between the markers of ``path``; True if the file was up to date."""
    text = path.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{path} must hold the markers {BEGIN} and {END} once each")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    new = f"{head}{BEGIN}\n{catalogue_table()}\n{END}{tail}"
    if write and new != text:
        path.write_text(new, encoding="utf-8")
    return new == text


if __name__ == "__main__":  # pragma: no cover
    for arg in sys.argv[1:] or ["docs/estimators.md"]:
        print(f"{arg}: {'up to date' if update_doc(Path(arg)) else 'rewritten'}")
