"""Reading config values from YAML/JSON files and ``KEY=VALUE`` strings, with errors that say where.

YAML is read with YAML 1.2's core schema, which the docs promise: ``1e-3`` is a float, ``010`` is
ten and ``1_0`` is a string, ``yes``/``on`` are strings and only ``true``/``false`` are booleans
(PyYAML's YAML 1.1 rules make ``1e-3`` a string, ``010`` eight, ``1_0`` ten and ``on`` true). A
key given twice in one mapping is an error (YAML and JSON would silently keep the last one), and so
is YAML 1.1's merge key ``<<``, which YAML 1.2 dropped (anchors and aliases of whole values work).
Malformed text is an error naming the file (or the ``--set`` item), the line and the column.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from ._config_types import ConfigError

__all__ = ["parse_assignment", "read_config_file"]

# YAML 1.2 core schema (yaml.org/spec/1.2.2, 10.3.2): the plain scalars that are not strings
_CORE = {
    "tag:yaml.org,2002:null": r"^(?:~|null|Null|NULL|)$",
    "tag:yaml.org,2002:bool": r"^(?:true|True|TRUE|false|False|FALSE)$",
    "tag:yaml.org,2002:int": r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$",
    "tag:yaml.org,2002:float": (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
}
_FIRST = {"tag:yaml.org,2002:null": ["~", "n", "N", ""],
          "tag:yaml.org,2002:bool": list("tTfF"),
          "tag:yaml.org,2002:int": list("-+0123456789"),
          "tag:yaml.org,2002:float": list("-+0123456789.")}


class _Unsupported(yaml.constructor.ConstructorError):
    """Well-formed YAML that stequiv does not read (reported as such, not as malformed)."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading exponent floats as floats and refusing repeated keys and
    YAML 1.1's merge key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                raise _Unsupported(
                    None, None, "the merge key `<<` is YAML 1.1, not YAML 1.2 (which stequiv "
                    "reads); write the merged keys out in this mapping, or give a whole value "
                    "by alias (`key: *anchor`)", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice; give each key once", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:  # type: ignore[override]
        """Decimal (leading zeros allowed), ``0o`` octal or ``0x`` hexadecimal."""
        text = str(self.construct_scalar(node))
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text[2:] if base != 10 else text, base)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:  # type: ignore[override]
        text = str(self.construct_scalar(node)).lower()
        return float(text.replace(".inf", "inf").replace(".nan", "nan"))


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _CORE and not tag.endswith(":timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag, _pattern in _CORE.items():
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _FIRST[_tag])
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


def _at(mark: yaml.Mark | None, lead: str = ",") -> str:
    return f"{lead} line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except _Unsupported as err:
        raise ConfigError([("", f"{where}{_at(err.problem_mark)}: {err.problem}")]) from None
    except yaml.MarkedYAMLError as err:
        raise ConfigError([("", f"{where}{_at(err.problem_mark)}: malformed YAML: {err.problem}"
                                + (f" ({err.context}{_at(err.context_mark, ' at')})"
                                   if err.context else ""))]) from None
    except yaml.YAMLError as err:
        raise ConfigError([("", f"{where}: malformed YAML: {err}")]) from None


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"found the key(s) {repeated} twice; give each key once")
    return dict(pairs)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as err:
        raise ConfigError([("", f"{where}, line {err.lineno}, column {err.colno}: malformed "
                                f"JSON: {err.msg}")]) from None
    except ValueError as err:
        raise ConfigError([("", f"{where}: {err}")]) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of config values in a ``.yaml``/``.yml`` file (else JSON); empty file: ``{}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError([("", f"{path}: not UTF-8 text (byte {err.start}); a config file is "
                                "YAML or JSON text")]) from None
    except OSError as err:
        raise ConfigError([("", f"{path}: cannot be read ({err.strerror})")]) from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    data = _yaml(text, str(path)) if is_yaml else _json(text, str(path))
    if data is None and is_yaml:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"{path}: a config file must hold a mapping of keys to values, "
                                f"got a {type(data).__name__}")])
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError([("", f"{path}: config keys must be names, got {bad}")])
    return data


def parse_assignment(item: str) -> tuple[str, Any]:
    """``'epochs=3'`` -> ``('epochs', 3)``: the value read as YAML (``[sgd]`` is a list)."""
    key, sep, value = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ConfigError([("", f"--set expects KEY=VALUE (e.g. epochs=3), got {item!r}")])
    return key, _yaml(value, f"--set {key}={value}")
