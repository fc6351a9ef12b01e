"""What every command shares: clean errors, output folders, choices read from the registries."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click

__all__ = ["BITS", "OUT_FOLDER", "RegistryChoice", "assignments", "user_errors", "writable_folder"]

BITS = click.IntRange(min=1)  # the core names the largest it can evaluate
OUT_FOLDER = click.Path(file_okay=False, path_type=Path)


class RegistryChoice(click.ParamType):
    """A choice among the names a registry lists, read when first needed (so that a command's
    module imports nothing heavy, and a name registered later is a valid choice)."""

    name = "choice"

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names
        self._choice: click.Choice | None = None

    def _resolved(self) -> click.Choice:
        if self._choice is None:
            self._choice = click.Choice(tuple(self._names()))
        return self._choice

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return self._resolved().get_metavar(param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return self._resolved().convert(value, param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[Any]:
        return self._resolved().shell_complete(ctx, param, incomplete)

    def to_info_dict(self) -> Any:  # click.Choice's: its choices and case sensitivity
        return self._resolved().to_info_dict()


@contextlib.contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """The library's refusals of the user's input as one clean message (exit status 1)."""
    try:
        yield
    except kinds as err:
        if isinstance(err, OSError) and err.filename is not None:
            raise click.ClickException(f"{err.filename}: {err.strerror}") from err
        raise click.ClickException(str(err)) from err


def writable_folder(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """An output folder that exists and is writable, or whose nearest existing parent is."""
    if path is None:
        return None
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise click.BadParameter(f"{str(existing)!r} is a file; name a folder", ctx, param)
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise click.BadParameter(f"cannot write into {str(existing)!r} ({err.strerror}); name a "
                                 "folder you can write to", ctx, param) from None
    return path


def assignments(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> tuple[str, ...]:
    """``--set`` items, each checked to be ``KEY=VALUE`` with a readable value (a usage error)."""
    from ..experiments.config import ConfigError, parse_assignment

    for item in items:
        try:
            parse_assignment(item)
        except ConfigError as err:
            raise click.UsageError(str(err), ctx) from None
    return items
