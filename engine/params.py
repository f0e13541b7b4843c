"""Parameters declared once, as data (house rule 6).

Every tunable parameter of an attack, a defence, a sweep or a training run is
one dataclass field made by :func:`param`: its default, allowed range, slider
step, help text and anything a widget needs live in that one call, and the
field's annotation gives its type. :func:`declared` collects the fields into a
:class:`Param` each (``cls.PARAMS``), and the same declarations drive

* validation (:func:`validate`, called from each parameter dataclass's
  ``__post_init__``), with one message format naming the owner, the parameter,
  the allowed range and the value given;
* the CLIs (:func:`add_options` builds the ``argparse`` options);
* the dashboard's widgets (min, max, step, default, help, and the choices or
  the slider's upper end where the declaration gives them).

Example
-------
>>> from dataclasses import dataclass
>>> @declared
... @dataclass(frozen=True)
... class Blur:
...     sigma: float = param(1.0, 0.1, 10.0, 0.1, "Gaussian sigma in pixels")
...     def __post_init__(self) -> None:
...         validate(self, "Gaussian blur")
>>> Blur.PARAMS[0].range_text()
'a number in [0.1, 10]'
>>> Blur(sigma=50)
Traceback (most recent call last):
...
engine.errors.ParamError: Gaussian blur: 'sigma' must be a number in [0.1, 10]; got 50.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from engine.errors import ParamError

__all__ = [
    "SEED_MAX",
    "Param",
    "add_options",
    "as_dict",
    "build",
    "check_values",
    "declaration",
    "declared",
    "defaults",
    "format_number",
    "param",
    "params_of",
    "required",
    "seed_param",
    "validate",
]

T = TypeVar("T")

#: Largest seed any declaration accepts (``np.random.default_rng`` and Keras take it).
SEED_MAX = 2**31 - 1

_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
_META = "engine.params"  # key of the declaration in a field's metadata

Widget = Literal["slider", "number", "class"]


@dataclass(frozen=True)
class Param:
    """Declaration of one tunable parameter (made by :func:`param`, read by everything).

    Parameters
    ----------
    name : str
        Field name on the owning dataclass.
    kind : type
        ``int``, ``float``, ``bool`` or ``str`` (the field's annotation).
    default : int | float | bool | str | None
        Default value. ``None`` declares an optional parameter (e.g. an attack's
        target class): ``None`` is then accepted as "not set".
    low, high : float | None
        Inclusive bounds (``None`` for bools and strings; ``high=None`` leaves
        a number unbounded above).
    step : float | None
        Slider step (integers default to 1; a bounded float must give one).
    help : str
        One line shown next to the widget and in ``--help``.
    odd : bool, default=False
        For kernel sizes that must be odd.
    open_low : bool, default=False
        ``low`` itself is excluded, e.g. a learning rate in (0, 1].
    choices : tuple of float, default=()
        The values a widget offers instead of a slider over the whole range
        (e.g. fine ε steps at the low end); validation still accepts any
        value in range.
    ui_high : float | None
        Upper end of the slider where the valid range is too wide to slide
        through (validation still accepts up to ``high``).
    widget : {"slider", "number", "class"}, default="slider"
        ``"number"``: a number box, for wide integer ranges (seeds, step
        counts); ``"class"``: a class picker where the classes are known (a
        number box otherwise). Bools are always toggles.
    flag : str, default=""
        CLI option where it is not ``--`` plus the name with dashes.
    required : bool, default=False
        The field has no default; the CLI option is required.
    """

    name: str
    kind: type
    default: int | float | bool | str | None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    help: str = ""
    odd: bool = False
    open_low: bool = False
    choices: tuple[float, ...] = ()
    ui_high: float | None = None
    widget: Widget = "slider"
    flag: str = ""
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS.values():
            raise TypeError(f"Param {self.name!r}: kind must be int, float, bool or str.")
        if self.kind in (int, float):
            if self.low is None:
                raise TypeError(f"Param {self.name!r}: a number needs a lower bound.")
            if self.step is None:
                if self.kind is float and self.high is not None:
                    raise TypeError(f"Param {self.name!r}: a bounded float needs a step.")
                object.__setattr__(self, "step", 1)
        if self.choices and self.default is not None and self.default not in self.choices:
            raise TypeError(f"Param {self.name!r}: the default must be one of the choices.")

    @property
    def slider_high(self) -> float | None:
        """The slider's upper end: :attr:`ui_high` where given, else :attr:`high`."""
        return self.ui_high if self.ui_high is not None else self.high

    def interval(self) -> str:
        """The allowed interval, e.g. ``[3, 15]`` or ``(0, 1]``."""
        left = "(" if self.open_low else "["
        return f"{left}{format_number(self.low)}, {format_number(self.high)}]"

    def range_text(self) -> str:
        """Human-readable allowed range, e.g. ``an odd integer in [3, 15]``."""
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "a string"
        what = "an odd integer" if self.odd else ("an integer" if self.kind is int else "a number")
        if self.high is not None:
            return f"{what} in {self.interval()}"
        whole = self.kind is int and not self.open_low and self.low == 1
        if (whole or (self.open_low and self.low == 0)) and not self.odd:
            return f"a positive {'integer' if self.kind is int else 'number'}"
        return f"{what} {'>' if self.open_low else '>='} {format_number(self.low)}"

    def check(self, value: Any, owner: str) -> int | float | bool | str:
        """Return ``value`` coerced to :attr:`kind`, or raise :class:`ParamError`."""
        bad = ParamError(f"{owner}: '{self.name}' must be {self.range_text()}; got {value!r}.")
        if self.kind in (bool, str):
            if isinstance(value, self.kind):
                return value
            raise bad
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # numpy scalars are accepted through their Python value
            if hasattr(value, "item") and not isinstance(value, bool):
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise bad
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise bad
            value = int(value)
        else:
            value = float(value)
        assert self.low is not None
        above = value > self.low if self.open_low else value >= self.low
        inside = above and (self.high is None or value <= self.high)
        if not inside or (self.odd and value % 2 != 1):
            raise ParamError(
                f"{owner}: '{self.name}' must be {self.range_text()}; got {format_number(value)}."
            )
        return value


def format_number(x: float | None) -> str:
    """``8.0`` -> ``"8"``, ``0.25`` -> ``"0.25"``, ``2147483647`` -> itself; ``None`` -> ``"?"``."""
    if x is None:
        return "?"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:g}"


# --------------------------------------------------------------------------- declaring


def param(
    default: T,
    low: float | None = None,
    high: float | None = None,
    step: float | None = None,
    help: str = "",
    *,
    odd: bool = False,
    open_low: bool = False,
    choices: Iterable[float] = (),
    ui_high: float | None = None,
    widget: Widget = "slider",
    flag: str = "",
) -> T:
    """A dataclass field carrying its :class:`Param` declaration (see :class:`Param`).

    The field's annotation gives the kind (``int``, ``float``, ``bool`` or
    ``str``, optionally ``| None`` for a parameter that may be left unset);
    :func:`declared` turns the fields into ``cls.PARAMS``.
    """
    spec = {
        "default": default,
        "low": low,
        "high": high,
        "step": step,
        "help": help,
        "odd": odd,
        "open_low": open_low,
        "choices": tuple(choices),
        "ui_high": ui_high,
        "widget": widget,
        "flag": flag,
    }
    return dataclasses.field(default=default, metadata={_META: spec})


def required(help: str = "", *, flag: str = "") -> str:
    """A string field without a default (a required CLI option), e.g. a dataset id."""
    spec = {"default": None, "help": help, "flag": flag, "required": True}
    return cast("str", dataclasses.field(metadata={_META: spec}))


def seed_param(help: str) -> int:
    """A seed: an integer in [0, :data:`SEED_MAX`], default 0, typed in a number box."""
    return param(0, 0, SEED_MAX, 1, help, widget="number")


def _kind(annotation: Any, owner: str, name: str) -> tuple[type, bool]:
    """``(kind, optional)`` from a field annotation such as ``"int | None"``."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    text = text or str(annotation)
    names = [t.strip() for t in text.split("|")]
    optional = "None" in names
    names = [t for t in names if t != "None"]
    if len(names) != 1 or names[0] not in _KINDS:
        raise TypeError(
            f"{owner}.{name}: a declared parameter is int, float, bool or str "
            f"(optionally | None); got {text!r}."
        )
    return _KINDS[names[0]], optional


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass; declare its parameters with param().")
    return dataclasses.fields(cls)


_DECLARED: dict[type, tuple[Param, ...]] = {}


def params_of(cls: type) -> tuple[Param, ...]:
    """The :class:`Param` of every :func:`param` field of a dataclass, in field order."""
    if cls in _DECLARED:
        return _DECLARED[cls]
    if cls.__dict__.get("PARAMS"):
        raise TypeError(f"{cls.__name__}: declare each parameter with param(), not in PARAMS.")
    out = []
    for f in _fields(cls):
        spec = f.metadata.get(_META)
        if spec is None:
            continue
        kind, optional = _kind(f.type, cls.__name__, f.name)
        if spec["default"] is None and not optional and not spec.get("required"):
            raise TypeError(f"{cls.__name__}.{f.name}: default None needs a '| None' annotation.")
        out.append(Param(f.name, kind, **spec))
    _DECLARED[cls] = tuple(out)
    return _DECLARED[cls]


def declared(cls: type[T]) -> type[T]:
    """Class decorator (above ``@dataclass``): set ``cls.PARAMS`` from its :func:`param` fields."""
    setattr(cls, "PARAMS", params_of(cls))  # noqa: B010 - the attribute is made here
    return cls


def declaration(cls: type, name: str) -> Param:
    """The declaration of parameter ``name`` of ``cls`` (``KeyError`` if it has none)."""
    for p in params_of(cls):
        if p.name == name:
            return p
    raise KeyError(name)


# --------------------------------------------------------------------------- using


def check_values(cls: type, values: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Every declared parameter of ``cls``, from ``values`` or its default, checked and coerced.

    A parameter whose value is ``None`` stays ``None`` where the declaration
    allows it (an optional parameter left unset).
    """
    out: dict[str, Any] = {}
    for p in params_of(cls):
        value = values.get(p.name, p.default)
        if value is None and p.default is None and not p.required:
            out[p.name] = None  # an optional parameter left unset
        else:
            out[p.name] = p.check(value, owner)
    return out


def validate(obj: Any, owner: str) -> None:
    """Validate (and coerce) every declared parameter of a dataclass instance in place.

    Called from ``__post_init__``; frozen dataclasses are supported.
    """
    current = {p.name: getattr(obj, p.name) for p in params_of(type(obj))}
    for name, value in check_values(type(obj), current, owner).items():
        object.__setattr__(obj, name, value)


def defaults(cls: type) -> dict[str, Any]:
    """The declared defaults of a parameter dataclass, as a dict."""
    return {p.name: p.default for p in params_of(cls)}


def as_dict(obj: Any) -> dict[str, Any]:
    """The declared parameters of an instance, as a plain JSON-able dict."""
    return {p.name: getattr(obj, p.name) for p in params_of(type(obj))}


def build(cls: type[T], values: Mapping[str, Any] | None = None, owner: str | None = None) -> T:
    """Construct ``cls`` from a dict, rejecting unknown keys with a clear message."""
    values = dict(values or {})
    known = {f.name for f in _fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        name = owner or cls.__name__
        raise ParamError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(p.name for p in params_of(cls))}."
        )
    return cls(**values)


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    only: Iterable[str] | None = None,
) -> None:
    """Add one ``argparse`` option per declared parameter of ``cls`` (or of those in ``only``).

    The option is ``--`` plus the name with dashes (or :attr:`Param.flag`), its
    destination the field name, its default and help the declaration's. A
    bool defaulting to ``False`` is a ``--flag``, one defaulting to ``True`` a
    ``--no-flag``, one defaulting to ``None`` a ``--flag/--no-flag`` pair.
    Values are converted to the kind; ranges are checked where the settings
    are validated (so the CLI reports them in the same words).
    """
    keep = None if only is None else set(only)
    for p in params_of(cls):
        if keep is not None and p.name not in keep:
            continue
        dashed = p.name.replace("_", "-")
        opts: dict[str, Any] = {"dest": p.name, "help": p.help or None}
        if p.kind is bool and p.default is None:
            opts |= {"action": argparse.BooleanOptionalAction, "default": None}
        elif p.kind is bool:
            dashed = f"no-{dashed}" if p.default else dashed
            opts["action"] = "store_false" if p.default else "store_true"
        else:
            opts |= {"default": p.default, "required": p.required}
            if p.kind is not str:
                opts["type"] = p.kind
        parser.add_argument(p.flag or f"--{dashed}", **opts)
