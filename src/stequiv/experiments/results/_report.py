"""Turn a results folder into what a reader sees: ``summary.json``, Tables 3–5, figures, ``report.md``.

Everything here reads the files the training engine saved (``DIR/config.json`` and
``DIR/runs/<run_id>/{final.json,metrics.csv,weights.npz}``), never live models, so a report can be
rebuilt at any time (the files are read and written through :mod:`._runs`, so an interrupted
rebuild never leaves a half-written file behind).

Net ``a`` is always the Q̂-net, net ``b`` its partner (see :data:`~stequiv.experiments.config.PROTOCOL`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from ._manifest import finite_json
from ._runs import atomic_write, load_runs, read_config, write_json
from ._summary import point_checks, runs_slope_spread, summary
from ._tables import FORMATS, Table, build_tables

__all__ = ["Report", "rebuild", "write_report"]


class Report(NamedTuple):
    """What a rebuild wrote: ``report.md`` and the summary saved as ``summary.json`` (as JSON has
    it: a non-finite number is ``None``)."""

    path: Path
    summary: dict[str, dict[str, dict[str, Any]]]


def write_report(result_dir: str | Path) -> Path:
    """Rebuild ``summary.json``, ``tables/``, ``figures/`` and ``report.md`` from the saved files.

    Returns the path of ``report.md``. Every file is replaced atomically, so rebuilding is safe.
    """
    return rebuild(result_dir).path


def rebuild(result_dir: str | Path) -> Report:
    """:func:`write_report`, also returning the summary (so a caller need not read it back)."""
    from ._figures import NOT_DRAWN, render_figures  # matplotlib only when a report is drawn

    root = Path(result_dir)
    runs, config = load_runs(root), read_config(root)
    summ = summary(runs)
    write_json(root / "summary.json", summ, newline=True)
    tables = build_tables(runs)
    for table in tables:
        atomic_write(root / "tables" / f"{table.name}.md", f"# {table.title}\n\n{table.markdown()}")
        atomic_write(root / "tables" / f"{table.name}.csv", table.csv())
    figures = render_figures(runs, config)
    for fig in figures:
        atomic_write(root / "figures" / fig.name, fig.png)
    drawn = {fig.name for fig in figures}
    not_drawn = [why for name, why in NOT_DRAWN.items() if name not in drawn]
    for name in NOT_DRAWN.keys() - drawn:
        (root / "figures" / name).unlink(missing_ok=True)  # an older rebuild's, now stale
    images = [(fig.caption, f"figures/{fig.name}") for fig in figures]
    if (root / "figures" / "figure1_estimators.png").exists():
        images.insert(0, ("Figure 1: the estimators' surrogates Q̂ and gradients Q̂′", "figures/figure1_estimators.png"))
    text = _report_markdown(root, config, runs, summ, tables, images, not_drawn)
    return Report(atomic_write(root / "report.md", text), finite_json(summ))


def _report_markdown(root: Path, config: dict[str, Any], runs: list[dict[str, Any]],
                     summ: dict[str, Any], tables: list[Table], images: list[tuple[str, str]],
                     not_drawn: list[str]) -> str:
    """``report.md``: config, Points A and B, every table, the figures and the runs' notes."""
    parts = [f"# stequiv reproduction report: `{root.name}`\n",
             f"{len(runs)} pair runs. Paper numbers are the MNIST model's (ImageNet in Table 4 for "
             "scale); Ē and agreement compare net a (the Q̂-net) with net b (its partner).\n",
             "## Configuration\n", _config_markdown(config),
             "## Points A and B (SGD)\n", _points_markdown(summ, runs_slope_spread(runs))]
    for table in tables:
        parts += [f"## {table.title}\n", table.markdown(), f"CSV: [`tables/{table.name}.csv`](tables/{table.name}.csv)\n"]
    parts += ["## Figures\n", *(f"![{caption}]({path})\n\n*{caption}*\n" for caption, path in images)]
    parts += [f"Not drawn: {why}.\n" for why in not_drawn]
    notes = [f"- `{r['run_id']}`: {r['note']}" for r in runs if r.get("note")]
    parts += ["## Notes\n", "\n".join(notes) + "\n" if notes else "No run left a note.\n"]
    return "\n".join(parts)


def _config_markdown(config: dict[str, Any]) -> str:
    if not config:
        return "No `config.json` in the results folder.\n"
    rows = [f"| `{k}` | {FORMATS['text'](v if isinstance(v, str) else json.dumps(v))} |" for k, v in config.items()]
    return "\n".join(["| Key | Value |", "|---|---|", *rows]) + "\n"


_POINT_TEXT = {"A": "Q̂-net and STE-net train almost exactly the same way",
               "B": "without the re-initialization by M they do not"}


def _points_markdown(summ: dict[str, Any], slope_spread: float | None) -> str:
    lines = []
    for c in point_checks(summ, slope_spread):
        ours = "not run" if c.ours is None else f"{c.ours:.2f}"
        paper = "—" if c.paper is None else f"{c.paper:.2f}"
        lines.append(f"- **Point {c.point}** ({_POINT_TEXT[c.point]}): {c.ratio} = {ours} "
                     f"(paper: {paper}; holds if {c.rule}): **{c.verdict}**")
    return "\n".join(lines) + "\n"
