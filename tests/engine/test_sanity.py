"""engine.evaluation.sanity: the checks of Carlini et al. 2019 on hand-made and shipped tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.errors import ParamError
from engine.evaluation import load_results, sanity
from engine.evaluation.sanity import CHART_CONFUSION, CHART_EPS, CHECKS, Finding, check
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER, adaptive_label
from tests.engine.tables import make_table

ROOT = Path(__file__).resolve().parents[2]
CHEST = ROOT / "assets" / "results" / "chest_xray__mobilenet_v3_large"


def _set(df: pd.DataFrame, attack: str, key: str, eps: float, **values: object) -> None:
    """Set columns of the one row (attack, key, eps) in place."""
    hit = (df["attack"] == attack) & (df["defence_key"] == key) & (df["eps"] == eps)
    assert hit.sum() == 1
    for column, value in values.items():
        df.loc[hit, column] = pd.Series([value] * int(hit.sum()), index=df.index[hit])


def _large(df: pd.DataFrame, acc: dict[str, float]) -> pd.DataFrame:
    """``df`` plus PGD rows at ε = 16 for the given settings (accuracy per key)."""
    rows = df[(df["attack"] == "pgd") & (df["eps"] == 4) & df["defence_key"].isin(acc)].copy()
    rows["eps"] = 16.0
    rows["accuracy"] = rows["defence_key"].map(acc)
    return pd.concat([df, rows], ignore_index=True)


def _by(findings: list[Finding], check_id: str) -> list[Finding]:
    return [f for f in findings if f.check == check_id]


def _warnings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "warning"]


@pytest.fixture
def table() -> pd.DataFrame:
    """The hand-made table with 1000 images a cell, so that small gaps are not noise."""
    df = make_table(n_images=1000)
    for attack in ("fgsm", "pgd"):  # its 60 % clean -> 65 % at ε 4 would be a rise
        _set(df, attack, "nlm+median:kernel=3", 0.0, accuracy=0.7)
    return df


# --------------------------------------------------------------------------- a table that passes


def test_a_sound_table_has_only_its_baselines(table):
    found = check(table)
    assert _warnings(found) == []
    assert [f.check for f in found] == ["chance", "majority"]
    # ε stops at 8: too small to test for gradient masking, and it says so
    assert "largest ε in the table is 8, below 16" in found[0].message
    assert "Majority-class rate of the 50 test images: 50.0 %" in found[1].message
    assert check(table.iloc[0:0]) == []


def test_noise_is_not_a_finding():
    # nlm+median:kernel=3 goes 60 % clean -> 65 % at ε 4: within the noise of 50 images
    small = make_table(n_images=50)
    assert _by(check(small), "monotone") == []
    loud = check(small, {"tolerance": 0.01, "z": 0.0})
    (rise,) = _by(loud, "monotone")
    assert (rise.attack, rise.defence_key, rise.eps) == ("fgsm", "nlm+median:kernel=3", (0, 4))


# --------------------------------------------------------------------------- monotone


def test_accuracy_rising_with_eps_is_found(table):
    _set(table, "fgsm", "none", 8.0, accuracy=0.62)
    (f,) = _by(check(table), "monotone")
    assert (f.check, f.severity, f.chart) == ("monotone", "warning", CHART_EPS)
    assert (f.attack, f.defence_key, f.threat_model, f.eps) == (
        "fgsm",
        "none",
        THREAT_TRANSFER,
        (4, 8),
    )
    assert "rises from 30.0 % at ε = 4 to 62.0 % at ε = 8 (+32.0 points)" in f.message
    assert "use PGD" in f.message
    assert "62.0 %" in f.explanation and "strength 8" in f.explanation
    assert "trust the many-step attack (PGD)" in f.explanation


def test_an_iterative_attack_rising_is_not_told_to_use_pgd(table):
    _set(table, "pgd", "median:kernel=5", 4.0, accuracy=0.9)
    (f,) = _by(check(table), "monotone")
    assert f.attack == "pgd" and f.eps == (0, 4)
    assert "has not converged" in f.message and "use PGD" not in f.message


# --------------------------------------------------------------------------- iterative


def test_pgd_weaker_than_fgsm_without_a_defence_is_a_warning(table):
    _set(table, "pgd", "none", 4.0, accuracy=0.5)
    found = check(table)
    (f,) = _by(found, "iterative")
    assert (f.severity, f.attack, f.other_attack, f.defence_key) == (
        "warning",
        "pgd",
        "fgsm",
        "none",
    )
    assert f.eps == (4,)
    assert "PGD is weaker than FGSM" in f.message and "50.0 % correct against 30.0 %" in f.message
    assert "not run well enough" in f.explanation
    # beside the FGSM chart as well as the PGD one
    assert f.concerns(CHART_EPS, attack="fgsm", defence_keys=["none"])
    assert not f.concerns(CHART_EPS, attack="fgsm", defence_keys=["median:kernel=3"])


def test_pgd_weaker_than_fgsm_through_a_defence_under_transfer_is_explained(table):
    _set(table, "pgd", "median:kernel=3", 4.0, accuracy=0.8)
    (f,) = _by(check(table), "iterative")
    assert f.severity == "info" and f.defence_key == "median:kernel=3"
    assert "transfer worse" in f.message and "expected" in f.explanation


# --------------------------------------------------------------------------- adaptive


def _with_adaptive(table: pd.DataFrame, acc: float) -> pd.DataFrame:
    rows = table[(table["attack"] == "pgd") & (table["eps"] == 4)].copy()
    rows["threat_model"] = adaptive_label("BPDA identity", eot=4)
    rows.loc[rows["defence_key"] == "median:kernel=5", "accuracy"] = acc
    rows.loc[rows["defence_key"] != "median:kernel=5", "accuracy"] = 0.0
    return pd.concat([table, rows], ignore_index=True)


def test_an_adaptive_attack_stronger_than_transfer_passes(table):
    assert _by(check(_with_adaptive(table, 0.1)), "adaptive") == []


def test_an_adaptive_attack_weaker_than_transfer_is_found(table):
    (f,) = _by(check(_with_adaptive(table, 0.8)), "adaptive")
    assert (f.severity, f.attack, f.defence_key, f.eps) == (
        "warning",
        "pgd",
        "median:kernel=5",
        (4,),
    )
    assert f.threat_model == adaptive_label("BPDA identity", eot=4)
    assert "PGD adaptive (BPDA identity) is weaker than PGD transfer" in f.message
    assert "80.0 % correct against 60.0 %" in f.message
    assert "an attacker who knows the defence" in f.explanation


# --------------------------------------------------------------------------- chance


def test_a_large_eps_that_does_not_reach_chance_is_found(table):
    found = check(_large(table, {"none": 0.0, "median:kernel=3": 0.9}))
    (f,) = _by(found, "chance")
    assert (f.severity, f.attack, f.defence_key, f.eps) == (
        "warning",
        "pgd",
        "median:kernel=3",
        (16,),
    )
    assert "at the largest ε = 16 accuracy is still 90.0 %" in f.message
    assert "above the no-skill rate 50.0 %" in f.message
    assert "possible gradient masking" in f.message and "transfer gap" in f.message
    assert "90.0 %" in f.explanation and "strength 16" in f.explanation


def test_large_eps_reaching_chance_passes(table):
    found = check(_large(table, {"none": 0.0, "median:kernel=3": 0.45}))
    assert _by(found, "chance") == []
    (f,) = _by(check(_large(table, {"none": 0.2}), {"large_eps": 32}), "chance")
    assert f.severity == "info" and "below 32" in f.message


# --------------------------------------------------------------------------- majority & collapse

#: 150 NORMAL and 250 PNEUMONIA images: the majority-class rate is 62.5 %.
SKILLED = [[120, 30], [20, 230]]
COLLAPSED = [[0, 150], [1, 249]]
ON_THE_MINORITY = [[150, 0], [250, 0]]


def test_majority_rate_from_the_confusion_matrices(table):
    table["confusion"] = [SKILLED] * len(table)
    (f,) = _by(check(table, classes=["NORMAL", "PNEUMONIA"]), "majority")
    assert f.severity == "info" and f.eps == ()
    assert f.message.startswith(
        "Majority-class rate of the 400 test images: 62.5 % (PNEUMONIA, 250"
    )
    assert "always answers “PNEUMONIA” scores 62.5 %" in f.explanation
    assert f.concerns(CHART_EPS, attack="pgd", defence_keys=["none"])


def test_a_collapsed_confusion_matrix_is_found(table):
    table["confusion"] = [SKILLED] * len(table)
    _set(table, "fgsm", "jpeg:quality=50", 8.0, confusion=COLLAPSED, accuracy=0.622)
    _set(table, "fgsm", "median:kernel=5", 0.0, confusion=COLLAPSED)
    _set(table, "pgd", "median:kernel=5", 0.0, confusion=COLLAPSED)
    _set(table, "fgsm", "none", 8.0, confusion=ON_THE_MINORITY)  # scores 37.5 %: no flattery
    found = _by(check(table, classes=["NORMAL", "PNEUMONIA"]), "collapse")
    assert [(f.attack, f.defence_key, f.eps) for f in found] == [
        ("", "median:kernel=5", (0,)),  # clean rows: one finding, whatever the attack
        ("fgsm", "jpeg:quality=50", (8,)),
    ]
    clean, attacked = found
    assert clean.threat_model == THREAT_CLEAN and clean.chart == CHART_CONFUSION
    assert "on clean images: up to 99.8 % of the predictions are PNEUMONIA" in clean.message
    assert "when nobody attacks" in clean.explanation
    assert "under FGSM (transfer) at ε = 8" in attacked.message
    assert "accuracy 62.2 %, majority-class rate 62.5 %" in attacked.message
    assert "stopped it from looking" in attacked.explanation
    assert attacked.concerns(CHART_CONFUSION, attack="fgsm", defence_keys=["jpeg:quality=50"])
    # also beside the accuracy chart, where the flattering number is drawn
    assert attacked.concerns(CHART_EPS, attack="fgsm", defence_keys=["jpeg:quality=50"])
    assert not attacked.concerns(CHART_CONFUSION, attack="fgsm", eps=4)
    assert not attacked.concerns(CHART_CONFUSION, attack="pgd")
    assert clean.concerns(CHART_CONFUSION, attack="pgd", defence_keys=["median:kernel=5"])


# --------------------------------------------------------------------------- inputs and outputs


def test_json_cells_as_plain_pandas_reads_them():
    raw = pd.read_csv(CHEST / "results.csv")
    decoded, _ = load_results(CHEST, companion=False)  # the same file, JSON decoded
    assert check(raw) == check(decoded)


def test_findings_table(table):
    _set(table, "fgsm", "none", 8.0, accuracy=0.62)
    frame = sanity.findings_table(check(table))
    assert list(frame.columns) == [
        "check",
        "severity",
        "attack",
        "defence_key",
        "threat_model",
        "eps",
        "message",
    ]
    assert frame.loc[0, "check"] == CHECKS["monotone"].title
    assert frame.loc[0, "eps"] == "4, 8"


def test_names_come_from_the_caller(table):
    _set(table, "fgsm", "none", 8.0, accuracy=0.62)
    (f,) = _by(check(table, setting_name=str.upper, attack_name=lambda a: f"<{a}>"), "monotone")
    assert f.message.startswith("<fgsm>, NONE, transfer:")
    (f,) = _by(check(table), "monotone")
    assert f.message.startswith("FGSM, no defence, transfer:")


def test_bad_inputs():
    with pytest.raises(ParamError, match=r"need the column\(s\) accuracy, threat_model of"):
        check(pd.DataFrame({"attack": [], "eps": [], "defence_key": []}))
    with pytest.raises(
        ParamError, match=r"Sanity checks: 'tolerance' must be a number in \[0, 0.5\]"
    ):
        check(make_table(), {"tolerance": 2})
    bad = make_table()
    bad.loc[0, "threat_model"] = "white box"
    with pytest.raises(ParamError, match=r"Unknown threat-model label 'white box'"):
        check(bad)
    with pytest.raises(ParamError, match=r"Unknown sanity check 'nope'"):
        Finding("nope", "info", "", "", "", (), "m", "e")


def test_every_check_has_a_chart_and_a_reference():
    assert list(CHECKS) == ["monotone", "iterative", "adaptive", "chance", "majority", "collapse"]
    for c in CHECKS.values():
        assert c.chart in (CHART_EPS, CHART_CONFUSION) and c.title and c.reference


# --------------------------------------------------------------------------- the shipped table


def test_the_shipped_chest_fgsm_rise_is_found():
    df, manifest = load_results(CHEST)
    found = check(df, classes=manifest["model"]["classes"])
    rises = {(f.attack, f.defence_key): f for f in _by(found, "monotone")}
    f = rises["fgsm", "none"]
    assert f.eps == (2, 16)
    assert "accuracy rises from 0.0 % at ε = 2 to 49.4 % at ε = 16" in f.message
    assert "use PGD" in f.message
    # PGD on the undefended model falls to 0 % and stays there
    assert ("pgd", "none") not in rises
    (majority,) = _by(found, "majority")
    assert "62.5 % (PNEUMONIA, 390 of 624)" in majority.message
    # the seed chain scores the majority rate by calling (nearly) everything pneumonia
    assert any(
        c.defence_key == "nlm+bilateral+guided" and not c.attack for c in _by(found, "collapse")
    )


def test_an_adaptive_sweeps_undefended_rows_add_no_findings(table):
    """Through no defence the adaptive attack is the transfer one: its rows repeat nothing."""
    from engine.threat import adaptive_label

    _set(table, "fgsm", "none", 8.0, accuracy=0.62)  # a rise the monotone check reports
    before = check(table)
    none = table[(table["defence_key"] == "none") & (table["eps"] > 0)].copy()
    none["threat_model"] = adaptive_label("exact")
    after = check(pd.concat([table, none.assign(n_images=200)], ignore_index=True))
    assert after == before and any(f.check == "monotone" for f in after)
