"""Tests for app.report: self-contained, escaped, offline HTML stakeholder reports."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from app.report import (
    HOW_TO_READ,
    ReportImage,
    ReportSection,
    build_report,
    bundle_provenance,
    dataset_credit,
    headline_cards,
    manifest_provenance,
    markdown_to_html,
)
from app.report.section import ReportNote
from engine.bundle import BundleMeta
from engine.errors import ImageError, ParamError
from engine.threat import THREAT_ADAPTIVE, THREAT_CLEAN, THREAT_TRANSFER, adaptive_label, explain

EVIL = "<script>alert(1)</script>"
VOID = {"meta", "img", "br", "hr", "input", "link", "col", "area", "base", "source", "wbr"}
PLOTLY_BANNER = "* plotly.js v"


class _TagChecker(HTMLParser):
    """Records parse problems: unbalanced or mis-nested tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] not in {"script", "style"}:
            self.text.append(data)


def _parse(doc: str) -> _TagChecker:
    checker = _TagChecker()
    checker.feed(doc)
    checker.close()
    return checker


def _section(**kw) -> ReportSection:
    kw.setdefault("heading", "Results")
    return ReportSection(**kw)


def _report(sections=None, **kw) -> str:
    args = dict(
        title="Chest X-ray classifier under attack",
        subtitle="PGD on the test split",
        sections=sections if sections is not None else [_section(text_md="Hello.")],
        threat_models=[THREAT_CLEAN, THREAT_TRANSFER],
        credits=["Kermany et al., CC BY 4.0"],
        provenance={"Model hash (SHA-256)": "ab" * 32},
        generated_at="2025-01-01 12:00 UTC",
    )
    args.update(kw)
    return build_report(**args)


def _figure(title: str = "Accuracy") -> go.Figure:
    return go.Figure(go.Bar(x=["none", "median"], y=[0.1, 0.6]), layout={"title": title})


def _outside_plotly_library(doc: str) -> str:
    return re.sub(r'<script id="plotly-library">.*?</script>', "", doc, count=1, flags=re.DOTALL)


def _external_loads(doc: str) -> list[str]:
    pattern = (
        r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//"""
        r"""|@import|url\(\s*["']?(?:https?:)?//"""
    )
    return re.findall(pattern, doc, flags=re.IGNORECASE)


# --- the document ---------------------------------------------------------------------


def test_report_parses_and_tags_balance():
    table = pd.DataFrame({"defence": ["none", "median 3x3"], "accuracy": [0.125, 0.6123456]})
    image = ReportImage("Clean", np.zeros((4, 4, 3), np.uint8), "predicted NORMAL")
    sections = [
        _section(
            heading="Summary",
            text_md="Intro **bold**.\n\n- one\n- two\n\n1. first\n2. second",
            cards=[("Clean accuracy", "91 %", "624 images"), ("Under attack", "12 %", "")],
            images=[image],
            table=table,
        ),
        _section(heading="Details", figures=[_figure()]),
    ]
    doc = _report(sections)
    checker = _parse(doc)
    assert checker.errors == []
    assert checker.stack == []
    assert doc.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in doc


def test_report_contains_title_headings_threats_and_fixed_sections():
    sections = [_section(heading="Summary"), _section(heading="Which defence wins")]
    labels = [THREAT_CLEAN, THREAT_TRANSFER, THREAT_ADAPTIVE]
    doc = _report(sections, threat_models=labels)
    text = " ".join(_parse(doc).text)
    assert "<title>Chest X-ray classifier under attack</title>" in doc
    assert "PGD on the test split" in text
    for heading in ("Summary", "Which defence wins"):
        assert f"<h2>{heading}</h2>" in doc
    for label in labels:
        assert label in text
        assert explain(label) in text
    for fixed in ("How to read this report", "Threat model", "Data and credits"):
        assert fixed in text
    assert "Kermany et al., CC BY 4.0" in text
    assert "ab" * 32 in text
    assert "2025-01-01 12:00 UTC" in text
    # How-to-read box rendered from its Markdown.
    assert "<strong>Accuracy</strong>" in doc
    assert HOW_TO_READ.startswith("- **Accuracy**")


def test_sections_in_order_and_start_new_printed_pages():
    doc = _report([_section(heading=f"Part {i}") for i in range(3)])
    positions = [doc.index(f"<h2>Part {i}</h2>") for i in range(3)]
    assert positions == sorted(positions)
    assert doc.index("How to read this report") < positions[0]
    assert doc.index('id="credits"') > positions[-1]
    assert doc.count('<section class="page"') == 3 + 1  # three sections + credits
    assert "@media print" in doc
    assert "break-before: page" in doc
    assert "break-inside: avoid" in doc


def test_provenance_adds_engine_version_and_time_unless_given():
    import engine

    doc = _report(provenance={"Results status": "complete"})
    assert "Engine version" in doc and engine.__version__ in doc
    assert "Report generated" in doc
    doc = _report(provenance={"engine version": "9.9.9"})
    assert "Engine version" not in doc
    assert "9.9.9" in doc


def test_same_inputs_give_identical_reports():
    def make() -> str:
        return _report([_section(figures=[_figure()], images=[ReportImage("x", _noise(3))])])

    assert make() == make()


def test_default_timestamp_is_utc():
    doc = _report(generated_at=None)
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", doc)


def test_warns_when_no_adaptive_attack():
    warning = "No adaptive attack in this report"
    assert warning in _report(threat_models=[THREAT_CLEAN, THREAT_TRANSFER])
    assert warning not in _report(threat_models=[THREAT_TRANSFER, THREAT_ADAPTIVE])
    assert warning not in _report(threat_models=[THREAT_CLEAN])
    assert "no attack results" in _report(threat_models=[])


def test_an_adaptive_label_naming_its_stand_in_counts_as_adaptive():
    label = adaptive_label("BPDA identity", eot=8)
    doc = _report(threat_models=[THREAT_TRANSFER, label])
    assert "No adaptive attack in this report" not in doc
    assert f"<dt>{label}</dt><dd>{explain(label)}</dd>" in doc


def test_duplicate_threat_labels_explained_once():
    doc = _report(threat_models=[THREAT_TRANSFER, THREAT_TRANSFER])
    assert doc.count(f"<dt>{THREAT_TRANSFER}</dt>") == 1


def test_caveats_shown_on_first_page():
    doc = _report(caveats=["PNEUMONIA outnumbers NORMAL 3 to 1."])
    assert "Limits of these results" in doc
    assert doc.index("PNEUMONIA outnumbers") < doc.index('<section class="page"')


# --- escaping -------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere():
    image = ReportImage(EVIL, _noise(2), caption=EVIL)
    table = pd.DataFrame({EVIL: [EVIL]})
    section = _section(
        heading=EVIL, text_md=f"**{EVIL}**", images=[image], table=table, cards=[(EVIL,) * 3]
    )
    doc = build_report(
        title=EVIL,
        subtitle=EVIL,
        sections=[section],
        threat_models=[],
        credits=[EVIL],
        provenance={EVIL: EVIL},
        caveats=[EVIL],
        generated_at=EVIL,
    )
    assert "<script>alert" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    checker = _parse(doc)
    assert checker.errors == []
    assert not any(tag == "script" for tag, _ in checker.tags)  # no figures: no scripts at all


def test_figure_text_cannot_close_the_script():
    doc = _report([_section(figures=[_figure(title=EVIL)])])
    assert "<script>alert" not in _outside_plotly_library(doc)
    assert _parse(doc).errors == []


def test_markdown_subset():
    assert markdown_to_html("") == ""
    assert markdown_to_html("a\nb\n\nc") == "<p>a b</p>\n<p>c</p>"
    assert markdown_to_html("- x\n  more\n- **y**") == (
        "<ul><li>x more</li><li><strong>y</strong></li></ul>"
    )
    assert markdown_to_html("1. a\n2. b") == "<ol><li>a</li><li>b</li></ol>"
    assert markdown_to_html("*it* and `<b>**c**</b>`") == (
        "<p><em>it</em> and <code>&lt;b&gt;**c**&lt;/b&gt;</code></p>"
    )
    assert markdown_to_html("2 * 3 * 4") == "<p>2 * 3 * 4</p>"
    assert markdown_to_html('<img src="x" onerror="alert(1)">') == (
        "<p>&lt;img src=&quot;x&quot; onerror=&quot;alert(1)&quot;&gt;</p>"
    )


def test_headline_cards():
    out = headline_cards([("Clean accuracy", "91 %", "624 images"), ("Fooled", "88 %", "")])
    assert out.count('class="card"') == 2
    assert "91 %" in out and "624 images" in out
    assert out.count("card-note") == 1
    assert headline_cards([]) == ""


# --- images ---------------------------------------------------------------------------


def _noise(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size + 1, 3), dtype=np.uint8)


def test_image_embedded_losslessly_as_png_data_uri():
    pixels = _noise(9, seed=3)
    doc = _report([_section(images=[ReportImage("Attacked", pixels, "predicted PNEUMONIA")])])
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)
    assert len(uris) == 1
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uris[0]))).convert("RGB"))
    np.testing.assert_array_equal(decoded, pixels)
    assert 'width="10" height="9"' in doc
    assert 'alt="Attacked"' in doc


def test_grey_image_converted_once_and_bad_image_rejected():
    grey = np.full((3, 3), 7, np.uint8)
    item = ReportImage("grey", grey)
    assert item.image.shape == (3, 3, 3) and item.image.dtype == np.uint8
    with pytest.raises(ImageError):
        ReportImage("bad", np.zeros((3, 3, 7), np.uint8))


# --- self-contained -------------------------------------------------------------------


def test_no_external_loads_without_figures():
    doc = _report([_section(images=[ReportImage("x", _noise(2))], table=pd.DataFrame({"a": [1]}))])
    assert _external_loads(doc) == []
    assert "<script" not in doc
    # The detector itself finds what it looks for.
    assert _external_loads('<img src="https://x.org/a.png"><link href=//cdn.x/y.css>')
    assert _external_loads("<style>@import 'x.css'; a { background: url(http://x) }</style>")
    assert "Content-Security-Policy" in doc and "default-src 'none'" in doc


def test_plotly_library_embedded_once_with_two_figures():
    sections = [_section(figures=[_figure("one")]), _section(heading="More", figures=[_figure()])]
    doc = _report(sections)
    assert doc.count(PLOTLY_BANNER) == 1
    assert doc.count('id="plotly-library"') == 1
    assert doc.count('class="plotly-graph-div"') == 2
    assert 'id="figure-1"' in doc and 'id="figure-2"' in doc
    # The library script precedes the figures that use it.
    assert doc.index('id="plotly-library"') < doc.index('id="figure-1"')
    rest = _outside_plotly_library(doc)
    assert PLOTLY_BANNER not in rest
    assert _external_loads(rest) == []
    assert "cdn.plot.ly" not in rest
    assert "plotly.js (MIT licence" in doc


def test_library_left_out_without_figures():
    assert PLOTLY_BANNER not in _report()


def test_import_does_not_load_tensorflow_or_streamlit():
    code = (
        "import sys, app.report; "
        "bad = [m for m in ('tensorflow', 'keras', 'streamlit') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- tables ---------------------------------------------------------------------------


def test_table_formatting_and_index():
    plain = pd.DataFrame({"defence": ["none"], "accuracy": [0.6123456], "n": [12345.6]})
    doc = _report([_section(table=plain)])
    assert "0.6123" in doc and "0.6123456" not in doc
    assert "12,346" in doc
    assert "<th>0</th>" not in doc  # default index hidden
    indexed = pd.DataFrame({"accuracy": [0.5, float("nan")]}, index=["none", "blur"])
    doc = _report([_section(table=indexed)])
    assert "<th>blur</th>" in doc and "n/a" in doc


# --- helpers for callers --------------------------------------------------------------


def test_dataset_credit_from_registry():
    credit = dataset_credit("chest_xray")
    assert credit.startswith("Pediatric chest X-rays (Kermany).")
    assert "Licence: CC BY 4.0." in credit
    assert "Kermany, Zhang, Goldbaum" in credit


def test_bundle_and_manifest_provenance():
    meta = BundleMeta(
        dataset_id="chest_xray",
        classes=["NORMAL", "PNEUMONIA"],
        positive=["PNEUMONIA"],
        input_size=224,
        backbone="mobilenet_v2",
        weights="imagenet",
        data_fingerprints={"test": "f" * 64},
        versions={"tensorflow": "2.99"},
        model_sha256="c" * 64,
    )
    rows = bundle_provenance(meta)
    assert rows["Model hash (SHA-256)"] == "c" * 64
    assert rows["Data fingerprint (test)"] == "f" * 64
    assert rows["tensorflow version"] == "2.99"
    assert "Model created" not in rows  # empty fields left out
    manifest = {
        "status": "complete",
        "engine_version": "0.1.0",
        "git": {"commit": "deadbeef", "dirty": True},
        "spec": {"name": "pgd-sweep", "sha256": "e" * 64},
        "model": {"model_sha256": "c" * 64},
        "data": {"dataset_id": "chest_xray", "split": "test", "n_images": 624},
        "seeds": {"spec": 0},
    }
    rows = manifest_provenance(manifest)
    assert rows["Results code version (git)"] == "deadbeef (with uncommitted changes)"
    assert rows["Results dataset"] == "chest_xray, test split"
    assert rows["Test images"] == "624"
    assert rows["Seed"] == "0"
    assert "Results finished" not in rows
    assert manifest_provenance({}) == {}


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("title", ["", "   "])
def test_empty_title_rejected(title):
    with pytest.raises(ParamError, match=r"title must not be empty"):
        _report(title=title)


def test_no_sections_rejected():
    with pytest.raises(ParamError, match=r"at least one section \(got none\)"):
        _report(sections=[])


def test_wrong_section_type_rejected():
    with pytest.raises(ParamError, match=r"sections\[0\] must be a ReportSection \(got str\)"):
        _report(sections=["Summary"])
    with pytest.raises(ParamError, match=r"sections must be a list of ReportSection"):
        _report(sections=_section())


def test_unknown_threat_label_rejected():
    with pytest.raises(ParamError, match=r"unknown label 'white box'.*engine\.threat"):
        _report(threat_models=["white box"])


def test_bad_section_parts_rejected():
    with pytest.raises(ParamError, match=r"ReportSection\.heading must not be empty"):
        ReportSection("")
    with pytest.raises(ParamError, match=r"figures\[0\] must be a BaseFigure \(got dict\)"):
        ReportSection("x", figures=[{"data": []}])
    with pytest.raises(ParamError, match=r"images\[0\] must be a ReportImage"):
        ReportSection("x", images=[np.zeros((2, 2, 3), np.uint8)])
    with pytest.raises(ParamError, match=r"table must be a pandas DataFrame"):
        ReportSection("x", table=[[1, 2]])


def test_notes_sit_under_the_charts():
    notes = [ReportNote("Accuracy **rises** with ε."), ReportNote("Baseline 62.5 %.", False)]
    image = ReportImage("x", _noise(3))
    doc = _report([_section(text_md="Intro.", figures=[_figure()], notes=notes, images=[image])])
    body = _outside_plotly_library(doc)
    warning = body.index('<div class="box warning note"><p>Accuracy <strong>rises</strong> with')
    plain = body.index('<div class="box note"><p>Baseline 62.5 %.</p></div>')
    assert body.index('id="figure-1"') < warning < plain < body.index("<figure><img")
    assert _parse(doc).errors == []
    evil = _report([_section(notes=[ReportNote(EVIL)])])
    assert EVIL not in evil and '<div class="box warning note"><p>&lt;script&gt;' in evil


def test_bad_notes_rejected():
    with pytest.raises(
        ParamError, match=r"ReportSection\.notes\[0\] must be a ReportNote \(got str\)"
    ):
        ReportSection("x", notes=["a note"])
    with pytest.raises(ParamError, match=r"ReportNote\.text_md must not be empty"):
        ReportNote(" ")


def test_bad_cards_rejected():
    with pytest.raises(ParamError, match=r"cards\[0\] must be a \(label, value, footnote\)"):
        headline_cards([("only two", "parts")])
    with pytest.raises(ParamError, match=r"cards\[0\] has an empty value"):
        headline_cards([("label", " ", "")])
    with pytest.raises(ParamError, match=r"ReportSection\.cards.*triple of strings"):
        ReportSection("x", cards=[("a", 1, "c")])
