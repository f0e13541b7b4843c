"""The grammar of defence keys: how a results row names its defence setting.

Every row of a sweep's tables (``results.csv``, ``per_image.csv``) names its
defence setting with a *key*, written once by the sweep
(:mod:`engine.evaluation.spec`, through :func:`format_key`) and read back
everywhere else through :func:`parse_key`::

    key    := member ("+" member)*
    member := id [":" param ("," param)*]
    param  := name "=" value
    value  := integer | number | "true" | "false"

``id`` is a defence's registry id (:data:`engine.defences.REGISTRY`), ``"none"``
for no defence. A member lists the parameters the spec set, in the spec's
order; the others are at their declared defaults. A chain joins its members
with ``+`` in the order they are applied; a ``+`` followed by a digit is the
exponent of a number (``1e+06``), not a chain. Numbers are written as
integers when they are integral (``5``, not ``5.0``), else in the shortest
form that reads back to the same float (``0.5``, ``1e-05``).

Examples: ``"none"``, ``"jpeg:quality=75"``,
``"bilateral:d=5,sigma_color=25,sigma_space=25"``, ``"nlm+bilateral+guided"``,
``"nlm:h=5+median:kernel=3"``.

Round trip: ``format_key(parse_key(k)) == k`` for every key the sweep writes,
and ``parse_key(format_key(m)) == m`` for members whose values are ints, bools
and floats (an integral float reads back as the equal int).

This module imports no defence (nor OpenCV): a plain pandas session reads
keys without loading one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any, NamedTuple

import numpy as np

from engine.errors import ParamError
from engine.params import format_number

__all__ = [
    "CHAIN_SEP",
    "NO_DEFENCE",
    "Member",
    "Value",
    "family",
    "flat_params",
    "format_key",
    "format_member",
    "format_value",
    "parse_defence_key",
    "parse_key",
    "parse_value",
]

#: Key (and family) of the "no defence" setting: :class:`engine.defences.Identity`'s id.
NO_DEFENCE = "none"
#: Joins the members of a chain.
CHAIN_SEP = "+"

_CHAIN_SPLIT = re.compile(r"\+(?=[A-Za-z_])")  # not the "+" of "1e+06"
_INT = re.compile(r"[+-]?\d+")

#: A parameter value as a key holds it.
Value = int | float | bool | str


class Member(NamedTuple):
    """One defence of a key: its registry id and the parameters the key names."""

    id: str
    params: dict[str, Value]


# --------------------------------------------------------------------------- writing


def format_value(value: Any) -> str:
    """A parameter value as a key writes it: ``5``, ``0.5``, ``1e-05``, ``true``/``false``.

    Integral numbers are written as integers; other floats in ``%g`` form when
    that reads back to the same float, else in the shortest form that does.
    Anything else (not a declared parameter type) is written with ``str``.
    """
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        v = float(value)
        short = format_number(v)
        return short if not math.isfinite(v) or float(short) == v else repr(v)
    return str(value)


def format_member(defence_id: Any, params: Mapping[str, Any]) -> str:
    """``id`` or ``id:name=value,...``, the parameters in the order given."""
    if not params:
        return str(defence_id)
    return f"{defence_id}:" + ",".join(f"{k}={format_value(v)}" for k, v in params.items())


def format_key(members: Iterable[tuple[Any, Mapping[str, Any]]]) -> str:
    """The key of a setting: its members (``(id, params)`` pairs) joined with ``+``.

    Examples
    --------
    >>> format_key([("nlm", {"h": 5.0, "h_color": 5})])
    'nlm:h=5,h_color=5'
    >>> format_key([("nlm", {}), ("median", {"kernel": 3})])
    'nlm+median:kernel=3'
    """
    return CHAIN_SEP.join(format_member(i, p) for i, p in members)


# --------------------------------------------------------------------------- reading


def parse_value(text: str) -> Value:
    """A value as written in a key: ``true``/``false``, an int, a float, else the text."""
    if text == "true":
        return True
    if text == "false":
        return False
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _parse_member(key: str, member: str) -> Member:
    defence_id, sep, rest = member.partition(":")
    params: dict[str, Value] = {}
    if sep:
        for part in rest.split(","):
            name, eq, text = part.partition("=")
            name = name.strip()
            if not eq or not name:
                raise ParamError(
                    f"Defence key {key!r} is malformed: expected id:name=value,...; "
                    f"got the part {part!r}."
                )
            if name in params:
                raise ParamError(f"Defence key {key!r} is malformed: it sets {name!r} twice.")
            params[name] = parse_value(text.strip())
    if not defence_id:
        raise ParamError(f"Defence key {key!r} is malformed: it names no defence.")
    return Member(defence_id, params)


def parse_key(key: str) -> tuple[Member, ...]:
    """The members of a defence key, in the order they are applied.

    Raises
    ------
    ParamError
        ``key`` is not a non-empty string, a member names no defence, or a
        part of it is not ``name=value``.

    Examples
    --------
    >>> parse_key("nlm:h=5+median:kernel=3")
    (Member(id='nlm', params={'h': 5}), Member(id='median', params={'kernel': 3}))
    """
    if not isinstance(key, str) or not key:
        raise ParamError(f"A defence key must be a non-empty string; got {key!r}.")
    return tuple(_parse_member(key, m) for m in _CHAIN_SPLIT.split(key))


def family(key: str) -> str:
    """The family of a key: its id, or the ``+``-joined ids of a chain (``"nlm+median"``)."""
    return _family(parse_key(key))


def _family(members: tuple[Member, ...]) -> str:
    return CHAIN_SEP.join(m.id for m in members)


def flat_params(members: tuple[Member, ...]) -> dict[str, Value]:
    """The parameters of a key's members in one dict.

    A single defence's names are kept (``"h"``); a chain's are prefixed with
    the member's id (``"nlm.h"``, and ``"median#2.kernel"`` for the second
    member with the same id).
    """
    if len(members) == 1:
        return dict(members[0].params)
    out: dict[str, Value] = {}
    seen: dict[str, int] = {}
    for m in members:
        seen[m.id] = count = seen.get(m.id, 0) + 1
        prefix = m.id if count == 1 else f"{m.id}#{count}"
        out.update({f"{prefix}.{k}": v for k, v in m.params.items()})
    return out


def parse_defence_key(key: str) -> tuple[str, dict[str, Value]]:
    """A key's family and its parameters in one dict (:func:`family`, :func:`flat_params`).

    Examples
    --------
    >>> parse_defence_key("nlm:h=5,h_color=5")
    ('nlm', {'h': 5, 'h_color': 5})
    >>> parse_defence_key("nlm+bilateral:d=9")
    ('nlm+bilateral', {'bilateral.d': 9})
    """
    members = parse_key(key)
    return _family(members), flat_params(members)
