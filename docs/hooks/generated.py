"""MkDocs hook: the reference and results pages generated from the code and the committed files.

A page asks for a generated block with a marker on a line of its own, ``<!-- stequiv:NAME -->``
(optionally ``<!-- stequiv:NAME ARGUMENT -->``). The blocks:

* ``cli``: every command of the click group ``stequiv.cli.main``, walked recursively;
* ``config``: every key of ``stequiv.experiments.ExperimentConfig`` with its type, default and the
  presets that set it;
* ``public-names``: the names ``import stequiv`` offers and the page documenting each;
* ``benchmarks``: the table of the committed ``benchmarks/RESULTS.md`` (without the run's date);
* ``results``: the tables of every committed ``stequiv reproduce`` folder under ``docs/results/``;
* ``bound-check``: the exact check of the theorems, ``docs/results/theory/bound_check.json``;
* ``benchmark-file NAME``: the table a benchmark script wrote to ``benchmarks/results/NAME.md``;
* ``result-file NAME``: a committed result table, ``docs/results/NAME.md`` (the page states the
  command that made it).

An unknown marker is an error, so a misspelt one fails ``mkdocs build``.
"""

from __future__ import annotations

import html
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} · ", re.MULTILINE)
# How busy the machine was when a benchmark ran: the result file keeps it, users' docs do not.
LOAD = re.compile(r"^Load average.*\n?|,? ?· load average [^·\n]*", re.MULTILINE | re.IGNORECASE)
MARKER = re.compile(r"^<!-- stequiv:([a-z-]+)(?: (\S+))? -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every ``<!-- stequiv:NAME -->`` marker by its generated Markdown."""
    return MARKER.sub(lambda m: _block(m.group(1), m.group(2), page), markdown)


def _block(name: str, argument: str | None, page: Any) -> str:
    makers = {"cli": _cli, "config": _config, "public-names": _public_names,
              "benchmarks": _benchmarks, "results": _results, "bound-check": _bound_check,
              "benchmark-file": _benchmark_file, "result-file": _result_file}
    if name not in makers:
        raise ValueError(f"{page.file.src_path}: unknown marker stequiv:{name}; "
                         f"known: {', '.join(sorted(makers))}")
    return makers[name](argument)


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: object) -> str:
    """Inline code safe inside a Markdown table cell (a ``|`` in backticks would end the cell)."""
    return "<code>" + html.escape(str(text)).replace("|", "&#124;") + "</code>"


# ------------------------------------------------------------------------------------ the CLI
def _cli(_: str | None) -> str:
    import click

    from stequiv.cli import main

    parts: list[str] = []

    def walk(command: click.Command, path: list[str]) -> None:
        parts.append(_command_markdown(command, path))
        if isinstance(command, click.Group):
            for name in sorted(command.commands):
                walk(command.commands[name], [*path, name])

    walk(main, ["stequiv"])
    return "\n".join(parts)


def _command_markdown(command: Any, path: list[str]) -> str:
    import click

    ctx = click.Context(command, info_name=" ".join(path))
    level = "#" * min(len(path) + 1, 4)
    lines = [f"{level} `{' '.join(path)}`", "", "```text", command.get_usage(ctx), "```", ""]
    if command.help:
        lines += [_help_text(command.help), ""]
    rows = []
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):
            rows.append((_code(param.human_readable_name), "argument (required)"))
            continue
        record = param.get_help_record(ctx)  # (flags, help with [default: ...] and [required])
        if record is not None:
            rows.append((_code(record[0]), _cell(record[1])))
    if rows:
        lines += ["| option | help |", "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in rows]
        lines.append("")
    return "\n".join(lines)


def _help_text(text: str) -> str:
    """click's help: paragraphs as they are, ``\\b`` blocks (no re-wrapping) as text blocks."""
    return inspect.cleandoc(text).replace("\b\n", "")


# --------------------------------------------------------------------------------- the config
def _config(_: str | None) -> str:
    from stequiv.experiments import PRESETS, ExperimentConfig

    # pydantic dataclasses and BaseModels both keep their FieldInfos here (pydantic >= 2.10).
    fields = ExperimentConfig.__pydantic_fields__
    described = any(info.description for info in fields.values())
    lines = ["| key | type | default | set by presets |" + (" description |" if described else ""),
             "|---|---|---|---|" + ("---|" if described else "")]
    for key, info in fields.items():
        presets = [f"{name}: {_code(_value(values[key]))}" for name, values in PRESETS.items()
                   if key in values]
        default = info.get_default(call_default_factory=True)
        lines.append(f"| `{key}` | {_code(_type_name(info.annotation))} "
                     f"| {_code(_value(default))} | {'<br>'.join(presets)} |"
                     + (f" {_cell(info.description or '')} |" if described else ""))
    unknown = sorted({k for values in PRESETS.values() for k in values} - set(fields))
    if unknown:
        raise ValueError(f"presets set keys that ExperimentConfig does not have: {unknown}")
    return "\n".join(lines) + "\n"


def _value(value: object) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value) if not isinstance(value, str) else value


def _type_name(annotation: Any) -> str:
    """A readable type: constraints (``Annotated``) dropped, unions as ``a | b``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


# ----------------------------------------------------------------------------- public names
def _public_names(_: str | None) -> str:
    import stequiv
    import stequiv.core
    import stequiv.export
    import stequiv.qat

    homes = (stequiv.core, stequiv.qat, stequiv.export)
    lines = ["| name | what it is | documented in |", "|---|---|---|"]
    for name in stequiv.__all__:
        home = next((m for m in homes if name in m.__dict__), None)
        if home is None:
            raise ValueError(f"stequiv.{name} is in none of {[m.__name__ for m in homes]}")
        doc = (getattr(home, name).__doc__ or "").strip().split("\n")[0]
        lines.append(f"| [`{name}`][{home.__name__}.{name}] | {_cell(doc)} | `{home.__name__}` |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- results
def _for_users(text: str) -> str:
    """A result file's text as the docs show it: the machine, versions and threads stay; the date
    of the run and the machine's load average do not."""
    return LOAD.sub("", RUN_DATE.sub("", text)).strip() + "\n"


def _benchmarks(_: str | None) -> str:
    """``benchmarks/RESULTS.md`` without its title: the context line, then the table."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    body = [line for line in text.splitlines() if not line.startswith("# ")]
    return _for_users("\n".join(body))


def _benchmark_file(name: str | None) -> str:
    """A table that one benchmark script wrote to ``benchmarks/results/NAME.md``, without its
    title (its context line names the commit, machine, versions and threads)."""
    if not name:
        raise ValueError("stequiv:benchmark-file needs the result file's name, e.g. peers")
    text = (ROOT / "benchmarks" / "results" / f"{name}.md").read_text(encoding="utf-8")
    body = [line for line in text.splitlines() if not line.startswith("# ")]
    return _for_users("\n".join(body))


def _result_file(name: str | None) -> str:
    """A committed result table, ``docs/results/NAME.md``, without a title line."""
    if not name:
        raise ValueError("stequiv:result-file needs the result file's name, e.g. study-optimizers")
    text = (ROOT / "docs" / "results" / f"{name}.md").read_text(encoding="utf-8")
    return _for_users("\n".join(line for line in text.splitlines() if not line.startswith("# ")))


def _results(_: str | None) -> str:
    return results_markdown(ROOT / "docs" / "results")


def results_markdown(results: Path) -> str:
    """Every ``stequiv reproduce`` folder under ``results``: its ``source.json`` (command, version,
    machine) and the run's own ``tables/*.md``, as the run wrote them."""
    folders = sorted(p.parent for p in results.glob("*/tables"))
    if not folders:
        return ("No reproduction folder is committed in this version of the documentation; "
                "`make reproduce` writes the tables into `results/quick/tables/`.\n")
    lines: list[str] = []
    for folder in folders:
        lines += [f"### `{folder.name}`", "", _source_line(folder), ""]
        lines += [table.read_text(encoding="utf-8").strip() + "\n"
                  for table in sorted((folder / "tables").glob("*.md"))]
    return "\n".join(lines)


def _source_line(folder: Path) -> str:
    """Which command, version and machine made the files of ``folder`` (its ``source.json``)."""
    source = json.loads((folder / "source.json").read_text(encoding="utf-8"))
    missing = sorted({"command", "version", "machine"} - set(source))
    if missing:
        raise ValueError(f"{folder / 'source.json'} lacks {missing}: say what made these files")
    where = folder.relative_to(ROOT).as_posix() if folder.is_relative_to(ROOT) else folder.name
    return (f"Made by `{source['command']}` with stequiv {source['version']} on "
            f"{source['machine']}; files: `{where}/`.")


def _bound_check(_: str | None) -> str:
    """Totals, one row per estimator × bound, and the DSQ constant of Appendix H."""
    folder = ROOT / "docs" / "results" / "theory"
    data = json.loads((folder / "bound_check.json").read_text(encoding="utf-8"))
    lines = [_source_line(folder), "",
             f"**{data['checks']:,} checks, {data['violations']} violations**; smallest "
             f"bound / actual growth where E grew: {data['tightness_min']:.3f} "
             f"({len(data['estimators'])} estimators, {data['steps']} steps, "
             f"η ∈ {{{', '.join(f'{e:g}' for e in data['etas'])}}}, tolerance {data['tolerance']:g}).",
             "", "| estimator | optimizer | bound | weights | α | coefficient | checks | violations "
             "| bound / actual, min | median |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        lines.append(f"| `{r['estimator']}` | {r['optimizer']} | {r['bound']} | {r['dim']} "
                     f"| {r['alpha']:.4g} | {r['coefficient']:.4g} | {r['checks']:,} "
                     f"| {r['violations']} | {r['tightness_min']:.3g} | {r['tightness_median']:.3g} |")
    lines += ["", "Appendix H's printed DSQ constant against the exact one (Eq. 6, Δ = 1):", "",
              "| estimator | L′L₊/L₋², printed | exact | violations with printed | with exact |",
              "|---|---:|---:|---:|---:|"]
    for d in data["dsq_appendix_h"]:
        p, e = d["with_printed_constant"], d["with_exact_constant"]
        lines.append(f"| `{d['estimator']}` | {d['printed_LpLplus_over_Lminus2']:.4g} "
                     f"| {d['exact_LpLplus_over_Lminus2']:.4g} | {p['violations']} of {p['checks']:,} "
                     f"| {e['violations']} of {e['checks']:,} |")
    return "\n".join(lines) + "\n"
