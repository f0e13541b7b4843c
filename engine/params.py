"""Parameters declared once, as data.

Every tunable parameter of an attack or a defence is a :class:`Param`: its
name, type, default, allowed range, slider step and a one-line help text. The
same declaration drives

* validation (:func:`validate`, called from each parameter dataclass's
  ``__post_init__``), with one message format naming the owner, the parameter,
  the allowed range and the value given;
* the CLI (``argparse`` options built from it);
* the dashboard's sliders (min, max, step, default, help).

Example
-------
>>> from dataclasses import dataclass
>>> from typing import ClassVar
>>> @dataclass(frozen=True)
... class Blur:
...     sigma: float = 1.0
...     PARAMS: ClassVar[tuple[Param, ...]] = (
...         Param("sigma", float, 1.0, 0.1, 10.0, 0.1, "Gaussian sigma in pixels"),
...     )
...     def __post_init__(self) -> None:
...         validate(self, "Gaussian blur")
>>> Blur(sigma=50)
Traceback (most recent call last):
...
engine.errors.ParamError: Gaussian blur: 'sigma' must be a number in [0.1, 10]; got 50.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from engine.errors import ParamError


@dataclass(frozen=True)
class Param:
    """Declaration of one tunable parameter.

    Parameters
    ----------
    name : str
        Field name on the owning dataclass.
    kind : type
        ``int``, ``float`` or ``bool``.
    default : int | float | bool | None
        Default value. ``None`` declares an optional parameter (e.g. an attack's
        target class): ``None`` is then accepted as "not set".
    low, high : float | None
        Inclusive bounds (``None`` for bools).
    step : float | None
        Slider step for the UI.
    help : str
        One line shown next to the slider and in ``--help``.
    odd : bool, default=False
        For kernel sizes that must be odd.
    """

    name: str
    kind: type
    default: int | float | bool | None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    help: str = ""
    odd: bool = False

    def range_text(self) -> str:
        """Human-readable allowed range, e.g. ``an odd integer in [3, 15]``."""
        if self.kind is bool:
            return "true or false"
        what = "an odd integer" if self.odd else ("an integer" if self.kind is int else "a number")
        return f"{what} in [{_fmt(self.low)}, {_fmt(self.high)}]"

    def check(self, value: Any, owner: str) -> int | float | bool:
        """Return ``value`` coerced to :attr:`kind`, or raise :class:`ParamError`."""
        bad = ParamError(f"{owner}: '{self.name}' must be {self.range_text()}; got {value!r}.")
        if self.kind is bool:
            if isinstance(value, bool):
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
        assert self.low is not None and self.high is not None
        if not (self.low <= value <= self.high):
            raise ParamError(
                f"{owner}: '{self.name}' must be {self.range_text()}; got {_fmt(value)}."
            )
        if self.odd and value % 2 != 1:
            raise ParamError(
                f"{owner}: '{self.name}' must be {self.range_text()}; got {_fmt(value)}."
            )
        return value


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:g}"


def validate(obj: Any, owner: str) -> None:
    """Validate (and coerce) every declared parameter of a frozen dataclass in place.

    ``obj`` must have a ``PARAMS`` class attribute listing its :class:`Param`
    declarations. Called from ``__post_init__``.
    """
    for p in obj.PARAMS:
        value = getattr(obj, p.name)
        if value is None and p.default is None:
            continue  # an optional parameter left unset
        object.__setattr__(obj, p.name, p.check(value, owner))


def defaults(cls: type) -> dict[str, Any]:
    """The declared defaults of a parameter dataclass, as a dict."""
    return {p.name: p.default for p in cls.PARAMS}


def as_dict(obj: Any) -> dict[str, Any]:
    """The declared parameters of an instance, as a plain JSON-able dict."""
    return {p.name: getattr(obj, p.name) for p in obj.PARAMS}


def build(cls: type, values: dict[str, Any] | None = None, owner: str | None = None) -> Any:
    """Construct ``cls`` from a dict, rejecting unknown keys with a clear message."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        name = owner or cls.__name__
        raise ParamError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(p.name for p in cls.PARAMS)}."
        )
    return cls(**values)
