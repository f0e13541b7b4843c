"""The one parameter declaration: fields, coercion, ranges, optional values, messages, CLI."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import ClassVar

import pytest

from engine.errors import ParamError
from engine.params import (
    Param,
    add_options,
    as_dict,
    build,
    check_values,
    declaration,
    declared,
    defaults,
    param,
    params_of,
    required,
    validate,
)


@declared
@dataclass(frozen=True)
class Knobs:
    size: int = param(3, 3, 15, 2, "kernel", odd=True)
    sigma: float = param(1.0, 0.1, 10.0, 0.1, "sigma")
    on: bool = param(True)
    target: int | None = param(None, 0, 9, 1, "optional class")

    def __post_init__(self) -> None:
        validate(self, "Knobs")


def test_defaults_and_coercion():
    k = Knobs(size=5.0, sigma=2)
    assert (k.size, type(k.size), k.sigma, type(k.sigma)) == (5, int, 2.0, float)
    assert defaults(Knobs) == {"size": 3, "sigma": 1.0, "on": True, "target": None}
    assert as_dict(Knobs(target=4))["target"] == 4


def test_the_field_is_the_declaration():
    # the dataclass default and the Param default are one value, written once
    by_field = {f.name: f.default for f in fields(Knobs)}
    assert by_field == defaults(Knobs) == {p.name: p.default for p in Knobs.PARAMS}
    assert params_of(Knobs) == Knobs.PARAMS
    size = declaration(Knobs, "size")
    assert (size.kind, size.low, size.high, size.step, size.odd) == (int, 3, 15, 2, True)
    assert declaration(Knobs, "target").kind is int  # from the annotation "int | None"
    assert declaration(Knobs, "on").kind is bool
    with pytest.raises(KeyError):
        declaration(Knobs, "radius")


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


def test_open_and_unbounded_ranges_and_big_integers():
    rate = Param("rate", float, 0.1, 0.0, 1.0, 0.01, open_low=True)
    assert rate.range_text() == "a number in (0, 1]"
    with pytest.raises(ParamError, match=r"^x: 'rate' must be a number in \(0, 1\]; got 0\.$"):
        rate.check(0, "x")
    count = Param("count", int, None, 1)
    assert count.range_text() == "a positive integer"
    assert count.check(10**12, "x") == 10**12
    seed = Param("seed", int, 0, 0, 2**31 - 1)
    with pytest.raises(ParamError, match=r"\[0, 2147483647\]; got 2147483648\.$"):
        seed.check(2**31, "x")
    assert Param("name", str, "a").check("b", "x") == "b"
    with pytest.raises(ParamError, match=r"'name' must be a string; got 3\."):
        Param("name", str, "a").check(3, "x")


def test_declarations_are_checked_when_the_class_is_made():
    with pytest.raises(TypeError, match="bounded float needs a step"):
        Param("x", float, 1.0, 0.0, 2.0)
    with pytest.raises(TypeError, match="needs a lower bound"):
        Param("x", int, 1)
    with pytest.raises(TypeError, match=r"default None needs a '\| None' annotation"):

        @declared
        @dataclass
        class NoneButNotOptional:
            n: int = param(None, 0, 9)

    with pytest.raises(TypeError, match="int, float, bool or str"):

        @declared
        @dataclass
        class ListParam:
            n: list = param(None, 0, 9)  # type: ignore[type-arg]  # noqa: RUF009

    with pytest.raises(TypeError, match="declare each parameter with param"):

        @dataclass
        class OldStyle:
            n: int = 3
            PARAMS: ClassVar[tuple[Param, ...]] = (Param("n", int, 3, 0, 9),)

        params_of(OldStyle)


def test_check_values_fills_defaults_and_keeps_unset_optionals():
    assert check_values(Knobs, {"size": 5.0}, "K") == {
        "size": 5,
        "sigma": 1.0,
        "on": True,
        "target": None,
    }
    with pytest.raises(ParamError, match=r"^spec\.toml: 'sigma' must be"):
        check_values(Knobs, {"sigma": 0}, "spec.toml")


@declared
@dataclass
class Settings:
    dataset: str = required("dataset id")
    epochs: int = param(20, 1, 1000)
    learning_rate: float = param(1e-3, 0.0, 1.0, 1e-4, open_low=True, flag="--lr")
    weights: str | None = param(None, help="weights")
    class_weights: bool = param(True)
    augment: bool | None = param(None, help="augment")
    resume: bool = param(False, help="resume")


def test_add_options_builds_the_cli_from_the_declarations():
    parser = argparse.ArgumentParser()
    add_options(parser, Settings)
    args = vars(parser.parse_args(["--dataset", "d"]))
    assert args == {**defaults(Settings), "dataset": "d"}
    args = vars(
        parser.parse_args(
            [
                *("--dataset", "d", "--epochs", "3", "--lr", "0.5", "--no-class-weights"),
                *("--no-augment", "--resume", "--weights", "none"),
            ]
        )
    )
    assert args == {
        "dataset": "d",
        "epochs": 3,
        "learning_rate": 0.5,
        "weights": "none",
        "class_weights": False,
        "augment": False,
        "resume": True,
    }
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --dataset is required
    only = argparse.ArgumentParser()
    add_options(only, Settings, only=("epochs",))
    assert vars(only.parse_args([])) == {"epochs": 20}


def test_the_sweep_spec_and_its_cli_read_one_declaration(tmp_path):
    from engine.evaluation.__main__ import build_parser
    from engine.evaluation.spec import SweepOptions, parse_spec

    limit = declaration(SweepOptions, "limit")
    option = next(a for a in build_parser()._actions if a.dest == "limit")
    assert (option.option_strings, option.default, option.help, option.type) == (
        ["--limit"],
        limit.default,
        limit.help,
        int,
    )
    body = '[[attacks]]\nid = "fgsm"\neps = [0, 4]\n[[defences]]\nid = "none"\n'
    spec = parse_spec(body)
    assert (spec.seed, spec.limit, spec.per_image) == tuple(defaults(SweepOptions).values())
    with pytest.raises(
        ParamError, match=r"^<spec>: 'seed' must be an integer in \[0, 2147483647\]"
    ):
        parse_spec("seed = -1\n" + body)
    with pytest.raises(
        ParamError, match=r"^<spec>: 'limit' must be an integer in \[1, 1000000000\]"
    ):
        parse_spec("limit = 0\n" + body)
    with pytest.raises(
        ParamError, match=r"'per_image' must be an integer in \[0, 1000000\]; got 'x'"
    ):
        parse_spec('per_image = "x"\n' + body)
