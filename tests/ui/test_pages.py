"""The dashboard end to end in Streamlit's AppTest: every page, the picker, the live parts.

One model worker (``st.cache_resource``) serves every AppTest of this module, so
only the first live request pays for starting TensorFlow. Tests that need the
chest X-ray test images skip when ``../shared/data`` lacks them.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

os.environ["ROBUSTLENS_PRELOAD"] = "0"  # before ui.common is imported (by the app)

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")
from PIL import Image
from streamlit.testing.v1 import AppTest

from app import catalog
from engine.images import encode_png
from tests import conftest
from tests.conftest import png_header_only, shared_dataset
from ui.nav import PAGES
from ui.widgets import NO_ATTACKED_ROWS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "assets" / "results" / "chest_xray__mobilenet_v3_large"


@pytest.fixture
def chest_data() -> Path:
    return shared_dataset("chest_xray_kermany_224")


def open_app(page: str | None = None) -> AppTest:
    """The dashboard after its first run, switched to ``page`` (a file under app_pages/)."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180).run()
    assert not at.exception
    if page is not None:
        at.switch_page(page).run()
        assert not at.exception
    return at


def choose(at: AppTest, dataset_id: str, backbone: str | None = None) -> AppTest:
    """Pick a dataset (and backbone) in the sidebar."""
    at.selectbox(key="sel_dataset").set_value(dataset_id).run()
    assert not at.exception
    if backbone is not None:
        at.selectbox(key="sel_backbone").set_value(backbone).run()
        assert not at.exception
    return at


def texts(elements: object) -> list[str]:
    return [e.value for e in elements]  # type: ignore[attr-defined]


def plain(text: str) -> str:
    return text.replace("**", "")


def verdict(at: AppTest) -> str:
    """The live lab's one verdict line (success, error or info), Markdown bold removed."""
    found = [
        plain(t) for t in texts([*at.success, *at.error, *at.info]) if t.startswith("The attack")
    ]
    assert len(found) == 1, found
    return found[0]


def no_test_images(at: AppTest) -> bool:
    """True when the page says the test images are not on this machine (explorer)."""
    return any("test images are not on this machine" in t for t in texts(at.warning))


def no_model_pair() -> tuple[str, str]:
    """A (dataset, backbone) choice with no model and no results on this machine."""
    for pair in (("faces", "resnet50"), ("ham10000", "inception_v3"), ("faces", "inception_v3")):
        e = catalog.find(*pair)
        if not e.has_model and e.results_dir is None:
            return pair
    pytest.skip("every candidate choice has a model here")


# --------------------------------------------------------------------------- every page


def test_home_shows_the_headline_cards():
    from engine.evaluation.results import companion_dir

    at = open_app()
    assert "RobustLens" in at.title[0].value
    labels = [m.label for m in at.metric]
    assert len(labels) == 4
    assert labels[0] == "Clean accuracy"
    assert labels[1] == "Under FGSM, ε = 8"
    assert labels[2].endswith(": attacker unaware")
    said = " ".join(texts([*at.success, *at.warning]))
    chest = ROOT / "assets" / "results" / "chest_xray__mobilenet_v3_large"
    if companion_dir(chest) is None:  # no adaptive sweep shipped for it: says so, no green
        assert "against an attacker who does not know the defence" in said
        assert labels[3] == "Attacker knows the defence" and at.metric[3].value == "not run"
        assert "upper bound" in said and not at.main.success
    else:
        from app import views
        from engine.evaluation import load_results

        h = views.headline(load_results(chest)[0], attack="fgsm", eps=8)
        a = h["adaptive"]
        assert a is not None and labels[3].endswith(": attacker knows it")
        assert views.headline_sentences(h, "FGSM")[0] in said
        assert bool(at.main.success) == a["holds"], "green only for a gain that holds"
        if a["skill"]:
            assert "against one who does" in said
        else:  # what becomes of the unaware attacker's best, and no "wins back"
            assert "no defence keeps any skill" in said and "wins back" not in said
            assert "when the attacker knows it" in said
    assert all(m.value.endswith("%") for m in at.metric[:3])
    at.selectbox(key="home_attack").set_value("pgd").run()
    at.select_slider(key="home_eps").set_value(2.0).run()
    assert not at.exception
    assert [m.label for m in at.metric][1] == "Under PGD, ε = 2"


def test_home_gives_the_adaptive_number_beside_the_transfer_one():
    """The synthetic model ships an adaptive sweep: the same setting under both threat models."""
    at = open_synthetic()
    at.selectbox(key="home_attack").set_value("pgd").run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert len(labels) == 4 and all(m.value.endswith("%") for m in at.metric)
    assert labels[2].endswith(": attacker unaware") and labels[3].endswith(": attacker knows it")
    assert labels[2].removesuffix(": attacker unaware") == labels[3].removesuffix(
        ": attacker knows it"
    )
    said = " ".join(texts([*at.success, *at.warning]))
    assert "against an attacker who does not know the defence" in said
    assert "against one who does" in said and "200 images of the adaptive sweep" in said
    badges = " ".join(texts(at.caption))
    assert "adaptive: crafted through the defence" in badges
    assert "PGD-10 has not fully converged (up to 7.0 points lower with 20 steps)" in badges


def test_recap_draws_its_charts():
    at = open_app("app_pages/recap.py")
    assert at.title[0].value == "Recap curves"
    assert len(at.get("plotly_chart")) >= 5
    assert not at.error
    keys = {b.key for b in at.get("download_button")}
    assert {"recap_dl_rows", "recap_dl_all"} <= keys
    assert any(
        t.startswith("Of a fixed, stratified subset of **64** test images")
        for t in texts(at.markdown)
    )
    # no "nearest" note while every slider sits on a precomputed value
    assert not [t for t in texts(at.info) if "not precomputed" in t]

    at.selectbox(key="recap_metric").set_value("macro_recall").run()
    at.radio(key="chart_format").set_value("svg").run()
    assert not at.exception


def test_recap_shows_the_sanity_findings_beside_their_charts():
    at = open_app("app_pages/recap.py")
    fgsm_rise = (
        "With no defence, the FGSM attack leaves 49.4 % of the images correct at strength 16 "
        "but only 0.0 % at strength 2."
    )
    warnings = [plain(t) for t in texts(at.warning)]
    assert any(fgsm_rise in t and "trust the many-step attack (PGD)" in t for t in warnings)
    baseline = "62.5 % of the test images are PNEUMONIA"
    assert any(baseline in t for t in texts(at.info))
    researchers = [e for e in at.expander if e.label.startswith("For researchers: all ")]
    assert len(researchers) == 1
    # the notes follow the chart: PGD on the undefended model falls to 0 % and stays there
    at.selectbox(key="recap_attack").set_value("pgd").run()
    assert not at.exception
    assert not [t for t in texts(at.warning) if fgsm_rise in plain(t)]
    assert any(baseline in t for t in texts(at.info))
    # the confusion tab: the seed chain calls nearly every clean X-ray pneumonia
    at.selectbox(key="recap_cm_family").set_value("nlm+bilateral+guided").run()
    at.slider(key="recap_cm_eps").set_value(0.0).run()
    assert not at.exception
    collapse = [plain(t) for t in texts(at.warning) if "when nobody attacks" in t]
    assert collapse and "answers “PNEUMONIA” for 99.5 % of the images" in collapse[0]


def test_recap_maps_a_budget_to_the_nearest_precomputed_one():
    at = open_app("app_pages/recap.py")
    at.slider(key="recap_trade_eps").set_value(5.0).run()
    assert not at.exception
    assert "ε 5 is not precomputed; showing ε 4 (nearest)" in texts(at.info)
    at.slider(key="recap_param_eps").set_value(3.0).run()  # a tie goes to the larger budget
    assert "ε 3 is not precomputed; showing ε 4 (nearest)" in texts(at.info)
    at.slider(key="recap_cm_eps").set_value(20.0).run()
    assert "Nearest precomputed cell: ε 20 is not precomputed; showing ε 16 (nearest)." in texts(
        at.info
    )
    assert not at.exception


def test_recap_maps_a_defence_parameter_to_the_nearest_setting():
    at = open_app("app_pages/recap.py")
    at.selectbox(key="recap_two_family").set_value("nlm").run()
    assert not [t for t in texts(at.info) if t.startswith("Nearest precomputed setting")]
    at.slider(key="recap_two_nlm_h").set_value(7).run()
    assert not at.exception
    notes = [t for t in texts(at.info) if t.startswith("Nearest precomputed setting")]
    assert len(notes) == 1
    assert "h 7 is not precomputed; showing h " in notes[0]
    assert notes[0].endswith("(nearest).")

    at.selectbox(key="recap_cm_family").set_value("median").run()
    at.slider(key="recap_cm_median_kernel").set_value(4).run()
    assert not at.exception
    assert any("kernel 4 is not precomputed" in t for t in texts(at.info))


def test_recap_flipped_images_tab():
    at = open_app("app_pages/recap.py")
    at.slider(key="recap_flip_eps").set_value(16.0).run()
    keys = at.selectbox(key="recap_flip_key").options
    at.selectbox(key="recap_flip_key").set_value("none").run()
    assert not at.exception
    assert len(keys) > 1
    line = next(t for t in texts(at.markdown) if t.startswith("Of a fixed"))
    assert "ε = 16" in line and "restores **0** of them" in line  # no defence restores none


def test_models_page_shows_the_cards():
    at = open_app("app_pages/models.py")
    card = next(t for t in texts(at.markdown) if t.startswith("# MobileNetV3 Large on"))
    assert "## Clean test metrics" in card
    assert "Pediatric chest X-rays (Kermany)" in texts(at.subheader)
    assert any("python -m engine.evaluation" in t or "engine.datasets" in t for t in texts(at.code))
    assert len(at.get("plotly_chart")) >= 2  # training curves and the confusion matrix
    # the results tab says whether the shipped results are fresh
    assert at.success or any(t.startswith("These results") for t in texts(at.warning))


def test_models_page_sample_grid(chest_data):
    at = open_app("app_pages/models.py")
    at.slider(key="models_per_class").set_value(2).run()
    assert not at.exception
    grids = at.get("image")
    assert len(grids) == 2  # one row of samples per class
    assert all(len(g.value) == 2 for g in grids)  # two images each


def test_report_page_builds_a_report():
    at = open_app("app_pages/report.py")
    assert at.button(key="rep_build").label == "Build the report"
    assert not at.get("download_button")
    at.multiselect(key="rep_parts").set_value(["headline", "tradeoff"]).run()
    at.button(key="rep_build").click().run()
    assert not at.exception
    (ready,) = texts(at.success)
    assert ready.startswith("Report ready: ") and "self-contained" in ready
    assert [b.key for b in at.get("download_button")] == ["rep_download"]
    html_text = at.session_state["rep_html"].decode()
    assert "<h2>Headline numbers</h2>" in html_text
    assert "<h2>Defence trade-off</h2>" in html_text
    assert "<h2>Accuracy against attack strength</h2>" not in html_text

    at.multiselect(key="rep_parts").set_value([]).run()
    assert at.button(key="rep_build").disabled


def test_report_with_every_part():
    at = open_app("app_pages/report.py")
    at.button(key="rep_build").click().run()
    assert not at.exception
    assert texts(at.success)[0].startswith("Report ready: ")
    html_text = at.session_state["rep_html"].decode()
    assert "<h2>Confusion matrices under attack</h2>" in html_text
    # with the test images here, the live example is in; without, the page says so
    example = "<h2>A live example</h2>" in html_text
    assert example or any(t.startswith("No live example") for t in texts(at.info))


def test_explorer_renders():
    at = open_app("app_pages/explorer.py")
    assert at.title[0].value == "Explorer"
    if no_test_images(at):
        assert not (conftest.SHARED_DATA / "chest_xray_kermany_224").exists()
        return
    assert at.button(key="ex_run").label in ("▶ Run the live sweep", "Shown below (cached)")
    assert len(at.get("plotly_chart")) == 1


def test_explorer_image_count_slider_reads_its_declaration(chest_data):
    from engine.lab import MiniSweepOptions
    from engine.params import declaration

    p = declaration(MiniSweepOptions, "n_images")
    slider = open_app("app_pages/explorer.py").slider(key="ex_n")
    assert (slider.min, slider.max, slider.step, slider.value) == (p.low, p.high, p.step, p.default)


def test_explorer_live_eps_sweep(chest_data):
    at = open_app("app_pages/explorer.py")
    at.slider(key="ex_n").set_value(4).run()
    assert at.button(key="ex_run").label == "▶ Run the live sweep"
    assert not at.button(key="ex_run").disabled
    at.button(key="ex_run").click().run()
    assert not at.exception
    assert not at.error
    assert any(t.startswith("Live points: 4 test images") for t in texts(at.caption))
    at.run()  # the same sweep again: served from the cache
    button = at.button(key="ex_run")
    assert button.label == "Shown below (cached)"
    assert button.disabled
    assert any(t.startswith("Live points: 4 test images") for t in texts(at.caption))
    live = at.dataframe[0].value
    assert list(live.columns) == ["eps", "defence_label", "n_images", "accuracy"]
    assert len(live) == 7 and set(live["n_images"]) == {4}


def test_explorer_live_parameter_sweep(chest_data):
    at = open_app("app_pages/explorer.py")
    at.slider(key="ex_n").set_value(4).run()
    at.radio(key="ex_what").set_value("a defence parameter").run()
    at.selectbox(key="ex_family").set_value("median").run()
    assert at.selectbox(key="ex_param").value == "kernel"
    at.button(key="ex_run").click().run()
    assert not at.exception
    live = at.dataframe[0].value
    assert list(live["kernel"]) == [3, 5]  # the even midpoint 4 is dropped


# --------------------------------------------------------------------------- the picker


def test_choice_without_a_model_says_how_to_train_it():
    dataset_id, backbone = no_model_pair()
    at = choose(open_app(), dataset_id, backbone)
    entry = catalog.find(dataset_id, backbone)
    command = catalog.train_command(dataset_id, backbone)
    assert any("No model for this choice yet" in t for t in texts(at.sidebar.caption))
    for page in PAGES:
        at.switch_page(page.file).run()
        assert not at.exception, page.file
        warnings = [t for t in texts(at.warning) if t.startswith("No model is trained")]
        assert warnings == [
            f"No model is trained for **{entry.title}** yet. Train one on "
            "this machine (the dashboard finds it in `runs/models`), then "
            "precompute its recap curves:"
        ], page.file
        assert command in texts(at.code), page.file
        assert command.startswith("python -m engine.train --dataset ")


@pytest.mark.parametrize(
    "entry",
    [e for e in catalog.entries(with_model_only=True) if e.shipped and e.key != SHIPPED.name],
    ids=lambda e: e.key,
)
def test_other_shipped_models_render_every_page(entry):
    at = choose(open_app(), entry.dataset_id, entry.backbone)
    if entry.variant:
        at.selectbox(key="sel_variant").set_value(entry.variant).run()
        assert not at.exception
    assert entry.title in texts(at.subheader)
    for page in PAGES:
        if page.file == "app_pages/lab.py":
            continue  # loads another model: covered for the default one below
        at.switch_page(page.file).run()
        assert not at.exception, page.file
        assert not at.error, (page.file, texts(at.error))
        if entry.results_dir is None and page.file == "app_pages/recap.py":
            assert "python -m engine.evaluation" in at.code[0].value
        if entry.variant and page.file == "app_pages/recap.py":  # one setting per defence
            assert any("no defence parameter to vary" in t for t in texts(at.info))


def test_choice_follows_the_user_across_pages():
    at = choose(open_app(), "chest_xray", "mobilenet_v3_small")
    assert "Pediatric chest X-rays (Kermany) · MobileNetV3 Small" in texts(at.subheader)
    for page in (
        "app_pages/models.py",
        "app_pages/recap.py",
        "app_pages/report.py",
        "app_pages/home.py",
    ):
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.selectbox(key="sel_dataset").value == "chest_xray", page
        assert at.selectbox(key="sel_backbone").value == "mobilenet_v3_small", page
        if page == "app_pages/models.py":
            assert any(t.startswith("# MobileNetV3 Small on") for t in texts(at.markdown))
    # back to the default: the pages follow again
    at.selectbox(key="sel_backbone").set_value("mobilenet_v3_large").run()
    assert "Pediatric chest X-rays (Kermany) · MobileNetV3 Large" in texts(at.subheader)


@pytest.fixture
def clean_only_results(tmp_path, monkeypatch) -> Path:
    """The shipped chest results cut to what a partial sweep holds, in a temporary folder.

    FGSM has every budget, PGD only its clean (ε = 0) rows: the sweep has just
    started PGD. The catalog finds these results instead of the shipped ones.
    """
    out = tmp_path / "results" / SHIPPED.name
    out.mkdir(parents=True)
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    manifest["status"] = "partial"
    (out / "manifest.json").write_text(json.dumps(manifest))
    for name in ("results.csv", "per_image.csv.gz"):
        table = pd.read_csv(SHIPPED / name)
        table[(table["attack"] == "fgsm") | (table["eps"] == 0)].to_csv(out / name, index=False)
    monkeypatch.setattr(catalog, "results_roots", lambda: [tmp_path / "results"])
    return out


def test_partial_sweep_offers_only_attacked_budgets(clean_only_results):
    for page, key in [
        ("app_pages/home.py", "home_attack"),
        ("app_pages/recap.py", "recap_attack"),
        ("app_pages/report.py", "rep_attack"),
        ("app_pages/explorer.py", "ex_attack"),
    ]:
        at = open_app(page)
        assert any(t.startswith("These results are incomplete") for t in texts(at.warning))
        if no_test_images(at):
            continue  # the explorer stops before its controls
        assert at.selectbox(key=key).options == ["FGSM"], page


def test_partial_sweep_without_attacked_rows(clean_only_results):
    for name in ("results.csv", "per_image.csv.gz"):
        table = pd.read_csv(clean_only_results / name)
        table[table["eps"] == 0].to_csv(clean_only_results / name, index=False)
    for page in (
        "app_pages/home.py",
        "app_pages/recap.py",
        "app_pages/report.py",
        "app_pages/explorer.py",
    ):
        at = open_app(page)
        assert NO_ATTACKED_ROWS in texts(at.info) or no_test_images(at), page


# --------------------------------------------------------------------------- the live lab


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


RNG = np.random.default_rng(0)
RGB_PNG = encode_png(RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8))
GREY16_PNG = _png((np.arange(60 * 70).reshape(60, 70) * 15).astype(np.uint16))
RGBA_PNG = _png(RNG.integers(0, 256, (30, 30, 4), dtype=np.uint8), "RGBA")
_gif = io.BytesIO()
Image.fromarray(np.zeros((10, 10, 3), np.uint8)).convert("P").save(_gif, format="GIF")
GIF = _gif.getvalue()


@pytest.fixture(scope="module")
def upload_app() -> AppTest:
    """One lab session on the Upload source, shared by the upload tests."""
    at = open_app("app_pages/lab.py")
    at.radio(key="lab_source").set_value("Upload").run()
    assert not at.exception
    assert "Choose or upload an image to start." in texts(at.info)
    return at


def test_lab_default_run_gives_a_verdict(chest_data):
    at = open_app("app_pages/lab.py")
    assert at.radio(key="lab_source").options == ["Test image", "Upload", "Synthetic shape"]
    assert at.radio(key="lab_source").value == "Test image"
    assert at.select_slider(key="lab_eps").value == 8.0
    text = verdict(at)
    assert "flipped" in text or "did not change" in text
    assert [m.label for m in at.metric] == [
        "L∞ change",
        "L2 change",
        "Pixels changed",
        "Attacked vs original",
        "Defended vs original",
    ]
    assert at.metric[0].value == "8 levels"
    assert {b.key for b in at.get("download_button")} == {"lab_dl_attacked", "lab_dl_defended"}

    at.button(key="lab_run").click().run()
    assert not at.exception
    assert verdict(at) == text  # the same request: the same answer

    at.radio(key="lab_pair").set_value("attacked | defended").run()
    at.slider(key="lab_wipe").set_value(20).run()
    assert not at.exception
    assert any(t == "left: attacked, right: defended" for t in _image_captions(at))

    at.select_slider(key="lab_eps").set_value(0.0).run()
    assert not at.exception
    text = verdict(at)
    assert text.startswith("The attack did not change the prediction")
    assert "ε = 0" in text
    assert at.metric[0].value == "0 levels"


def test_lab_attacks_a_shipped_training_time_defence_variant(chest_data):
    at = open_app("app_pages/lab.py")
    at.selectbox(key="sel_variant").set_value("filter_gaussian").run()
    assert not at.exception
    assert at.query_params["variant"] == "filter_gaussian"
    at.button(key="lab_run").click().run()
    assert not at.exception and not at.error, texts(at.error)
    text = verdict(at)
    assert "flipped" in text or "did not change" in text
    assert at.metric[0].value == "8 levels"
    model = [t for t in texts(at.caption) if t.startswith("Model: ")]
    assert model and "MobileNetV3 Large · Gaussian-trained, σ 1" in model[0], model


def _image_captions(at: AppTest) -> list[str]:
    return [c for image in at.get("image") for c in image.captions]


def test_lab_synthetic_shape_needs_no_data():
    at = open_app("app_pages/lab.py")
    at.radio(key="lab_source").set_value("Synthetic shape").run()
    assert not at.exception
    assert any(t.startswith("A generated shape, not a medical image") for t in texts(at.caption))
    assert any(t.startswith("synthetic shape 0 · ") for t in texts(at.caption))
    assert "flipped" in verdict(at) or "did not change" in verdict(at)
    at.number_input(key="lab_synth").set_value(3).run()
    assert not at.exception
    assert any(t.startswith("synthetic shape 3 · ") for t in texts(at.caption))


def test_lab_defence_presets_and_sliders():
    at = open_app("app_pages/lab.py")
    at.radio(key="lab_source").set_value("Synthetic shape").run()
    presets = at.selectbox(key="lab_preset").options
    chain = "Seed-000 chain: NLM → bilateral → guided"
    assert chain in presets and "No defence" in presets
    at.selectbox(key="lab_preset").set_value(chain).run()
    assert at.multiselect(key="lab_chain").value == ["nlm", "bilateral", "guided"]
    at.slider(key="lab_def_0_nlm_h").set_value(7.0).run()
    assert not at.exception
    assert at.slider(key="lab_def_0_nlm_h").value == 7.0
    verdict(at)

    at.selectbox(key="lab_preset").set_value("No defence").run()
    assert not at.exception
    assert at.multiselect(key="lab_chain").value == []
    verdict(at)


@pytest.mark.parametrize(
    ("name", "data", "size"),
    [
        ("rgb.png", RGB_PNG, "50×40"),
        ("grey16.png", GREY16_PNG, "70×60"),
        ("rgba.png", RGBA_PNG, "30×30"),
    ],
)
def test_lab_upload_valid_images(upload_app, name, data, size):
    at = upload_app
    at.file_uploader(key="lab_upload").set_value((name, data, "image/png")).run()
    assert not at.exception
    assert not at.error or all(t.startswith("The attack flipped") for t in texts(at.error))
    assert any(t.startswith(f"upload {name} ({size}) · ") for t in texts(at.caption))
    text = verdict(at)
    assert "flipped" in text or "did not change" in text
    at.selectbox(key="lab_upload_label").set_value(0).run()
    assert not at.exception


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("hello.png", b"hello", "this file is not an image (or it is damaged)"),
        ("truncated.png", RGB_PNG[:100], "the image file is truncated or damaged"),
        ("animation.png", GIF, "unsupported image format GIF"),
        ("bomb.png", png_header_only(30000, 30000), "image is 30000×30000 pixels"),
        ("empty.png", b"", "the file is empty"),
    ],
    ids=["text", "truncated", "gif", "bomb", "empty"],
)
def test_lab_upload_bad_files(upload_app, name, data, message):
    at = upload_app
    at.file_uploader(key="lab_upload").set_value((name, data, "image/png")).run()
    assert not at.exception
    (error,) = texts(at.error)
    assert error.startswith("This file cannot be used: ")
    assert message in error
    assert "Choose or upload an image to start." in texts(at.info)
    assert not at.metric


def test_a_shared_link_opens_its_model_and_the_address_follows_the_picker():
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)
    at.query_params["dataset"] = "chest_xray"
    at.query_params["backbone"] = "mobilenet_v3_small"
    at.run()
    assert not at.exception
    assert at.selectbox(key="sel_backbone").value == "mobilenet_v3_small"
    assert "Pediatric chest X-rays (Kermany) · MobileNetV3 Small" in texts(at.subheader)
    at.selectbox(key="sel_backbone").set_value("mobilenet_v3_large").run()
    assert at.query_params["backbone"] == ["mobilenet_v3_large"] or (
        at.query_params["backbone"] == "mobilenet_v3_large"
    )


def test_a_link_with_unknown_ids_falls_back_to_the_default():
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)
    at.query_params["dataset"] = "<script>"
    at.query_params["backbone"] = "nope"
    at.run()
    assert not at.exception
    assert at.selectbox(key="sel_dataset").value == "chest_xray"
    assert at.selectbox(key="sel_backbone").value == "mobilenet_v3_large"


def test_lab_shows_the_recap_curve_next_to_the_live_result(chest_data):
    at = open_app("app_pages/lab.py")
    assert "How often does this work across the test set?" in texts(at.subheader)
    context = next(t for t in texts(at.markdown) if t.startswith("Across **624** test images"))
    assert "without a defence" in context and "With **" in context
    # a defence that is not in the grid says so instead of drawing a wrong curve
    at.multiselect(key="lab_chain").set_value(["median", "jpeg"]).run()
    assert not at.exception
    assert any("not in the precomputed grid" in t for t in texts(at.markdown))


def open_synthetic(page: str | None = None) -> AppTest:
    """The dashboard on the shipped synthetic model (``?dataset=synthetic&backbone=tiny``),
    switched to ``page`` (a file under app_pages/)."""
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)
    at.query_params["dataset"] = "synthetic"
    at.query_params["backbone"] = "tiny"
    at.run()
    assert not at.exception
    if page is not None:
        at.switch_page(page).run()
        assert not at.exception
    assert at.selectbox(key="sel_backbone").value == "tiny"
    return at


def open_synthetic_lab() -> AppTest:
    """The live lab on the shipped synthetic model."""
    return open_synthetic("app_pages/lab.py")


def _lab_panel_is_whole(at: AppTest) -> None:
    """The live result, its images, the recap context and the numbers are all there."""
    assert not at.exception
    assert not [t for t in texts(at.error) if not t.startswith("The attack flipped")]
    verdict(at)
    assert "How often does this work across the test set?" in texts(at.subheader)
    assert any(t.startswith("Across **") for t in texts(at.markdown))
    assert any(c.startswith("left: original, right: defended") for c in _image_captions(at))
    assert [m.label for m in at.metric][-1] == "Defended vs original"


def _context(at: AppTest) -> str:
    return next(t for t in texts(at.markdown) if t.startswith("Across **"))


def test_lab_maps_a_defence_parameter_off_the_grid_to_the_nearest_setting():
    at = open_synthetic_lab()
    at.selectbox(key="lab_preset").set_value("WebP + flip").run()
    _lab_panel_is_whole(at)
    assert "With **WebP+flip quality=75**" in _context(at)
    assert "Nearest precomputed setting" not in _context(at)

    at.slider(key="lab_def_0_webp_flip_quality").set_value(80).run()  # between 75 and 90
    _lab_panel_is_whole(at)
    context = _context(at)
    assert "With **WebP+flip quality=75**" in context
    assert (
        "(Nearest precomputed setting: quality 80 is not precomputed; "
        "showing quality 75 (nearest).)"
    ) in context

    at.toggle(key="lab_def_0_webp_flip_flip").set_value(False).run()  # the grid never turns it off
    _lab_panel_is_whole(at)
    context = _context(at)
    assert "With **" not in context
    assert (
        "No precomputed curve for this defence: WebP + flip has no precomputed setting "
        "with flip off (precomputed: flip on)."
    ) in context

    at.selectbox(key="lab_preset").set_value("Seed-000 chain: NLM → bilateral → guided").run()
    at.slider(key="lab_def_0_nlm_h").set_value(7.0).run()  # one member of the chain off the grid
    _lab_panel_is_whole(at)
    assert "(Nearest precomputed setting: nlm.h 7 is not precomputed; showing nlm.h 10" in (
        _context(at)
    )


def test_lab_says_when_the_defended_image_is_mirrored():
    at = open_synthetic_lab()
    at.selectbox(key="lab_preset").set_value("WebP + flip").run()
    _lab_panel_is_whole(at)
    (defended,) = [c for c in _image_captions(at) if c.startswith("Defended · ")]
    assert "mirrored left-right by the defence, as the model sees it" in defended
    assert "flip it back to line up with the original" in defended
    assert any(t.startswith("The defence mirrors the image left-right") for t in texts(at.caption))
    metric = at.metric[-1]
    assert "flipped back before it is compared" in metric.help

    at.toggle(key="lab_def_0_webp_flip_flip").set_value(False).run()
    _lab_panel_is_whole(at)
    (defended,) = [c for c in _image_captions(at) if c.startswith("Defended · ")]
    assert "mirrored" not in defended
    assert not any(t.startswith("The defence mirrors") for t in texts(at.caption))
    assert "flipped back" not in (at.metric[-1].help or "")


def test_lab_switch_crafts_the_attack_through_the_defence():
    at = open_synthetic_lab()
    at.selectbox(key="lab_preset").set_value("Seed-000 chain: NLM → bilateral → guided").run()
    switch = at.toggle(key="lab_adaptive")
    assert switch.label == "The attacker knows the defence" and switch.value is False
    assert "BPDA" in switch.help and "EOT" in switch.help
    transfer = "Threat model: **crafted on the undefended model, tested through the defence**"
    assert any(t.startswith(transfer) for t in texts(at.caption))

    switch.set_value(True).run()
    at.button(key="lab_run").click().run()
    assert not at.exception
    assert verdict(at).startswith("The attacker knew the defence (NLM → Bilateral → Guided)")
    label = "adaptive: crafted through the defence (bpda-identity)"
    assert any(t.startswith(f"Threat model: **{label}**") for t in texts(at.caption))
    assert any(c.startswith("Attacked through the defence · ") for c in _image_captions(at))
    # the synthetic model ships an adaptive sweep: the panel gives both precomputed numbers
    context = " ".join(texts(at.markdown))
    assert "against an attacker who does not know the defence" in context
    assert "Against one who knows it: **" in context and "images of the adaptive sweep" in context
    assert any(t.startswith(f"Threat model: **{label}**") for t in texts(at.caption))
    assert "lab_eot" not in {w.key for w in at.number_input}  # a deterministic defence

    # a randomised defence: EOT over the declared number of draws
    at.multiselect(key="lab_chain").set_value(["resize_pad"]).run()
    assert not at.exception
    from engine.lab import LiveAttacker

    assert at.number_input(key="lab_eot").value == LiveAttacker().eot_samples
    eot = f"adaptive: crafted through the defence (exact, EOT {LiveAttacker().eot_samples})"
    assert any(t.startswith(f"Threat model: **{eot}**") for t in texts(at.caption))

    at.toggle(key="lab_adaptive").set_value(False).run()
    assert not at.exception
    assert any(t.startswith(transfer) for t in texts(at.caption))
    assert not any("does not know" in t for t in texts(at.info))


def test_recap_shows_both_threat_models_and_says_the_adaptive_pgd_has_not_converged():
    at = open_synthetic("app_pages/recap.py")
    assert len(at.get("plotly_chart")) >= 6  # the transfer-vs-adaptive chart too
    (warning,) = [w.value for w in at.warning if "has not fully converged" in w.value]
    assert "20 steps instead of 10" in warning and "up to 7.0 points" in warning
    assert "Download the adaptive sweep's table (CSV)" in [
        b.label for b in at.get("download_button")
    ]


def test_a_training_time_defence_variant_is_a_choice_and_home_compares_the_models(
    tmp_path, monkeypatch
):
    import shutil

    import streamlit as st

    name = "chest_xray__mobilenet_v3_large__adversarial_pgd"  # not shipped
    bundle = tmp_path / "models" / name
    bundle.mkdir(parents=True)
    shipped_model = ROOT / "assets" / "models" / "chest_xray__mobilenet_v3_large"
    (bundle / "model.keras").symlink_to(shipped_model / "model.keras")
    meta = json.loads((shipped_model / "meta.json").read_text())
    meta["training"]["defence"] = {"short": "PGD adversarial training, ε 4"}
    (bundle / "meta.json").write_text(json.dumps(meta))
    shutil.copytree(SHIPPED, tmp_path / "results" / name)
    roots_m, roots_r = catalog.model_roots(), catalog.results_roots()
    monkeypatch.setattr(catalog, "model_roots", lambda: [*roots_m, tmp_path / "models"])
    monkeypatch.setattr(catalog, "results_roots", lambda: [*roots_r, tmp_path / "results"])
    st.cache_data.clear()
    try:
        at = choose(open_app(), "chest_xray", "mobilenet_v3_large")
        training = at.selectbox(key="sel_variant")
        assert training.options[0] == "standard training"
        assert "PGD adversarial training, ε 4" in training.options
        assert "Model-level defences" in texts(at.subheader)
        training.set_value("adversarial_pgd").run()
        assert not at.exception
        assert any("PGD adversarial training" in t for t in texts(at.subheader))
        assert at.query_params["variant"] == "adversarial_pgd"
        assert not at.error, texts(at.error)
    finally:
        st.cache_data.clear()
