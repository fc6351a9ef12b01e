"""The one config resolver: defaults < preset < file < options < ``--set``.

``reproduce``, ``study`` and every command of the CLI build their config here, so a value means
the same wherever it is given, and a mistake names its key, its value and where it came from
(``(from --set epochs=0.37)``, ``(from cfg.yaml)``, ``(from preset 'quick')``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from ._config_file import parse_assignment, read_config_file
from ._config_types import ConfigError, close_match

__all__ = ["Resolved", "resolve"]

C = TypeVar("C")


@dataclass(frozen=True)
class Resolved(Generic[C]):
    """A built config and, for every key not left at its default, where its value came from."""

    config: C
    origins: Mapping[str, str]
    preset: str | None = None

    def given(self, key: str) -> bool:
        """Whether ``key`` was set by the user (a file, an option or ``--set``), not a preset."""
        return key in self.origins and not self.origins[key].startswith("preset ")


def _layers(presets: Mapping[str, Mapping[str, Any]], preset: str | None, file: Path | None,
            options: Mapping[str, Any], sets: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset is not None:
        if preset not in presets:
            raise ConfigError([("", f"unknown preset {preset!r}{close_match(preset, presets)}; "
                                    f"choose from {sorted(presets)}")])
        layers.append((f"preset {preset!r}", dict(presets[preset])))
    if file is not None:
        layers.append((str(file), read_config_file(file)))
    layers += [(f"--{key.replace('_', '-')}", {key: value})
               for key, value in options.items() if value is not None]
    for item in sets:
        key, value = parse_assignment(item)
        layers.append((f"--set {item}", {key: value}))
    return layers


def resolve(build: Callable[[Mapping[str, Any]], C], presets: Mapping[str, Mapping[str, Any]],
            preset: str | None = None, file: str | Path | None = None,
            options: Mapping[str, Any] | None = None, sets: Sequence[str] = ()) -> Resolved[C]:
    """``build`` (a config class's ``from_dict``) of the merged layers, each later one winning:
    the class defaults, ``presets[preset]``, the YAML/JSON ``file``, ``options`` (command-line
    options; ``None`` means not given) and the ``KEY=VALUE`` items of ``sets``.

    Raises :class:`ConfigError` whose every problem names where its key's value came from.
    """
    layers = _layers(presets, preset, None if file is None else Path(file), options or {}, sets)
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, values in layers:
        merged.update(values)
        origins.update(dict.fromkeys(values, origin))
    try:
        config = build(merged)
    except ConfigError as err:
        raise err.with_origins(origins) from None
    except (ValueError, TypeError) as err:  # a config class that raises plain errors
        raise ConfigError([("", str(err))]) from None
    return Resolved(config, origins, preset)
