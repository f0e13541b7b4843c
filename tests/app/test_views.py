"""app.views: the defence picker's options, headline, trade-off, on hand-made and shipped tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from app import views
from engine.errors import ParamError
from engine.evaluation import query
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER
from tests.engine.tables import ACC, make_table

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT_ROOT / "assets" / "results" / "chest_xray__mobilenet_v3_large"


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table()


# --------------------------------------------------------------------------- picker options


def test_settings_table_and_options(table):
    settings = views.settings_table(table)
    assert list(settings["defence_key"]) == list(ACC)
    none = settings.iloc[0]
    assert (none["family"], none["description"]) == ("none", "No defence")
    assert query.defence_families(table) == ["none", "median", "jpeg", "nlm", "nlm+median"]
    assert query.family_params(table, "median") == {"kernel": [3, 5]}

    options = views.defence_options(table)
    assert next(iter(options)) == "none"
    nlm = options["nlm"]
    assert nlm.title == "Non-local means"
    assert nlm.keys == ("nlm:h=5,h_color=5", "nlm:h=10,h_color=10")
    assert nlm.params == {"h": (5, 10), "h_color": (5, 10)}
    assert nlm.varying == ("h", "h_color")
    assert "lightness" in nlm.help["h"]  # from the defence's own Param declaration
    assert options["jpeg"].varying == ()  # one setting: nothing to slide
    assert options["nlm+median"].params == {"median.kernel": (3,)}


# --------------------------------------------------------------------------- headline & trade-off


def test_headline_on_the_hand_made_table(table):
    h = views.headline(table, attack="fgsm", eps=8)
    assert h["clean_accuracy"] == pytest.approx(0.90)
    assert h["attacked_accuracy"] == pytest.approx(0.10)
    assert h["drop"] == pytest.approx(0.80)
    assert h["best_key"] == "median:kernel=5"
    assert h["best_label"] == "Median kernel=5"
    assert h["best_accuracy"] == pytest.approx(0.50)
    assert h["recovered"] == pytest.approx(0.40)
    assert h["best_clean_accuracy"] == pytest.approx(0.70)
    assert h["best_clean_cost"] == pytest.approx(0.20)
    assert h["n_images"] == 50
    assert h["threat_model"] == {"clean": THREAT_CLEAN, "attacked": THREAT_TRANSFER}
    assert h["note"] == ""


def test_headline_tie_goes_to_the_cheaper_defence(table):
    # at eps 4, median:kernel=5 and the chain both reach 0.65; median costs 0.20, the chain 0.30
    h = views.headline(table, attack="fgsm", eps=4)
    assert h["best_key"] == "median:kernel=5"
    assert h["recovered"] == pytest.approx(0.35)


def test_headline_maps_eps(table):
    h = views.headline(table, attack="pgd", eps=10)
    assert (h["eps"], h["requested_eps"]) == (4.0, 10.0)
    assert h["note"] == "ε 10 is not precomputed; showing ε 4 (nearest)"
    assert h["attacked_accuracy"] == pytest.approx(0.25)


def test_tradeoff_table_signs(table):
    t = views.tradeoff_table(table, attack="fgsm", eps=8).set_index("defence_key")
    assert "none" not in t.index
    assert len(t) == len(ACC) - 1
    median5 = t.loc["median:kernel=5"]
    assert median5["clean_cost"] == pytest.approx(0.20)  # costs accuracy on clean images
    assert median5["recovered"] == pytest.approx(0.40)  # wins it back under attack
    jpeg = t.loc["jpeg:quality=50"]
    assert jpeg["clean_cost"] == pytest.approx(0.02)
    assert jpeg["recovered"] == pytest.approx(-0.05)  # worse than nothing under attack
    assert (t["undefended_attacked_accuracy"] == 0.10).all()
    ordered = views.tradeoff_table(table, attack="fgsm", eps=8)
    assert ordered["recovered"].is_monotonic_decreasing
    assert ordered.iloc[0]["defence_key"] == "median:kernel=5"
    assert ordered.attrs == {"eps": 8.0, "note": "", "attack": "fgsm"}


# --------------------------------------------------------------------------- shipped results


def test_shipped_chest_xray_results():
    if not (SHIPPED / "results.csv").is_file():
        pytest.skip(f"{SHIPPED} is absent")
    from engine.evaluation import load_results

    table, manifest = load_results(SHIPPED)
    assert query.has_patient_view(table)
    assert manifest["model"]["positive"] == ["PNEUMONIA"]
    h = views.headline(table, attack="fgsm", eps=4)
    clean = table[(table["eps"] == 0) & (table["defence_key"] == "none")]["accuracy"].iloc[0]
    assert h["clean_accuracy"] == pytest.approx(clean)
    assert h["n_images"] == int(manifest["data"]["n_images"])
    trade = views.tradeoff_table(table, attack="fgsm", eps=4)
    best = trade.sort_values("attacked_accuracy").iloc[-1]["defence_key"]
    assert h["transfer_best_key"] == best
    assert (h["best_by"] == "adaptive") == (h["adaptive"] is not None)
    if h["adaptive"] is None:
        assert h["best_key"] == best
    options = views.defence_options(table)
    assert options["guided"].varying == ("radius", "eps")
    assert "nlm+bilateral+guided" in options


def test_views_labels_and_charts_do_not_load_tensorflow():
    code = (
        "import sys, app.views, app.charts, app.labels, engine.evaluation.query; "
        "top = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(top & {'tensorflow', 'keras', 'streamlit'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the lab's setting

TINY = PROJECT_ROOT / "assets" / "results" / "synthetic__tiny"


@pytest.fixture(scope="module")
def grid() -> pd.DataFrame:
    """The shipped synthetic sweep: every defence family, WebP + flip at quality 50/75/90."""
    from engine.evaluation import load_results

    return load_results(TINY)[0]


def _spec(defence_id: str, **params):
    """A live defence as the lab sends it: every declared parameter, defaults filled in."""
    from engine import defences as dfn

    return dfn.to_spec(dfn.make_defence(defence_id, params))


def test_every_precomputed_setting_maps_to_itself(grid):
    for key in query.defence_keys(grid):
        assert views.setting_for(grid, query.defence_spec(grid, key), attack="fgsm") == (key, "")


def test_a_value_between_grid_points_maps_to_the_nearest_setting_and_says_which(grid):
    # the lab's spec names flip too, which no key names: this used to raise
    assert views.setting_for(grid, _spec("webp_flip", quality=80), attack="fgsm") == (
        "webp_flip:quality=75",
        "quality 80 is not precomputed; showing quality 75 (nearest)",
    )
    assert views.setting_for(grid, _spec("webp_flip", quality=84), attack="fgsm") == (
        "webp_flip:quality=90",
        "quality 84 is not precomputed; showing quality 90 (nearest)",
    )
    # the same answer as the recap's sliders for the parameters the keys name
    for defence_id, params in [
        ("webp_flip", {"quality": 60}),
        ("guided", {"radius": 3, "eps": 400.0}),
        ("median", {"kernel": 7}),
        ("nlm", {"h": 7.0, "h_color": 12.0}),
    ]:
        row, note = query.nearest_setting(
            grid, attack="fgsm", eps=0, defence_family=defence_id, params=params
        )
        assert views.setting_for(grid, _spec(defence_id, **params), attack="fgsm") == (
            row["defence_key"],
            note,
        )


def test_a_parameter_the_table_does_not_vary(grid):
    # a switch: flip off is another defence, not a nearby one
    assert views.setting_for(grid, _spec("webp_flip", quality=90, flip=False), attack="fgsm") == (
        None,
        "WebP + flip has no precomputed setting with flip off (precomputed: flip on)",
    )
    # a number: the nearest setting, saying what differs
    assert views.setting_for(grid, _spec("nlm", template_window=5), attack="fgsm") == (
        "nlm:h=10,h_color=10",
        "template_window 5 is not precomputed; showing template_window 7 (nearest)",
    )


def test_a_switch_picks_the_settings_that_share_it(grid):
    """With a flip-off setting in the table, flip off maps there and flip on does not."""
    extra = grid[grid["defence_key"] == "webp_flip:quality=50"].copy()
    spec = {"id": "webp_flip", "params": {"quality": 50, "flip": False}}
    extra["defence_key"] = "webp_flip:quality=50,flip=false"
    extra["defence_params"] = [spec] * len(extra)
    table = pd.concat([grid, extra], ignore_index=True)
    assert views.setting_for(table, _spec("webp_flip", quality=90, flip=False), attack="fgsm") == (
        "webp_flip:quality=50,flip=false",
        "quality 90 is not precomputed; showing quality 50 (nearest)",
    )
    assert views.setting_for(table, _spec("webp_flip", quality=55), attack="fgsm") == (
        "webp_flip:quality=50",
        "quality 55 is not precomputed; showing quality 50 (nearest)",
    )


def test_a_chain_with_one_member_off_the_grid(grid):
    from engine import defences as dfn

    chain = dfn.to_spec(dfn.seed_chain())
    assert views.setting_for(grid, chain, attack="fgsm") == ("nlm+bilateral+guided", "")
    chain[0]["params"] |= {"h": 7.0}
    assert views.setting_for(grid, chain, attack="fgsm") == (
        "nlm+bilateral+guided",
        "nlm.h 7 is not precomputed; showing nlm.h 10 (nearest)",
    )
    chain[2]["params"] |= {"radius": 6}
    key, note = views.setting_for(grid, chain, attack="fgsm")
    assert key == "nlm+bilateral+guided"
    assert note.endswith("; guided.radius 6 is not precomputed; showing guided.radius 4 (nearest)")


def test_a_family_not_in_the_table(grid):
    without = grid[grid["defence"] != "bit_depth"]  # the adaptive sweep has it
    assert views.setting_for(without, _spec("bit_depth"), attack="fgsm") == (
        None,
        "Bit-depth reduction is not in the precomputed grid",
    )
    reordered = [_spec("bilateral"), _spec("nlm"), _spec("guided")]  # another order: another chain
    assert views.setting_for(grid, reordered, attack="fgsm") == (
        None,
        "Bilateral → NLM → Guided is not in the precomputed grid",
    )
    assert views.setting_for(grid, None, attack="fgsm") == ("none", "")
    assert views.setting_for(grid, [], attack="fgsm") == ("none", "")
    with pytest.raises(ParamError, match="Unknown attack 'cw'"):
        views.setting_for(grid, _spec("median"), attack="cw")
    with pytest.raises(ParamError, match="'quality' must be"):
        views.setting_for(grid, {"id": "webp_flip", "params": {"quality": 0}}, attack="fgsm")


# --------------------------------------------------------------------------- both threat models


def _with_adaptive(
    table: pd.DataFrame,
    accs: dict[str, float],
    *,
    n: int = 200,
    confusion: dict[str, list[list[int]]] | None = None,
) -> pd.DataFrame:
    """``table`` plus adaptive FGSM ε 8 rows (``n`` images) of the settings in ``accs``."""
    from engine.threat import adaptive_label

    # four classes on clean images: the no-skill (majority-class) rate is 13 / 50 = 26 %
    table = table.copy()
    clean = (table["attack"] == "fgsm") & (table["eps"] == 0) & (table["defence_key"] == "none")
    four = [[13, 0, 0, 0], [0, 12, 0, 0], [0, 0, 13, 0], [0, 0, 0, 12]]
    table.loc[clean, "confusion"] = pd.Series([four] * int(clean.sum()), index=table.index[clean])
    src = table[(table["attack"] == "fgsm") & (table["eps"] == 8)].set_index("defence_key")
    rows = []
    for key, acc in accs.items():
        row = src.loc[key].to_dict() | {"defence_key": key, "accuracy": acc, "n_images": n}
        row["threat_model"] = adaptive_label("exact" if key == "none" else "bpda-identity")
        if confusion and key in confusion:
            row["confusion"] = confusion[key]
        rows.append(row)
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def test_headline_chooses_the_best_defence_by_the_adaptive_number(table):
    # transfer: median:kernel=5 is best (0.50); adaptive: it falls to 0.08, kernel 3 keeps 0.38
    df = _with_adaptive(table, {"none": 0.10, "median:kernel=5": 0.08, "median:kernel=3": 0.38})
    h = views.headline(df, attack="fgsm", eps=8)
    assert h["best_by"] == "adaptive"
    assert (h["transfer_best_key"], h["transfer_best_accuracy"]) == ("median:kernel=5", 0.50)
    assert h["best_key"] == "median:kernel=3"
    assert h["best_accuracy"] == pytest.approx(0.40)  # its transfer number, beside
    a = h["adaptive"]
    assert a is not None and a["best_key"] == "median:kernel=3"
    assert (a["accuracy"], a["undefended_accuracy"], a["n_images"]) == (0.38, 0.10, 200)
    assert a["recovered"] == pytest.approx(0.28)
    assert a["no_skill_rate"] == pytest.approx(0.26) and not a["at_chance"]
    assert a["transfer_accuracy"] == pytest.approx(0.40)
    assert a["transfer_best_accuracy"] == pytest.approx(0.08)
    assert a["holds"] and not a["collapsed"]
    said = " ".join(views.headline_sentences(h, "FGSM"))
    assert "**30.0 points** against an attacker who does not know" in said
    assert "28.0 points** against one who does" in said
    assert "Median(kernel=5)" in said or "kernel=5" in said  # the transfer best that falls
    assert "8.0%" in said


def test_a_gain_that_vanishes_under_the_adaptive_attack_does_not_hold(table):
    df = _with_adaptive(table, {"none": 0.40, "median:kernel=5": 0.41, "median:kernel=3": 0.35})
    h = views.headline(df, attack="fgsm", eps=8)
    a = h["adaptive"]
    assert a is not None and a["best_key"] == "median:kernel=5"
    assert not a["holds"]  # +1 point on 200 images is inside the sampling noise
    assert "no defence keeps a gain" in " ".join(views.headline_sentences(h, "FGSM"))


def test_an_adaptive_accuracy_from_one_predicted_class_is_a_collapse(table):
    df = _with_adaptive(
        table,
        {"none": 0.10, "median:kernel=5": 0.50},
        confusion={"median:kernel=5": [[0, 20], [0, 30]]},
    )
    a = views.headline(df, attack="fgsm", eps=8)["adaptive"]
    assert a is not None and a["collapsed"] and not a["holds"]
    said = views.headline_sentences(views.headline(df, attack="fgsm", eps=8), "FGSM")
    assert "no defence keeps any skill" in said[0]
    assert "nearly every image the same answer, the most common class" in said[0]


def test_without_adaptive_rows_the_headline_says_it_is_an_upper_bound(table):
    h = views.headline(table, attack="fgsm", eps=8)
    assert h["adaptive"] is None and h["best_by"] == "transfer"
    assert h["best_key"] == h["transfer_best_key"] == "median:kernel=5"
    said = " ".join(views.headline_sentences(h, "FGSM"))
    assert "does not know the defence" in said and "upper bound" in said


def test_tradeoff_table_per_threat_model(table):
    df = _with_adaptive(table, {"none": 0.12, "median:kernel=3": 0.30})
    adaptive = views.tradeoff_table(df, attack="fgsm", eps=8, threat="adaptive")
    row = adaptive.set_index("defence_key").loc["median:kernel=3"]
    # recovered against the adaptive sweep's own undefended row
    assert row["undefended_attacked_accuracy"] == pytest.approx(0.12)
    assert row["recovered"] == pytest.approx(0.18)
    assert row["clean_cost"] == pytest.approx(0.05)  # clean rows shared by both threat models
    transfer = views.tradeoff_table(df, attack="fgsm", eps=8)
    assert transfer.set_index("defence_key").loc["median:kernel=3", "recovered"] == pytest.approx(
        0.30
    )
    with pytest.raises(ParamError, match="threat model"):
        views.tradeoff_table(df, attack="fgsm", eps=8, threat="psychic")


def test_threat_comparison_pairs_each_setting_under_both_threat_models(table):
    df = _with_adaptive(table, {"none": 0.12, "median:kernel=3": 0.30})
    t = views.threat_comparison(df, attack="fgsm", eps=[8])
    assert list(t["defence_key"]) == ["none", "median:kernel=3"]
    row = t.set_index("defence_key").loc["median:kernel=3"]
    assert (row["transfer"], row["adaptive"]) == (0.40, 0.30)
    assert row["drop"] == pytest.approx(0.10)
    assert (row["n_transfer"], row["n_adaptive"]) == (50, 200)
    assert views.threat_comparison(table, attack="fgsm", eps=[8]).empty  # transfer only
    with pytest.raises(ParamError, match="not precomputed"):
        views.threat_comparison(df, attack="fgsm", eps=[5])


def test_a_collapsed_setting_is_not_the_best_while_a_skilled_one_exists(table):
    df = _with_adaptive(
        table,
        {"none": 0.10, "median:kernel=5": 0.60, "median:kernel=3": 0.38},
        confusion={"median:kernel=5": [[0, 20], [0, 30]]},
    )
    a = views.headline(df, attack="fgsm", eps=8)["adaptive"]
    assert a is not None and a["best_key"] == "median:kernel=3"
    assert a["holds"] and not a["collapsed"]


def test_an_adaptive_accuracy_at_the_no_skill_rate_does_not_hold(table):
    # 28 % on 200 images is within the noise of always giving the commonest answer (26 %)
    df = _with_adaptive(table, {"none": 0.02, "median:kernel=3": 0.28})
    h = views.headline(df, attack="fgsm", eps=8)
    a = h["adaptive"]
    assert a is not None and a["at_chance"] and not a["holds"] and not a["collapsed"]
    said = " ".join(views.headline_sentences(h, "FGSM"))
    assert "no better than always giving the most common answer (26.0%" in said


def test_without_any_skill_the_headline_follows_the_transfer_best_and_claims_no_gain(table):
    # adaptive: median 3 collapses onto one class (its 26 % is the majority rate); the
    # transfer best, median 5, falls to 8 %: no setting keeps any skill
    df = _with_adaptive(
        table,
        {"none": 0.02, "median:kernel=5": 0.08, "median:kernel=3": 0.26},
        confusion={"median:kernel=3": [[13, 0, 0, 0], [12, 0, 0, 0], [13, 0, 0, 0], [12, 0, 0, 0]]},
    )
    h = views.headline(df, attack="fgsm", eps=8)
    a = h["adaptive"]
    assert a is not None and not a["skill"] and not a["holds"]
    assert h["best_key"] == a["best_key"] == h["transfer_best_key"] == "median:kernel=5"
    assert a["accuracy"] == pytest.approx(0.08)
    assert (a["highest_label"], a["highest_accuracy"], a["highest_collapsed"]) == (
        views.setting_label("median:kernel=3"),
        pytest.approx(0.26),
        True,
    )
    said = views.headline_sentences(h, "FGSM")
    assert "no defence keeps any skill" in said[0] and "wins back" not in " ".join(said)
    assert "falls to **8.0%**" in said[-1]
