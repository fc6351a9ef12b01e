"""The ``stequiv`` command group (its commands live one per module and are added by the package)."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stequiv", help="Show the version and exit.")
def main() -> None:
    """stequiv: custom gradient estimators are STEs in disguise (arXiv:2405.05171)."""
    from .._memory import keep_freed_memory

    keep_freed_memory()  # this process is stequiv's own: reuse freed pages (no number changes)
