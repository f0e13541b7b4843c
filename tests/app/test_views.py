"""app.views: defence keys, nearest settings, headline, trade-off and flipped images."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from app import views
from engine.errors import ParamError
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT_ROOT / "assets" / "results" / "chest_xray__mobilenet_v3_large"

#: Hand-made accuracies: defence key -> {eps: accuracy} for FGSM (PGD has eps 0 and 4 only).
ACC = {
    "none": {0: 0.90, 4: 0.30, 8: 0.10},
    "median:kernel=3": {0: 0.85, 4: 0.60, 8: 0.40},
    "median:kernel=5": {0: 0.70, 4: 0.65, 8: 0.50},
    "jpeg:quality=50": {0: 0.88, 4: 0.50, 8: 0.05},
    "nlm:h=5,h_color=5": {0: 0.80, 4: 0.55, 8: 0.30},
    "nlm:h=10,h_color=10": {0: 0.75, 4: 0.58, 8: 0.35},
    "nlm+median:kernel=3": {0: 0.60, 4: 0.65, 8: 0.45},
}
LABELS = {
    "none": float("nan"),  # pandas reads the CSV's "None" label as NaN
    "median:kernel=3": "Median(kernel=3)",
    "median:kernel=5": "Median(kernel=5)",
    "jpeg:quality=50": "JPEG(quality=50)",
    "nlm:h=5,h_color=5": "NLM(h=5, h_color=5, template_window=7, search_window=21)",
    "nlm:h=10,h_color=10": "NLM(h=10, h_color=10, template_window=7, search_window=21)",
    "nlm+median:kernel=3": "NLM(...) → Median(kernel=3)",
}


def make_table(*, patient: bool = True, n_images: int = 50) -> pd.DataFrame:
    """A small results table shaped like results.csv (JSON columns decoded)."""
    rows = []
    for attack, eps_list in (("fgsm", (0, 4, 8)), ("pgd", (0, 4))):
        for eps in eps_list:
            for key, accs in ACC.items():
                acc = accs[eps] if attack == "fgsm" else accs[eps] - (0.05 if eps else 0)
                nan = math.nan
                rows.append(
                    {
                        "dataset": "toy",
                        "split": "test",
                        "model": "toy__m",
                        "backbone": "m",
                        "attack": attack,
                        "attack_params": {"eps": float(eps)},
                        "eps": float(eps),
                        "defence": views.parse_defence_key(key)[0],
                        "defence_key": key,
                        "defence_label": LABELS[key],
                        "defence_params": {},
                        "threat_model": THREAT_TRANSFER if eps else THREAT_CLEAN,
                        "n_images": n_images,
                        "accuracy": acc,
                        "macro_recall": acc - 0.05,
                        "macro_specificity": acc,
                        "recall_per_class": [acc, acc],
                        "specificity_per_class": [acc, acc],
                        "confusion": [[20, 5], [3, 22]],
                        "fooling_rate": max(0.0, 1 - acc / 0.9),
                        "mean_confidence": 0.9,
                        "true_class_confidence": acc,
                        "confusion_binary": [[20, 5], [3, 22]] if patient else None,
                        "patient_accuracy": acc if patient else nan,
                        "sensitivity": min(1.0, acc + 0.05) if patient else nan,
                        "specificity": acc if patient else nan,
                        "npv": acc - 0.1 if patient else nan,
                        "ppv": acc if patient else nan,
                        "fnr": 1 - min(1.0, acc + 0.05) if patient else nan,
                        "pert_l2_mean": 10.0 * eps,
                        "pert_l2_max": 10.0 * eps,
                        "pert_linf_mean": float(eps),
                        "pert_linf_max": float(eps),
                        "psnr_mean": math.inf if key == "none" and eps == 0 else 30.0,
                        "ssim_mean": 1.0 if key == "none" and eps == 0 else 0.9,
                        "seconds": 0.1,
                        "attack_seconds": 0.0,
                    }
                )
    return pd.DataFrame(rows)


def make_per_image() -> pd.DataFrame:
    """6 images; FGSM eps 4 flips images 0, 1 and 2; median:kernel=3 restores 0 and 2."""
    labels = [0, 1, 0, 1, 0, 1]
    correct = {
        (0.0, "none"): [1, 1, 1, 1, 1, 0],
        (4.0, "none"): [0, 0, 0, 1, 1, 0],
        (4.0, "median:kernel=3"): [1, 0, 1, 1, 1, 0],
    }
    rows = []
    for (eps, key), ok in correct.items():
        for i, (label, c) in enumerate(zip(labels, ok, strict=True)):
            pred = label if c else 1 - label
            rows.append(
                {
                    "image_index": 10 + i,
                    "ref": f"img{i}.png",
                    "true_label": label,
                    "attack": "fgsm",
                    "eps": eps,
                    "defence": key.split(":")[0],
                    "defence_key": key,
                    "pred": pred,
                    "correct": bool(c),
                    "confidence": 0.9,
                    "true_confidence": 0.9 if c else 0.1,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def table() -> pd.DataFrame:
    return make_table()


# --------------------------------------------------------------------------- registry


def test_metric_registry_covers_the_recap_columns():
    wanted = [
        "accuracy",
        "macro_recall",
        "macro_specificity",
        "fooling_rate",
        "mean_confidence",
        "patient_accuracy",
        "sensitivity",
        "specificity",
        "npv",
        "ppv",
        "fnr",
        "psnr_mean",
        "ssim_mean",
        "pert_linf_mean",
        "pert_l2_mean",
    ]
    assert set(wanted) <= set(views.METRICS)
    assert next(iter(views.METRICS)) == "accuracy"
    _label, higher, patient, help_text, unit = views.METRICS["fnr"]
    assert (higher, patient, unit) == (False, True, "share") and "sick" in help_text
    assert views.METRICS["fooling_rate"].higher_is_better is False
    assert views.METRICS["psnr_mean"].unit == "dB"
    assert all(views.METRICS[m].patient for m in views.PATIENT_PANEL)
    assert not any(views.METRICS[m].patient for m in views.MODEL_PANEL)
    # every registry metric is a column of the results table
    assert set(views.METRICS) <= set(make_table().columns)


def test_format_metric():
    assert views.format_metric("accuracy", 0.8189) == "81.9 %"
    assert views.format_metric("psnr_mean", math.inf) == "∞ dB (identical)"
    assert views.format_metric("npv", math.nan) == "n/a"
    assert views.format_metric("pert_linf_mean", 4) == "4.0 levels"


def test_check_metric_names_the_allowed_ones():
    with pytest.raises(ParamError, match=r"Unknown metric 'acc'; known: accuracy, macro_recall"):
        views.check_metric("acc")


# --------------------------------------------------------------------------- defence keys


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
    assert views.parse_defence_key(key) == (family, params)


def test_parse_defence_key_rejects_malformed_keys():
    with pytest.raises(ParamError, match=r"'nlm:h' is malformed.*got the part 'h'"):
        views.parse_defence_key("nlm:h")
    with pytest.raises(ParamError, match="non-empty string"):
        views.parse_defence_key("")


def test_labels_and_titles():
    assert views.setting_label("none") == "No defence"
    assert views.setting_label("nlm:h=5,h_color=5") == "NLM h=5, h_color=5"
    assert views.setting_label("nlm+bilateral+guided") == "NLM → Bilateral → Guided"
    assert views.family_title("median") == "Median blur"
    assert views.family_title("nlm+median") == "NLM → Median"


def test_settings_table_and_options(table):
    settings = views.settings_table(table)
    assert list(settings["defence_key"]) == list(ACC)
    none = settings.iloc[0]
    assert (none["family"], none["description"]) == ("none", "No defence")
    assert views.defence_families(table) == ["none", "median", "jpeg", "nlm", "nlm+median"]
    assert views.family_params(table, "median") == {"kernel": [3, 5]}

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


def test_unknown_family_names_the_known_ones(table):
    with pytest.raises(ParamError, match=r"Unknown defence family 'bm3d'; this table has: none"):
        views.family_params(table, "bm3d")


# --------------------------------------------------------------------------- nearest setting


def test_nearest_setting_exact_has_no_note(table):
    row, note = views.nearest_setting(table, attack="fgsm", eps=4)
    assert note == ""
    assert (row["defence_key"], row["eps"], row["accuracy"]) == ("none", 4.0, 0.30)


def test_nearest_setting_maps_eps_and_says_so(table):
    row, note = views.nearest_setting(table, attack="fgsm", eps=5)
    assert row["eps"] == 4.0
    assert note == "ε 5 is not precomputed; showing ε 4 (nearest)"
    row, note = views.nearest_setting(table, attack="fgsm", eps=6)  # tie: the stronger attack
    assert row["eps"] == 8.0 and "showing ε 8" in note
    row, note = views.nearest_setting(table, attack="pgd", eps=8)  # PGD stops at 4
    assert row["eps"] == 4.0 and note == "ε 8 is not precomputed; showing ε 4 (nearest)"


def test_nearest_setting_maps_parameters(table):
    row, note = views.nearest_setting(
        table, attack="fgsm", eps=8, defence_family="nlm", params={"h": 7}
    )
    assert row["defence_key"] == "nlm:h=5,h_color=5"
    assert note == "h 7 is not precomputed; showing h 5 (nearest)"
    row, note = views.nearest_setting(
        table, attack="fgsm", eps=3, defence_family="median", params={"kernel": 5}
    )
    assert row["defence_key"] == "median:kernel=5" and row["eps"] == 4.0
    assert note == "ε 3 is not precomputed; showing ε 4 (nearest)"
    row, note = views.nearest_setting(table, attack="fgsm", eps=0, defence_family="median")
    assert row["defence_key"] == "median:kernel=3" and note == ""  # params free: first one


def test_nearest_setting_errors(table):
    with pytest.raises(ParamError, match=r"Unknown attack 'cw'; this table has: fgsm, pgd"):
        views.nearest_setting(table, attack="cw", eps=4)
    with pytest.raises(ParamError, match=r"Median blur has no parameter 'sigma'.*: kernel"):
        views.nearest_setting(
            table, attack="fgsm", eps=4, defence_family="median", params={"sigma": 1}
        )
    with pytest.raises(ParamError, match=r"eps must be a number in \[0, 255\]; got -1"):
        views.nearest_setting(table, attack="fgsm", eps=-1)


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


# --------------------------------------------------------------------------- flipped images


def test_flipped_images():
    per_image = make_per_image()
    out = views.flipped_images(
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
        views.flipped_images(per_image, attack="fgsm", eps=4, defence_key="jpeg")
    with pytest.raises(ParamError, match=r"Unknown attack 'pgd'; this table has: fgsm"):
        views.flipped_images(per_image, attack="pgd", eps=4, defence_key="none")


# --------------------------------------------------------------------------- shipped results


def test_shipped_chest_xray_results():
    if not (SHIPPED / "results.csv").is_file():
        pytest.skip(f"{SHIPPED} is absent")
    from engine.evaluation import load_results

    table, manifest = load_results(SHIPPED)
    assert views.has_patient_view(table)
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


def test_views_and_charts_do_not_load_tensorflow():
    code = (
        "import sys, app.views, app.charts; "
        "top = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(top & {'tensorflow', 'keras', 'streamlit'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
