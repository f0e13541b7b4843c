"""app.views: the defence picker's options, headline, trade-off, on hand-made and shipped tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from app import views
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
    assert h["best_key"] == trade.sort_values("attacked_accuracy").iloc[-1]["defence_key"]
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
