"""engine.evaluation.keys: one grammar of defence keys, written by the sweep, read everywhere."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import defences as dfn
from engine.errors import ParamError
from engine.evaluation import keys
from engine.evaluation.keys import Member, format_key, parse_defence_key, parse_key
from engine.evaluation.spec import parse_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((PROJECT_ROOT / "assets" / "results").glob("*/results.*"))


@pytest.mark.parametrize(
    ("key", "family", "params"),
    [
        ("none", "none", {}),
        ("nlm:h=5,h_color=5", "nlm", {"h": 5, "h_color": 5}),
        ("gaussian:sigma=0.5", "gaussian", {"sigma": 0.5}),
        ("webp_flip:quality=50,flip=false", "webp_flip", {"quality": 50, "flip": False}),
        ("nlm+bilateral+guided", "nlm+bilateral+guided", {}),
        ("nlm:h=5+median:kernel=3", "nlm+median", {"nlm.h": 5, "median.kernel": 3}),
        (
            "median:kernel=3+median:kernel=5",
            "median+median",
            {"median.kernel": 3, "median#2.kernel": 5},
        ),
        ("guided:eps=1e+06", "guided", {"eps": 1e6}),  # the "+" of an exponent is no chain
    ],
)
def test_parse_defence_key(key, family, params):
    assert parse_defence_key(key) == (family, params)
    assert keys.family(key) == family


def test_parse_defence_key_rejects_malformed_keys():
    with pytest.raises(ParamError, match=r"'nlm:h' is malformed.*got the part 'h'"):
        parse_defence_key("nlm:h")
    with pytest.raises(ParamError, match="non-empty string"):
        parse_defence_key("")
    with pytest.raises(ParamError, match=r"'nlm:h=1,h=2' is malformed: it sets 'h' twice"):
        parse_key("nlm:h=1,h=2")
    with pytest.raises(ParamError, match=r"':h=1' is malformed: it names no defence"):
        parse_key(":h=1")


def test_parse_key_keeps_the_members_in_order():
    assert parse_key("nlm:h=5+median:kernel=3") == (
        Member("nlm", {"h": 5}),
        Member("median", {"kernel": 3}),
    )
    types = [type(v) for v in parse_key("x:a=3,b=0.5,c=true,d=1e-05")[0].params.values()]
    assert types == [int, float, bool, float]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "5"),
        (5.0, "5"),
        (0.5, "0.5"),
        (1e-05, "1e-05"),
        (True, "true"),
        (False, "false"),
        (np.int64(7), "7"),
        (np.float32(0.25), "0.25"),
        (np.bool_(True), "true"),
        (123456.5, "123456.5"),  # %g would write 123456 and lose the half
        (0.1 + 0.2, "0.30000000000000004"),
    ],
)
def test_format_value_reads_back(value, text):
    assert keys.format_value(value) == text
    assert keys.parse_value(text) == value


def test_no_defence_is_the_identity():
    assert keys.NO_DEFENCE == dfn.Identity.ID
    assert keys.NO_DEFENCE in dfn.REGISTRY


# --------------------------------------------------------------------------- round trips


def _shipped_keys() -> list[str]:
    found: list[str] = []
    for path in SHIPPED:
        if path.suffix == ".csv":
            table = pd.read_csv(path, usecols=["defence_key"])
        elif path.suffix == ".parquet":
            table = pd.read_parquet(path, columns=["defence_key"])
        else:
            continue
        found.extend(dict.fromkeys(table["defence_key"]))
    return list(dict.fromkeys(found))


def test_every_shipped_key_round_trips():
    found = _shipped_keys()
    if not found:
        pytest.skip("no shipped results tables")
    assert "nlm+bilateral+guided" in found and "none" in found
    for key in found:
        assert format_key(parse_key(key)) == key


def _generated_members() -> list[tuple[str, dict]]:
    """Settings of every registered defence: each parameter at its bounds, step and default."""
    out: list[tuple[str, dict]] = []
    for defence_id, cls in dfn.REGISTRY.items():
        options = []
        for p in cls.PARAMS:
            if p.kind is bool:
                values = [True, False]
            else:
                values = [p.default, p.low, p.high]
                if p.step is not None and p.low is not None:
                    values.append(p.low + 3 * p.step)
                values = [p.kind(v) for v in values if v is not None]
            options.append([(p.name, v) for v in values])
        out.append((defence_id, {}))
        for combo in itertools.islice(itertools.product(*options), 20):
            out.append((defence_id, dict(combo)))
    return out


def test_generated_settings_round_trip():
    members = _generated_members()
    assert len(members) > len(dfn.REGISTRY)
    for defence_id, params in members:
        (back,) = parse_key(format_key([(defence_id, params)]))
        assert back == Member(defence_id, params)
    chain = members[1:4]
    back = parse_key(format_key(chain))
    assert [(m.id, m.params) for m in back] == chain


def test_the_sweep_writes_keys_with_this_grammar():
    spec = parse_spec(
        """
        [[attacks]]
        id = "fgsm"
        eps = [0, 4]

        [[defences]]
        id = "none"

        [[defences]]
        id = "gaussian"
        grid = { sigma = [0.5, 2.0] }

        [[chains]]
        members = [{ id = "nlm", params = { h = 5 } }, { id = "median", params = { kernel = 3 } }]
        """
    )
    written = [d.key for d in spec.defences]
    assert written == ["none", "gaussian:sigma=0.5", "gaussian:sigma=2", "nlm:h=5+median:kernel=3"]
    for setting in spec.defences:
        assert format_key(parse_key(setting.key)) == setting.key
        assert keys.family(setting.key) == setting.id
