"""Engine pieces the dashboard pages lean on: wipe, live sweeps, demo case, report, cards."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import cards, views
from app.report import REPORT_PARTS, robustness_report
from engine.bundle import read_meta
from engine.defences import from_spec
from engine.errors import ImageError, ParamError
from engine.evaluation.results import load_results
from engine.images import wipe
from engine.threat import adaptive_label

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets" / "models" / "chest_xray__mobilenet_v3_large"
RESULTS = ROOT / "assets" / "results" / "chest_xray__mobilenet_v3_large"


@pytest.fixture(scope="module")
def chest() -> tuple[pd.DataFrame, dict]:
    return load_results(RESULTS)


@pytest.fixture(scope="module")
def chest_per_image() -> pd.DataFrame:
    # per_image.csv.gz (a format-1 folder has per_image.csv); pandas reads either
    return pd.read_csv(sorted(RESULTS.glob("per_image.csv*"))[-1])


# --------------------------------------------------------------------------- wipe


def _pair(h: int = 6, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    before = np.full((h, w, 3), 10, np.uint8)
    after = np.full((h, w, 3), 200, np.uint8)
    before[:, :, 1] = np.arange(w, dtype=np.uint8)  # make columns distinguishable
    return before, after


def test_wipe_splits_before_and_after_with_a_white_line():
    before, after = _pair()
    out = wipe(before, after, 0.5)
    assert out.shape == before.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :4], before[:, :4])
    assert (out[:, 4] == 255).all()  # the line is the last column of the left part
    np.testing.assert_array_equal(out[:, 5:], after[:, 5:])
    # the inputs are not modified
    assert (after == 200).all() and before[0, 4, 0] == 10


def test_wipe_ends_have_no_line():
    before, after = _pair()
    np.testing.assert_array_equal(wipe(before, after, 0.0), after)
    np.testing.assert_array_equal(wipe(before, after, 1.0), before)


def test_wipe_accepts_grey_images():
    out = wipe(np.zeros((4, 4), np.uint8), np.full((4, 4), 9, np.uint8), 0.25)
    assert out.shape == (4, 4, 3)
    assert (out[:, 0] == 255).all() and (out[:, 1:] == 9).all()


@pytest.mark.parametrize("position", [-0.1, 1.5])
def test_wipe_position_out_of_range(position):
    before, after = _pair()
    with pytest.raises(ParamError, match=r"wipe: position must be in \[0, 1\]"):
        wipe(before, after, position)


def test_wipe_shape_mismatch():
    with pytest.raises(ImageError, match=r"wipe: images differ in shape \(\(6, 10, 3\) vs"):
        wipe(_pair()[0], np.zeros((6, 11, 3), np.uint8), 0.5)


# --------------------------------------------------------------------------- live parameter sweeps


def test_live_param_settings_use_the_stored_specs(chest):
    df, _ = chest
    settings = views.live_param_settings(df, family="nlm", param="h")
    values = [v for v, _ in settings]
    assert values == [3, 5, 10, 15]
    stored = dict(zip(df["defence_key"], df["defence_params"], strict=True))
    for value, spec in settings:
        key = f"nlm:h={value},h_color={value}"
        assert spec == stored[key]


def test_live_param_settings_midpoints(chest):
    df, _ = chest
    settings = views.live_param_settings(df, family="nlm", param="h", midpoints=True)
    values = [v for v, _ in settings]
    assert values == sorted(values)
    assert values == [3, 4, 5, 8, 10, 12, 15]  # integer midpoints, rounded
    mids = dict(settings)
    # h_color is tied to h in the table, so it moves with it
    assert mids[4]["params"]["h"] == 4 and mids[4]["params"]["h_color"] == 4
    for _, spec in settings:
        from_spec(spec)  # every spec is valid


def test_live_param_settings_float_midpoints(chest):
    df, _ = chest
    values = [v for v, _ in views.live_param_settings(df, family="gaussian", param="sigma")]
    with_mid = views.live_param_settings(df, family="gaussian", param="sigma", midpoints=True)
    assert [v for v, _ in with_mid] == [0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]
    assert len(with_mid) == 2 * len(values) - 1


def test_live_param_settings_drop_invalid_midpoints(chest):
    df, _ = chest
    # the only midpoint of kernel 3 and 5 is 4: median kernels must be odd
    assert [v for v, _ in views.live_param_settings(df, family="median", param="kernel")] == [3, 5]
    with_mid = views.live_param_settings(df, family="median", param="kernel", midpoints=True)
    assert [v for v, _ in with_mid] == [3, 5]


@pytest.mark.parametrize(
    ("family", "param", "match"),
    [
        ("nope", "h", "Unknown defence family 'nope'"),
        ("nlm", "kernel", "has no parameter 'kernel' in this table"),
    ],
)
def test_live_param_settings_errors(chest, family, param, match):
    with pytest.raises(ParamError, match=match):
        views.live_param_settings(chest[0], family=family, param=param)


# --------------------------------------------------------------------------- demo case


def test_demo_case_is_the_headline_best_and_restores_flipped_images(chest, chest_per_image):
    df, _ = chest
    case = views.demo_case(df, chest_per_image, attack="fgsm", eps=8.0)
    assert case is not None
    h = views.headline(df, attack="fgsm", eps=8.0)
    assert case.defence_key == h["best_key"]
    assert case.defence_label == h["best_label"]
    assert case.eps == h["eps"] == 8.0
    from_spec(case.defence_spec)
    assert case.restored, "the shipped run has images the best defence restores"

    pi = chest_per_image.set_index(["attack", "eps", "defence_key", "image_index"])["correct"]
    for i in case.restored:
        assert pi[("fgsm", 0.0, "none", i)]  # right on the clean image
        assert not pi[("fgsm", 8.0, "none", i)]  # flipped by the attack
        assert pi[("fgsm", 8.0, case.defence_key, i)]  # restored by the defence


def test_demo_case_without_per_image_records(chest):
    case = views.demo_case(chest[0], None, attack="pgd", eps=5)
    assert case is not None and case.restored == []
    assert case.eps == 4.0  # the nearest precomputed budget


def test_demo_case_without_defences(chest):
    df = chest[0]
    assert views.demo_case(df[df["defence_key"] == "none"], None) is None


# --------------------------------------------------------------------------- report


@pytest.mark.parametrize("parts", [["headline", "tradeoff"], ["confusion"], ["sanity"]])
def test_robustness_report_has_only_the_chosen_parts(chest, parts):
    df, manifest = chest
    html_text = robustness_report(
        df=df,
        manifest=manifest,
        meta=read_meta(MODEL),
        title="Test report",
        parts=parts,
        generated_at="2024-01-01",
    )
    headings = {
        "headline": "Headline numbers",
        "accuracy": "Accuracy against attack strength",
        "two_panel": "Model and patient view",
        "tradeoff": "Defence trade-off",
        "threats": "What each defence keeps when the attacker knows it",
        "models": "Model-level defences (training-time)",
        "confusion": "Confusion matrices under attack",
        "sanity": "Sanity checks of the results",
        "example": "A live example",
    }
    assert set(headings) == set(REPORT_PARTS)
    for part, heading in headings.items():
        present = f"<h2>{heading}</h2>" in html_text
        assert present == (part in parts), part
    assert "Test report" in html_text


def _sections(html_text: str) -> dict[str, str]:
    """Each report section's HTML by its heading."""
    parts = re.findall(
        r'<section class="page" id="section-\d+">\n<h2>(.*?)</h2>(.*?)</section>', html_text, re.S
    )
    return dict(parts)


def test_robustness_report_puts_the_sanity_findings_beside_their_charts(chest):
    df, manifest = chest
    parts = ["accuracy", "confusion", "sanity"]
    html_text = robustness_report(
        df=df, manifest=manifest, meta=read_meta(MODEL), title="t", parts=parts, attack="fgsm"
    )
    sections = _sections(html_text)
    accuracy = sections["Accuracy against attack strength"]
    rise = (
        "With no defence, the FGSM attack leaves 49.4 % of the images correct at strength 16 "
        "but only 0.0 % at strength 2."
    )
    note = accuracy.index('<div class="box warning note"><p><strong>Accuracy does not rise')
    assert accuracy.index('class="figure"') < note < accuracy.index(rise)
    assert "62.5 % of the test images are PNEUMONIA" in accuracy
    # the seed chain's flat line is the majority-class rate, not robustness
    assert "With NLM → Bilateral → Guided, the model answers “PNEUMONIA” for 99.5 %" in accuracy
    # the confusion part shows ε = 8 for no defence and the best: notes about those only
    confusion = sections["Confusion matrices under attack"]
    h = views.headline(df, attack="fgsm", eps=8)
    if h["adaptive"] is None:  # the best by transfer (WebP + flip) does not collapse at ε 8
        assert "box warning note" not in confusion
    else:  # without skill against the adaptive attack: the best is a collapsed setting
        notes = re.findall(r'<div class="box warning note">(.*?)</div>', confusion, re.S)
        assert all(str(h["best_label"]) in n for n in notes)
    table = sections["Sanity checks of the results"]
    assert "findings below say that a number should not be trusted" in table
    assert "FGSM, no defence, transfer: accuracy rises from 0.0 % at ε = 2 to 49.4 % at" in table
    assert "<td>2, 16</td>" in table
    # without the sanity part, no notes either
    plain = robustness_report(
        df=df, manifest=manifest, meta=read_meta(MODEL), title="t", parts=parts[:2]
    )
    assert "box warning note" not in plain and rise not in plain


def test_robustness_report_names_an_adaptive_threat_model(chest):
    df, manifest = chest
    label = adaptive_label("BPDA identity")
    adaptive = df[(df["attack"] == "pgd") & (df["eps"] == 8)].assign(threat_model=label)
    adaptive["accuracy"] = 0.0
    html_text = robustness_report(
        df=pd.concat([df, adaptive], ignore_index=True),
        manifest=manifest,
        meta=read_meta(MODEL),
        title="t",
        parts=["sanity"],
    )
    assert f"<dt>{label}</dt>" in html_text
    assert "No adaptive attack in this report" not in html_text
    assert "Robustness numbers come from attacks crafted on the undefended model" not in html_text


def test_robustness_report_headline_gives_both_threat_models():
    """The shipped synthetic sweep has an adaptive companion: its number sits beside transfer's."""
    df, manifest = load_results(ROOT / "assets" / "results" / "synthetic__tiny")
    h = views.headline(df, attack="pgd", eps=8)
    a = h["adaptive"]
    assert a is not None and h["best_by"] == "adaptive" and a["n_images"] >= 200
    html_text = robustness_report(
        df=df,
        manifest=manifest,
        meta=read_meta(ROOT / "assets" / "models" / "synthetic__tiny"),
        title="t",
        parts=["headline"],
        attack="pgd",
    )
    head = _sections(html_text)["Headline numbers"]
    assert f"{h['best_label']}, attacker unaware" in head
    assert f"{a['best_label']}, attacker knows it" in head
    assert f"{a['accuracy']:.1%}" in head and f"{h['best_accuracy']:.1%}" in head
    assert "against an attacker who does not know the defence" in head
    assert "against one who does" in head


def test_robustness_report_draws_what_each_defence_keeps_against_an_adaptive_attacker():
    results = ROOT / "assets" / "results" / "synthetic__tiny"
    meta = read_meta(ROOT / "assets" / "models" / "synthetic__tiny")
    heading = "What each defence keeps when the attacker knows it"
    for companion, drawn in ((True, True), (False, False)):
        df, manifest = load_results(results, companion=companion)
        html_text = robustness_report(
            df=df, manifest=manifest, meta=meta, title="t", parts=["threats"], attack="pgd"
        )
        section = _sections(html_text)[heading]
        assert ('class="figure"' in section) == drawn
        assert ("upper bound" in section) == (not drawn)


def test_robustness_report_compares_model_level_defences_when_there_are_variants(chest):
    from app import catalog, zoo

    df, manifest = chest
    heading = "Model-level defences (training-time)"
    std = catalog.Entry("chest_xray", "mobilenet_v3_large")
    variant = catalog.Entry("chest_xray", "mobilenet_v3_large", variant="adversarial_fgsm_rs")
    stronger = df.copy()
    stronger.loc[stronger["eps"] > 0, ["accuracy", "macro_recall"]] = 0.7
    table = zoo.comparison([(std, df), (variant, stronger)], attack="pgd", eps=[4])
    kwargs = dict(df=df, manifest=manifest, meta=read_meta(MODEL), title="t", attack="pgd")
    html_text = robustness_report(**kwargs, eps=4, parts=["models"], models=table)
    section = _sections(html_text)[heading]
    assert 'class="figure"' in section and "adversarial fgsm rs model" in section
    alone = robustness_report(**kwargs, eps=4, parts=["models"], models=None)
    assert "No model trained with a training-time defence" in _sections(alone)[heading]


def test_robustness_report_rejects_unknown_parts(chest):
    df, manifest = chest
    with pytest.raises(ParamError, match=r"Unknown report part\(s\) 'summary'; known: headline"):
        robustness_report(
            df=df, manifest=manifest, meta=read_meta(MODEL), title="t", parts=["summary"]
        )
    with pytest.raises(ParamError, match="Choose at least one part"):
        robustness_report(df=df, manifest=manifest, meta=read_meta(MODEL), title="t", parts=[])


# --------------------------------------------------------------------------- dataset cards


def test_dataset_card_synthetic_is_present():
    card = cards.dataset_card("synthetic")
    assert card.present
    assert card.location == "generated in code"
    assert set(card.counts) == {"train", "val", "test"}
    assert card.counts["test"] == {"circle": 125, "square": 125, "triangle": 125, "star": 125}
    assert card.how_to_get == "Generated in code: nothing to download."


def test_dataset_card_faces_is_absent():
    card = cards.dataset_card("faces")
    if card.present:
        pytest.skip("a faces folder exists on this machine")
    assert card.counts == {}
    assert "was not found" in card.location
    assert card.how_to_get.strip()
    assert "faces" in card.how_to_get


# --------------------------------------------------------------------------- no TensorFlow


def test_dashboard_side_modules_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "import app.catalog, app.views, app.labels, app.charts, app.report, app.cards\n"
        "import engine.lab, app.worker, engine.evaluation, engine.evaluation.query\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(','.join(bad[:5]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"TensorFlow/Keras imported: {res.stdout}"


def test_setting_for_matches_live_defences_to_the_grid(chest):
    from engine import defences as dfn

    df, _ = chest
    assert views.setting_for(df, None, attack="fgsm") == ("none", "")
    assert views.setting_for(df, dfn.to_spec(dfn.SEED_CHAIN), attack="fgsm") == (
        "nlm+bilateral+guided",
        "",
    )
    key, note = views.setting_for(df, [{"id": "nlm", "params": {"h": 7}}], attack="fgsm")
    assert key.startswith("nlm:") and "not precomputed" in note
    # bit depth is in the adaptive sweep only: its transfer rows (200 images) come with it
    key, note = views.setting_for(df, [{"id": "bit_depth", "params": {}}], attack="fgsm")
    if "bit_depth:bits=5" in set(df["defence_key"]):
        assert (key, note) == ("bit_depth:bits=5", "")
    else:
        assert key is None and "not in the precomputed grid" in note
    chain = [{"id": "median", "params": {}}, {"id": "jpeg", "params": {}}]
    key, note = views.setting_for(df, chain, attack="fgsm")
    assert key is None and "not in the precomputed grid" in note


def test_report_example_says_when_the_defended_image_is_mirrored():
    from engine import datasets
    from engine.defences import WebPFlip
    from engine.lab import run_lab
    from engine.models import load_bundle

    synthetic = ROOT / "assets" / "models" / "synthetic__tiny"
    df, manifest = load_results(ROOT / "assets" / "results" / "synthetic__tiny")
    bundle = load_bundle(synthetic)
    image, label = datasets.render_synthetic(0, "test", 3)
    note = "mirrored left-right by the defence, as the model sees it"
    for flip in (True, False):
        example = run_lab(
            bundle.model,
            bundle.meta.classes,
            image,
            label=label,
            attack_params={"eps": 8},
            defence=WebPFlip(flip=flip),
        )
        html_text = robustness_report(
            df=df,
            manifest=manifest,
            meta=read_meta(synthetic),
            title="t",
            parts=["example"],
            example=example,
        )
        assert (note in html_text) is flip
