"""engine.evaluation.query: plain-pandas questions to a results table."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from engine.errors import ParamError
from engine.evaluation import query
from tests.engine.tables import ACC, make_per_image, make_table


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table()


# --------------------------------------------------------------------------- attacks & budgets


def test_attacks_budgets_and_rows(table):
    assert query.attacks(table) == ["fgsm", "pgd"]
    assert query.attacked(table) == ["fgsm", "pgd"]
    assert query.eps_values(table, "pgd") == [0.0, 4.0]
    assert query.eps_values(table, "fgsm", "median:kernel=3") == [0.0, 4.0, 8.0]
    row = query.find_row(table, "fgsm", 4.0, "median:kernel=5")
    assert row is not None and row["accuracy"] == pytest.approx(0.65)
    assert query.find_row(table, "pgd", 8.0, "none") is None
    assert query.has_patient_view(table)
    assert not query.has_patient_view(make_table(patient=False))


def test_attacked_skips_an_attack_with_only_clean_rows(table):
    partial = table[(table["attack"] == "fgsm") | (table["eps"] == 0)]
    assert query.attacks(partial) == ["fgsm", "pgd"]
    assert query.attacked(partial) == ["fgsm"]


def test_resolve_eps(table):
    assert query.resolve_eps(table, "fgsm", 4) == (4.0, "")
    assert query.resolve_eps(table, "fgsm", 5) == (
        4.0,
        "ε 5 is not precomputed; showing ε 4 (nearest)",
    )
    with pytest.raises(ParamError, match=r"eps must be a number in \[0, 255\]; got True"):
        query.resolve_eps(table, "fgsm", True)


def test_check_errors_name_the_known_values(table):
    with pytest.raises(ParamError, match=r"Unknown attack 'cw'; this table has: fgsm, pgd"):
        query.check_attack(table, "cw")
    with pytest.raises(ParamError, match=r"Unknown defence setting 'x'; this table has: none"):
        query.check_defence_key(table, "x")


# --------------------------------------------------------------------------- defence settings


def test_families_keys_and_params(table):
    assert query.defence_keys(table) == list(ACC)
    assert query.defence_families(table) == ["none", "median", "jpeg", "nlm", "nlm+median"]
    assert query.family_keys(table, "nlm") == ["nlm:h=5,h_color=5", "nlm:h=10,h_color=10"]
    assert query.family_params(table, "median") == {"kernel": [3, 5]}
    assert query.family_params(table, "nlm+median") == {"median.kernel": [3]}
    assert query.check_param(table, "nlm", "h") == [5, 10]


def test_none_is_listed_first(table):
    shuffled = pd.concat(
        [table[table["defence_key"] != "none"], table[table["defence_key"] == "none"]]
    )
    assert query.defence_families(shuffled)[0] == "none"


def test_unknown_family_and_parameter_name_the_known_ones(table):
    with pytest.raises(ParamError, match=r"Unknown defence family 'bm3d'; this table has: none"):
        query.family_params(table, "bm3d")
    with pytest.raises(ParamError, match=r"Median blur has no parameter 'h' in this table; known"):
        query.check_param(table, "median", "h")
    with pytest.raises(ParamError, match=r"NLM → Median has no parameter 'h'.*: median.kernel"):
        query.check_param(table, "nlm+median", "h")


def test_family_titles_come_from_the_defence_registry():
    assert query.family_title("median") == "Median blur"
    assert query.family_title("median", short=True) == "Median"
    assert query.family_title("nlm+median") == "NLM → Median"
    assert query.family_title("bm3d") == "bm3d"


def test_defence_spec_decodes_the_stored_json(table):
    spec = {"id": "median", "params": {"kernel": 3}}
    stored = table.assign(defence_params=json.dumps(spec))
    assert query.defence_spec(stored, "median:kernel=3") == spec
    assert query.defence_spec(table, "median:kernel=3") == {}
    with pytest.raises(ParamError, match="Unknown defence setting 'x'"):
        query.defence_spec(table, "x")
    with pytest.raises(ParamError, match="stores no defence spec"):
        query.defence_spec(table.assign(defence_params=None), "none")


# --------------------------------------------------------------------------- nearest setting


def test_nearest_setting_exact_has_no_note(table):
    row, note = query.nearest_setting(table, attack="fgsm", eps=4)
    assert note == ""
    assert (row["defence_key"], row["eps"], row["accuracy"]) == ("none", 4.0, 0.30)


def test_nearest_setting_maps_eps_and_says_so(table):
    row, note = query.nearest_setting(table, attack="fgsm", eps=5)
    assert row["eps"] == 4.0
    assert note == "ε 5 is not precomputed; showing ε 4 (nearest)"
    row, note = query.nearest_setting(table, attack="fgsm", eps=6)  # tie: the stronger attack
    assert row["eps"] == 8.0 and "showing ε 8" in note
    row, note = query.nearest_setting(table, attack="pgd", eps=8)  # PGD stops at 4
    assert row["eps"] == 4.0 and note == "ε 8 is not precomputed; showing ε 4 (nearest)"


def test_nearest_setting_maps_parameters(table):
    row, note = query.nearest_setting(
        table, attack="fgsm", eps=8, defence_family="nlm", params={"h": 7}
    )
    assert row["defence_key"] == "nlm:h=5,h_color=5"
    assert note == "h 7 is not precomputed; showing h 5 (nearest)"
    row, note = query.nearest_setting(
        table, attack="fgsm", eps=3, defence_family="median", params={"kernel": 5}
    )
    assert row["defence_key"] == "median:kernel=5" and row["eps"] == 4.0
    assert note == "ε 3 is not precomputed; showing ε 4 (nearest)"
    row, note = query.nearest_setting(table, attack="fgsm", eps=0, defence_family="median")
    assert row["defence_key"] == "median:kernel=3" and note == ""  # params free: first one


def test_nearest_setting_errors(table):
    with pytest.raises(ParamError, match=r"Unknown attack 'cw'; this table has: fgsm, pgd"):
        query.nearest_setting(table, attack="cw", eps=4)
    with pytest.raises(ParamError, match=r"Median blur has no parameter 'sigma'.*: kernel"):
        query.nearest_setting(
            table, attack="fgsm", eps=4, defence_family="median", params={"sigma": 1}
        )
    with pytest.raises(ParamError, match=r"eps must be a number in \[0, 255\]; got -1"):
        query.nearest_setting(table, attack="fgsm", eps=-1)


# --------------------------------------------------------------------------- flipped images


def test_flipped_images():
    per_image = make_per_image()
    out = query.flipped_images(
        per_image, attack="fgsm", eps=4, defence_key="median:kernel=3", classes=["ok", "bad"]
    )
    assert list(out["image_index"]) == [10, 11, 12]  # image 15 was wrong before the attack
    assert list(out["restored"]) == [True, False, True]
    assert list(out["pred_clean"]) == list(out["true_label"])
    assert (out["pred_attacked"] != out["true_label"]).all()
    assert list(out["true_name"]) == ["ok", "bad", "ok"]
    assert list(out["defended_name"]) == ["ok", "ok", "ok"]


def test_flipped_images_errors():
    per_image = make_per_image()
    with pytest.raises(ParamError, match=r"Unknown defence setting 'jpeg'; this table has: none"):
        query.flipped_images(per_image, attack="fgsm", eps=4, defence_key="jpeg")
    with pytest.raises(ParamError, match=r"Unknown attack 'pgd'; this table has: fgsm"):
        query.flipped_images(per_image, attack="pgd", eps=4, defence_key="none")
