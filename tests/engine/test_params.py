"""The one parameter declaration: coercion, ranges, optional values, messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from engine.errors import ParamError
from engine.params import Param, as_dict, build, defaults, validate


@dataclass(frozen=True)
class Knobs:
    size: int = 3
    sigma: float = 1.0
    on: bool = True
    target: int | None = None
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("size", int, 3, 3, 15, 2, "kernel", odd=True),
        Param("sigma", float, 1.0, 0.1, 10.0, 0.1, "sigma"),
        Param("on", bool, True),
        Param("target", int, None, 0, 9, 1, "optional class"),
    )

    def __post_init__(self) -> None:
        validate(self, "Knobs")


def test_defaults_and_coercion():
    k = Knobs(size=5.0, sigma=2)
    assert (k.size, type(k.size), k.sigma, type(k.sigma)) == (5, int, 2.0, float)
    assert defaults(Knobs) == {"size": 3, "sigma": 1.0, "on": True, "target": None}
    assert as_dict(Knobs(target=4))["target"] == 4


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"size": 4}, r"Knobs: 'size' must be an odd integer in \[3, 15\]; got 4\."),
        ({"size": 17}, r"'size' must be an odd integer in \[3, 15\]; got 17\."),
        ({"size": 3.5}, r"'size' must be an odd integer .*; got 3\.5\."),
        ({"sigma": float("nan")}, r"'sigma' must be a number in \[0\.1, 10\]; got nan\."),
        ({"sigma": "big"}, r"'sigma' must be a number .*; got 'big'\."),
        ({"size": True}, r"'size' must be an odd integer"),
        ({"on": 1}, r"'on' must be true or false; got 1\."),
        ({"target": 10}, r"'target' must be an integer in \[0, 9\]; got 10\."),
    ],
)
def test_every_message_names_owner_parameter_range_and_value(kwargs, pattern):
    with pytest.raises(ParamError, match=pattern):
        Knobs(**kwargs)


def test_build_rejects_unknown_keys():
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) radius; known: size, sigma"):
        build(Knobs, {"radius": 2})
    assert build(Knobs, {"sigma": 3}).sigma == 3.0
