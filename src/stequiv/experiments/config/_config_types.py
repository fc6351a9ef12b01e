"""Strict field types for typed configs, and pydantic's errors rewritten as sentences a user can act on.

A config class is a frozen pydantic dataclass built with :data:`STRICT` and wrapped by
:func:`checked`: integers must be integers (``0.37``, ``7.5`` and ``3.0`` are refused), booleans
must be booleans (YAML ``false``, not the string ``'false'``), numbers must be finite, lists must
have the declared length, and unknown keys are refused with the closest valid key. Every problem
found is reported at once, one line each, naming the key and the value given.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

__all__ = [
    "STRICT",
    "ConfigError",
    "Fraction",
    "ListOf",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "checked",
    "close_match",
    "registered",
]

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
"""No coercion (``'3'`` is not 3, ``1`` is not ``True``), no NaN or infinity, no unknown keys."""

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
"""A number in [0, 1): momentum, Adam's betas, the warm-up and switch fractions."""

_T = TypeVar("_T")


class ConfigError(ValueError):
    """A config value is invalid. ``problems`` holds ``(key, sentence)`` pairs, one per mistake."""

    def __init__(self, problems: Iterable[tuple[str, str]]):
        self.problems = tuple(problems)
        lines = [sentence for _, sentence in self.problems]
        head = "" if len(lines) == 1 else f"{len(lines)} config errors:\n  "
        super().__init__(head + "\n  ".join(lines))

    def with_origins(self, origins: Mapping[str, str]) -> ConfigError:
        """The same problems, each followed by where its key's value came from."""
        return ConfigError((k, f"{s} (from {origins[k]})" if k in origins else s)
                           for k, s in self.problems)


def close_match(word: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``valid``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def ListOf(item: Any, *, length: int | None = None, min_length: int = 0,
           distinct: bool = True) -> Any:
    """A list (YAML/JSON) or tuple of ``item`` values, held as a tuple: exactly ``length`` of them
    if given, else at least ``min_length``; each value once if ``distinct``."""

    def check(values: tuple[Any, ...]) -> tuple[Any, ...]:
        if length is not None and len(values) != length:
            raise ValueError(f"must hold exactly {length} values, got {len(values)}: {list(values)}")
        if len(values) < min_length:
            raise ValueError(f"must hold at least {min_length} value(s), got {list(values)}")
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if distinct and repeated:
            raise ValueError(f"lists {', '.join(repeated)} more than once; give each value once")
        return values

    return Annotated[tuple[item, ...], Field(strict=False), AfterValidator(check)]


def registered(names: Callable[[], Iterable[str]], verb: str = "unknown") -> Any:
    """A name that ``names()`` lists, read when a config is built (registries can grow)."""

    def check(value: str) -> str:
        valid = list(names())
        if value not in valid:
            raise ValueError(f"{value!r} is {verb}; choose from {valid}{close_match(value, valid)}")
        return value

    return Annotated[str, AfterValidator(check)]


_KINDS = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false (a YAML boolean, not a string or a number)",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "finite_number": "must be finite",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}


def _where(loc: tuple[str | int, ...]) -> str:
    """``('betas', 1)`` -> ``betas[1]``; pydantic's union-member tags are dropped."""
    out = str(loc[0]) if loc else ""
    for part in loc[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("int", "float", "str", "bool", "none"):
            out += f".{part}"
    return out


def _sentence(error: Mapping[str, Any]) -> str:
    """One pydantic error as "`key` must be ..., got value"."""
    kind, ctx, where = error["type"], error.get("ctx") or {}, _where(error["loc"])
    value = error["input"]
    if kind == "value_error":
        text = str(ctx["error"])
        return f"`{where}` {text}" if where else text
    got = f", got {value!r}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        shown = bound if isinstance(bound, int) else f"{bound:g}"
        return f"`{where}` must be {_BOUNDS[kind]} {shown}{got}"
    if kind == "tuple_type" and isinstance(value, str):  # a name where a list of names belongs
        got += f"; a list of one name is written [{value}]"
    return f"`{where}` {_KINDS.get(kind, error['msg'])}{got}"


def _problems(err: ValidationError, fields: list[str]) -> list[tuple[str, str]]:
    out = []
    for error in err.errors():
        if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            key = str(error["loc"][0])
            out.append((key, f"unknown config key(s) {[key]}{close_match(key, fields)}; "
                             f"valid keys: {sorted(fields)}"))
            continue
        sentence = _sentence(error)
        named = re.match(r"`(\w+)", sentence)  # checks across keys name the key they refuse
        key = str(error["loc"][0]) if error["loc"] else named.group(1) if named else ""
        out.append((key, sentence))
    return out


def checked(cls: type[_T]) -> type[_T]:
    """Make ``cls(...)`` (a pydantic dataclass) raise :class:`ConfigError` instead of pydantic's
    ValidationError: one sentence per mistake, naming the key and the value given."""
    init = cls.__init__
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as err:
            raise ConfigError(_problems(err, fields)) from None

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls
