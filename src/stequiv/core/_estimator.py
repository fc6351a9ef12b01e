r"""Weight gradient estimators: the base class, the registry and user-defined estimators.

An estimator is a small frozen dataclass holding its parameters and giving its derivative
:math:`\hat Q'` (and, where the source defines one, the surrogate :math:`\hat Q`).

**Units.** Multi-bit estimators (``units = "bin"``) are written in the grid coordinate
:math:`v = w/\Delta - z` of :class:`~stequiv.core.UniformQuantizer` (levels at the integers,
decision boundaries at the half-integers), as Appendix B of the paper does; one definition then
serves every Δ and :math:`\hat Q'(w) = h(v)` is dimensionless ("STE units": the STE is 1).
Binary estimators (``units = "weight"``) are written in the latent weight itself, with the single
boundary point at 0, exactly as their sources write them.

**Outside the clip range** ``[l, u]`` of a multi-bit quantizer an estimator either keeps its formula
(``tail = "extend"``, e.g. the STE), vanishes because it contains Eq. 1's clip
(``tail = "zero"``: PWL, HTGE, DSQ), or has a tail of its own (``tail = "custom"``, MAD), given by
:meth:`Estimator.tail_derivative`.

Every formula is written once against the array API (``xp``), so the same definition evaluates on
NumPy arrays (the equivalence math, in float64) and on torch tensors (training).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from array_api_compat import array_namespace

from ._validate import Converter

__all__ = [
    "Estimator",
    "custom_estimator",
    "get_estimator",
    "list_estimators",
    "param",
    "register_estimator",
]

Units = Literal["bin", "weight"]
Tail = Literal["extend", "zero", "custom"]
Kind = Literal["multi-bit", "binary", "both"]

_REGISTRY: dict[str, type[Estimator]] = {}
E = TypeVar("E", bound="Estimator")


def param(default: Any, check: Converter | None = None) -> Any:
    """Declare an estimator parameter: its default and its check (a converter, as Equinox's
    ``field(converter=...)``): ``check(name, value)`` returns the value to store or raises a
    ``ValueError`` naming the parameter. The base ``__post_init__`` applies every check. In a
    subclass body: ``t: float = param(4.0, positive_float)``.
    """
    return dataclasses.field(default=default, metadata={"check": check})


class Estimator:
    """Base of every estimator. Subclasses are frozen dataclasses and define :meth:`derivative`.

    Parameters are dataclass fields declared with :func:`param` (default and check); one
    ``__post_init__`` here converts them all, then calls :meth:`check_params` for invariants that
    tie several parameters together.

    Class-level declarations (checked numerically by the contract tests):

    * ``name``, ``title`` (for tables), ``reference``, ``kind`` (``"multi-bit"``, ``"binary"`` or ``"both"``), ``units``;
    * ``positive`` (:math:`\\hat Q' > 0` inside the clip range / support), ``bounded``,
      ``lipschitz`` and ``cyclical`` (same shape in every finite bin), as in the paper's §5;
    * ``tail``: behaviour outside the clip range (see the module docstring);
    * ``kinks``: where :math:`\\hat Q'` is not smooth, as positions in ``[0, 1)`` of ``v mod 1``
      (bin units) or absolute positions (weight units), so that quadrature can split there;
    * ``support``: for weight-unit estimators, the interval outside which :math:`\\hat Q' = 0`.

    ``positive``, ``kinks`` and ``support`` may depend on the parameters: a subclass overrides the
    property (or sets a plain class attribute when they do not).

    Optional hooks, declared here as ``None`` (absent) and defined as methods by the estimators
    that have them; closed forms are used in place of quadrature (and tested against it):

    * ``surrogate(x)``: :math:`\\hat Q` (same units as :meth:`derivative`);
    * ``boundary_primitive(d)`` (bin units): :math:`P(d) = \\int_{1/2}^{1/2+d} ds/h(s)` for
      :math:`d \\in [0, 1]`;
    * ``weight_primitive(w)`` (weight units): :math:`\\int_0^w ds/h(s)`;
    * ``tail_derivative(v, lower, upper, offset)`` (``tail = "custom"``): :math:`\\hat Q'` outside
      the clip range, with ``tail_primitive(v, edge, lower, upper, offset)`` =
      :math:`\\int_{edge}^{v} ds/\\text{tail}(s)` and its inverse ``tail_primitive_inverse``;
    * ``sech2_shape``: ``(A, k)`` when :math:`\\hat Q' = A\\,\\mathrm{sech}^2(k e)` (Appendix H's
      closed-form constants).
    """

    # Every estimator is a dataclass (register_estimator checks it): declared for type checkers.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    name: ClassVar[str] = "estimator"
    title: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    kind: ClassVar[Kind] = "multi-bit"
    units: ClassVar[Units] = "bin"
    tail: ClassVar[Tail] = "extend"
    bounded: ClassVar[bool] = True
    lipschitz: ClassVar[bool] = True
    cyclical: ClassVar[bool] = True

    surrogate: Callable[[Any], Any] | None = None
    boundary_primitive: Callable[[Any], Any] | None = None
    weight_primitive: Callable[[Any], Any] | None = None
    tail_derivative: Callable[[Any, float, float, float], Any] | None = None
    tail_primitive: Callable[[Any, float, float, float, float], Any] | None = None
    tail_primitive_inverse: Callable[[Any, float, float, float, float], Any] | None = None
    sech2_shape: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        self.check_params()

    def check_params(self) -> None:
        """Invariants between parameters (each one is already checked on its own)."""

    # Declared as plain attributes, so that a subclass may set a class attribute or, where they
    # depend on the parameters, override them with a property.
    positive: bool = True
    """:math:`\\hat Q' > 0` inside the clip range (bin units) or the open support."""
    kinks: tuple[float, ...] = ()
    """Where :math:`\\hat Q'` is not smooth (``v mod 1`` in bin units, else weights)."""
    support: tuple[float, float] = (-np.inf, np.inf)
    """The interval outside which :math:`\\hat Q' = 0` (weight units)."""

    def derivative(self, x: Any) -> Any:
        """:math:`\\hat Q'` at ``x`` (grid coordinate or weight, see ``units``)."""
        raise NotImplementedError(f"{type(self).__name__} must define `derivative(x)`")

    # ---------------------------------------------------------------------------- conveniences
    @property
    def params(self) -> dict[str, Any]:
        """The estimator's parameters by name (its dataclass fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., **params}``: round-trips through :func:`get_estimator`."""
        return {"name": self.name, **self.params}

    def describe(self) -> str:
        """``name(p=v, ...)`` for tables and reports."""
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.params.items())
        return f"{self.name}({inner})"

    def out_of_range(self) -> str:
        """The end of an error for parameters too extreme to evaluate in float64."""
        names = ", ".join(f"`{k}`={v!r}" for k, v in self.params.items()) or "the estimator"
        return f"{names} is out of the range it can be evaluated in; choose a moderate value"

    def properties(self) -> dict[str, bool]:
        """The declared properties of §5: positive, bounded, Lipschitz, cyclical."""
        return {"positive": self.positive, "bounded": self.bounded,
                "lipschitz": self.lipschitz, "cyclical": self.cyclical}

    def gradient(self, v: Any, lower: float, upper: float, offset: float) -> Any:
        """:math:`\\hat Q'` for a quantizer with clip range ``[lower, upper]`` (grid coordinate).

        Weight-unit estimators get the weight itself in ``v`` and ignore the clip range.
        """
        if self.units == "weight" or self.tail == "extend":
            return self.derivative(v)
        xp = array_namespace(v)
        inside = (v >= lower) & (v <= upper)
        if self.tail == "zero":
            return xp.where(inside, self.derivative(v), xp.zeros_like(v))
        tail = self.tail_derivative
        if tail is None:
            raise NotImplementedError(f"{type(self).__name__} declares a custom tail but defines none")
        return xp.where(inside, self.derivative(v), tail(v, lower, upper, offset))


def register_estimator(name: str) -> Callable[[type[E]], type[E]]:
    """Class decorator registering an estimator under ``name``; a name may be registered once."""

    def decorate(cls: type[E]) -> type[E]:
        key = name.lower()
        if key in _REGISTRY:
            raise ValueError(
                f"an estimator named {key!r} is already registered ({_REGISTRY[key].__name__}); "
                "pick another name"
            )
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a frozen dataclass")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return decorate


def list_estimators(kind: Kind | None = None) -> list[str]:
    """Registered estimator names, sorted; ``kind`` keeps those usable with that quantizer kind."""
    names = sorted(_REGISTRY)
    if kind is None:
        return names
    return [n for n in names if _REGISTRY[n].kind in (kind, "both")]


def get_estimator(spec: str | Mapping[str, Any] | Estimator, /, **params: Any) -> Estimator:
    """Resolve a name (with parameters by keyword), a ``{"name": ..., **params}`` dict, or an instance.

    >>> get_estimator("htge", t=4.0).describe()
    'htge(t=4)'
    """
    if isinstance(spec, Estimator):
        if params:
            return dataclasses.replace(spec, **params)
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"an estimator dict needs a 'name' key, got keys {sorted(spec)}")
        name = spec.pop("name")
        return get_estimator(name, **spec, **params)
    if not isinstance(spec, str):
        raise TypeError(f"estimator must be a name, a dict or an Estimator, got {type(spec).__name__}")
    key = spec.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown estimator {spec!r}{hint} Registered: {', '.join(list_estimators())}"
        )
    cls = _REGISTRY[key]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"estimator {key!r} has no parameter(s) {unknown}; its parameters are "
            f"{sorted(fields) or 'none'}"
        )
    return cls(**params)


def custom_estimator(
    name: str,
    derivative: Callable[[Any], Any],
    *,
    kind: Kind = "multi-bit",
    tail: Tail = "extend",
    kinks: tuple[float, ...] = (),
    support: tuple[float, float] = (-np.inf, np.inf),
    positive: bool = True,
    bounded: bool = True,
    lipschitz: bool = True,
    cyclical: bool = True,
    reference: str = "user-defined",
    register: bool = True,
) -> Estimator:
    """Build (and by default register) an estimator from its derivative :math:`\\hat Q'` alone.

    ``derivative(x)`` must be written with array-API functions (``array_namespace(x)``) so that
    it evaluates on NumPy arrays and torch tensors. α, M, M⁻¹ and the constants are then computed
    numerically. Multi-bit estimators take the grid coordinate (levels at integers, boundaries at
    half-integers) and must be 1-periodic if ``cyclical``; binary ones take the weight.
    """
    if tail == "custom":
        raise ValueError("`tail='custom'` needs a subclass with `tail_derivative`; use 'extend' or 'zero'")
    attrs: dict[str, Any] = {
        "kind": kind, "units": "weight" if kind == "binary" else "bin", "tail": tail,
        "kinks": tuple(kinks), "support": tuple(support), "positive": positive,
        "bounded": bounded, "lipschitz": lipschitz, "cyclical": cyclical, "reference": reference,
        "derivative": lambda self, x: derivative(x), "__doc__": derivative.__doc__,
    }
    cls = dataclasses.dataclass(frozen=True)(type(f"Custom_{name}", (Estimator,), attrs))
    if register:
        register_estimator(name)(cls)
    else:
        cls.name = name
    return cls()
