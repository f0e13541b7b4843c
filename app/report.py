"""Stakeholder reports: one self-contained HTML file for readers who are not ML experts.

:func:`build_report` assembles headline cards, text, Plotly charts, example
images and tables into a single HTML document with, always:

* a **"How to read this report"** box (accuracy, attack strength, defences,
  threat-model labels, chance differences, in plain language);
* a **"Threat model"** section explaining each label the report uses
  (:func:`engine.threat.explain`), with a warning when no result comes from an
  adaptive attack;
* a **"Data and credits"** section (dataset licences and attributions; see
  :func:`dataset_credit`) and a **provenance** table (engine version, model
  hash, results manifest; see :func:`bundle_provenance` and
  :func:`manifest_provenance`).

Self-contained and offline
--------------------------
The file needs no network: plotly.js is embedded inline exactly once (about
4.8 MB, only when the report has charts), images are lossless PNG ``data:``
URIs, fonts are the system's own. A Content-Security-Policy ``<meta>`` tag
forbids every network load (scripts, styles, images, fonts, requests), so even
a chart that names an external resource cannot make the file phone home.

Safety
------
Every piece of user-supplied text (titles, headings, captions, table cells,
credits, provenance) is HTML-escaped. Section text accepts a tiny, safe subset
of Markdown (see :func:`markdown_to_html`); raw HTML in it is shown as text.

Printing to PDF
---------------
Open the file in a browser and use **Print -> Save as PDF**. The print style
sheet puts the title page (title, how-to-read box, threat model, contents)
first, starts every section on a new page, keeps charts, images, cards and
table rows whole, repeats table headers on each page, drops shadows, the chart
toolbars and the grey page background, and narrows charts to the page width
before printing.

Examples
--------
>>> import plotly.graph_objects as go
>>> from engine.threat import THREAT_CLEAN, THREAT_TRANSFER
>>> fig = go.Figure(go.Bar(x=["none", "median 3x3"], y=[0.12, 0.61]))
>>> html_text = build_report(
...     title="Chest X-ray classifier under attack",
...     subtitle="PGD, eps = 2/255 to 8/255",
...     sections=[ReportSection("Summary", "Median filtering wins back **half** of it.",
...                             figures=[fig], cards=[("Clean accuracy", "91 %", "624 images")])],
...     threat_models=[THREAT_CLEAN, THREAT_TRANSFER],
...     credits=[dataset_credit("chest_xray")],
...     provenance={"Model hash (SHA-256)": "ab12..."},
... )
>>> with open("report.html", "w", encoding="utf-8") as f:  # doctest: +SKIP
...     _ = f.write(html_text)
"""

from __future__ import annotations

import base64
import functools
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import plotly.io as pio
import plotly.offline
from plotly.basedatatypes import BaseFigure

import engine
from engine.bundle import BundleMeta
from engine.datasets import get_dataset
from engine.errors import ParamError
from engine.images import as_rgb_uint8, encode_png
from engine.threat import THREAT_ADAPTIVE, THREAT_CLEAN, THREAT_TRANSFER, explain

__all__ = [
    "HOW_TO_READ",
    "REPORT_PARTS",
    "ReportImage",
    "ReportSection",
    "build_report",
    "bundle_provenance",
    "dataset_credit",
    "headline_cards",
    "manifest_provenance",
    "markdown_to_html",
    "robustness_report",
]

HOW_TO_READ = """\
- **Accuracy** is the share of test images the model labels correctly: 90 % means 9 in 10.
  Higher is better.
- An **adversarial attack** changes an image slightly, often invisibly, on purpose, to make the
  model wrong. Its **strength (epsilon)** is the largest change allowed per pixel on the 0-255
  brightness scale: epsilon 8 means no pixel moves by more than 8 of 255 levels.
- A **defence** is a filter applied to every image before the model sees it (for example
  blurring or JPEG compression). It can win back accuracy under attack, but usually costs a
  little accuracy on normal, unattacked images.
- Every robustness number carries a **threat-model label** saying what the attacker knew (see
  "Threat model"). Numbers from attacks that did not know the defence flatter the defence.
- The results come from a limited set of test images: a difference of a few percentage points
  can be chance.
"""
"""Default text (Markdown) of the "How to read this report" box."""

KNOWN_THREAT_MODELS: tuple[str, ...] = (THREAT_CLEAN, THREAT_TRANSFER, THREAT_ADAPTIVE)

# Network loads are forbidden outright; inline scripts and styles are the report itself.
# 'unsafe-eval' is kept because plotly.js compiles WebGL shaders with Function().
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)

_PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}

_CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #52606d; --line: #d9e2ec;
  --accent: #2457a6; --card: #f5f7fa; --info: #eef4ff; --warn: #fff8e1; --warn-line: #f0b429; }
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f5; color: var(--ink);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Sans", sans-serif; }
.report { max-width: 960px; margin: 0 auto; padding: 32px 28px 40px; background: #fff;
  min-height: 100vh; box-shadow: 0 0 24px rgba(15, 23, 42, .08); }
.title-block { border-bottom: 3px solid var(--accent); padding-bottom: 14px; margin-bottom: 24px; }
.kicker { margin: 0; color: var(--accent); font-size: .8rem; font-weight: 600;
  letter-spacing: .08em; text-transform: uppercase; }
h1 { margin: .15em 0; font-size: 2rem; line-height: 1.2; }
h2 { margin: 0 0 .6em; font-size: 1.45rem; line-height: 1.25; }
.subtitle { margin: 0; color: var(--muted); font-size: 1.15rem; }
.generated { margin: .6em 0 0; color: var(--muted); font-size: .85rem; }
section { margin: 44px 0 0; }
.box { margin: 0 0 24px; padding: 16px 20px; border: 1px solid var(--line);
  border-left: 5px solid var(--accent); border-radius: 8px; background: var(--info); }
.box h2 { font-size: 1.15rem; }
.box.warning { border-left-color: var(--warn-line); background: var(--warn); }
.box > :last-child, .text > :last-child { margin-bottom: 0; }
.toc ol { margin: .3em 0 0; padding-left: 1.4em; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 14px;
  margin: 0 0 20px; }
.card { padding: 14px 16px; border: 1px solid var(--line); border-radius: 10px;
  background: var(--card); box-shadow: 0 1px 3px rgba(15, 23, 42, .08); }
.card-label { margin: 0; color: var(--muted); font-size: .85rem; }
.card-value { margin: .15em 0; font-size: 1.9rem; font-weight: 700; line-height: 1.15;
  font-variant-numeric: tabular-nums; }
.card-note { margin: 0; color: var(--muted); font-size: .8rem; }
.figure { margin: 16px 0 24px; }
.images { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 16px;
  margin: 16px 0 24px; }
.images figure { margin: 0; }
.images img { display: block; width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 4px; background: #000; image-rendering: pixelated; }
figcaption { margin-top: 6px; color: var(--muted); font-size: .85rem; }
figcaption strong { display: block; color: var(--ink); }
.table-wrap { margin: 16px 0 24px; overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-size: .9rem;
  font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { border-bottom: 2px solid var(--ink); }
tbody tr:nth-child(even) { background: #fafbfc; }
dl.threats dt { margin-top: 14px; font-weight: 600; }
dl.threats dd { margin: 4px 0 0; padding-left: 14px; border-left: 3px solid var(--line); }
table.provenance th { width: 32%; font-weight: 600; }
table.provenance td { word-break: break-all; }
code { padding: 0 .25em; border-radius: 3px; background: #f0f2f5; font-size: .88em;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
a { color: var(--accent); }
footer { margin-top: 48px; padding-top: 10px; border-top: 1px solid var(--line);
  color: var(--muted); font-size: .8rem; }
@page { margin: 16mm 14mm; }
@media print {
  body { background: #fff; font-size: 11pt; }
  .report { max-width: none; min-height: 0; padding: 0; }
  *, *::before, *::after { box-shadow: none !important; text-shadow: none !important; }
  section.page { margin-top: 0; break-before: page; page-break-before: always; }
  h1, h2 { break-after: avoid; page-break-after: avoid; }
  .figure, .images figure, .card, .box, tr, dl.threats dt, dl.threats dd, .provenance tr {
    break-inside: avoid; page-break-inside: avoid; }
  .table-wrap { overflow: visible; }
  thead { display: table-header-group; }
  .modebar, .modebar-container { display: none !important; }
  a { color: inherit; text-decoration: none; }
  body, .box, .card, code, .images img { -webkit-print-color-adjust: exact;
    print-color-adjust: exact; }
}
"""

# Charts are drawn at the screen width; narrow them to the printable width (A4 and Letter
# with the @page margins are about 670 CSS pixels) before printing, and restore them after.
_PRINT_JS = """
(function () {
  var PRINT_WIDTH = 660;
  function plots() {
    return Array.prototype.slice.call(document.querySelectorAll(".js-plotly-plot"));
  }
  window.addEventListener("beforeprint", function () {
    if (!window.Plotly) { return; }
    plots().forEach(function (gd) {
      if (gd.getBoundingClientRect().width > PRINT_WIDTH) {
        gd.rlWidth = gd.layout.width;
        Plotly.relayout(gd, {width: PRINT_WIDTH});
      }
    });
  });
  window.addEventListener("afterprint", function () {
    if (!window.Plotly) { return; }
    plots().forEach(function (gd) {
      if ("rlWidth" in gd) {
        Plotly.relayout(gd, {width: gd.rlWidth === undefined ? null : gd.rlWidth});
        delete gd.rlWidth;
        Plotly.Plots.resize(gd);
      }
    });
  });
})();
"""


@dataclass(frozen=True)
class ReportImage:
    """An example image shown in a report section, embedded losslessly (PNG).

    Parameters
    ----------
    title : str
        Short label shown under the image (e.g. ``"PGD, eps = 8"``); also its alt text.
    image : numpy.ndarray
        ``(H, W, 3)`` RGB uint8 in 0-255 (anything :func:`engine.images.as_rgb_uint8`
        accepts is converted once, at construction). Small images are enlarged on screen
        without smoothing, so single-pixel changes stay visible.
    caption : str, default=""
        One or two plain-text sentences (e.g. the model's prediction).

    Raises
    ------
    ParamError
        When ``title`` or ``caption`` is not a string.
    ImageError
        When ``image`` cannot be turned into an RGB uint8 image.
    """

    title: str
    image: np.ndarray = field(repr=False)
    caption: str = ""

    def __post_init__(self) -> None:
        _check_str(self.title, "ReportImage.title")
        _check_str(self.caption, "ReportImage.caption")
        object.__setattr__(self, "image", as_rgb_uint8(self.image))


@dataclass(frozen=True)
class ReportSection:
    """One section of a report; it starts on a new page when printed.

    Parts are shown in this order: headline cards, text, charts, images, table.

    Parameters
    ----------
    heading : str
        Section heading (plain text, non-empty).
    text_md : str, default=""
        Body text in the small Markdown subset of :func:`markdown_to_html`.
    figures : sequence of plotly Figure, default=()
        Charts, drawn interactively (plotly.js is embedded once per report).
    images : sequence of ReportImage, default=()
        Example images, shown as a grid.
    table : pandas.DataFrame or None, default=None
        A table; cells are escaped, floats shown with 4 significant digits (format
        columns as strings first, e.g. ``"91.2 %"``, for anything else). The index is
        shown unless it is the default ``0..n-1`` range.
    cards : sequence of (label, value, footnote), default=()
        Headline numbers (see :func:`headline_cards`).

    Raises
    ------
    ParamError
        When the heading is empty or a part has the wrong type.
    """

    heading: str
    text_md: str = ""
    figures: Sequence[BaseFigure] = ()
    images: Sequence[ReportImage] = ()
    table: pd.DataFrame | None = None
    cards: Sequence[tuple[str, str, str]] = ()

    def __post_init__(self) -> None:
        _check_str(self.heading, "ReportSection.heading", nonempty=True)
        _check_str(self.text_md, "ReportSection.text_md")
        for name, items, kind in (
            ("figures", self.figures, BaseFigure),
            ("images", self.images, ReportImage),
        ):
            if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
                raise ParamError(
                    f"ReportSection.{name} must be a list (got {type(items).__name__}) "
                    f"in section {self.heading!r}."
                )
            for i, item in enumerate(items):
                if not isinstance(item, kind):
                    raise ParamError(
                        f"ReportSection.{name}[{i}] must be a {kind.__name__} "
                        f"(got {type(item).__name__}) in section {self.heading!r}."
                    )
        if self.table is not None and not isinstance(self.table, pd.DataFrame):
            raise ParamError(
                f"ReportSection.table must be a pandas DataFrame or None "
                f"(got {type(self.table).__name__}) in section {self.heading!r}."
            )
        _check_cards(self.cards, f"ReportSection.cards in section {self.heading!r}")


def markdown_to_html(text: str) -> str:
    """Convert a tiny, safe subset of Markdown to HTML.

    Supported: paragraphs (separated by blank lines; single line breaks join),
    bullet lists (``- `` or ``* ``), numbered lists (``1. ``), indented
    continuation lines of a list item, ``**bold**``, ``*italic*`` and
    ```code```. Everything else, raw HTML included, is escaped and shown as text.

    Parameters
    ----------
    text : str
        The Markdown source.

    Returns
    -------
    str
        An HTML fragment (``<p>``, ``<ul>``/``<ol>`` elements); empty for blank text.

    Examples
    --------
    >>> markdown_to_html("**Note** <b>\\n\\n- one\\n- two")
    '<p><strong>Note</strong> &lt;b&gt;</p>\\n<ul><li>one</li><li>two</li></ul>'
    """
    _check_str(text, "text")
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []
    kind = ""

    def flush_para() -> None:
        if para:
            blocks.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def flush_list() -> None:
        nonlocal kind
        if items:
            body = "".join(f"<li>{_inline(item)}</li>" for item in items)
            blocks.append(f"<{kind}>{body}</{kind}>")
            items.clear()
        kind = ""

    for line in text.splitlines():
        if not line.strip():
            flush_para()
            flush_list()
            continue
        bullet = _BULLET.match(line)
        numbered = None if bullet else _NUMBERED.match(line)
        if bullet or numbered:
            flush_para()
            new_kind = "ul" if bullet else "ol"
            if kind != new_kind:
                flush_list()
                kind = new_kind
            items.append((bullet or numbered).group(1).strip())
        elif items and line[:1].isspace():
            items[-1] += " " + line.strip()
        else:
            flush_list()
            para.append(line.strip())
    flush_para()
    flush_list()
    return "\n".join(blocks)


def headline_cards(cards: Sequence[tuple[str, str, str]]) -> str:
    """Render headline numbers as a row of cards.

    Parameters
    ----------
    cards : sequence of (label, value, footnote)
        Plain-text strings, e.g. ``("Accuracy under PGD, eps = 8", "12 %", "624 images")``;
        ``value`` must be non-empty, ``footnote`` may be ``""``.

    Returns
    -------
    str
        An HTML fragment (empty when ``cards`` is empty); it uses the report's style sheet.

    Raises
    ------
    ParamError
        When a card is not a (label, value, footnote) triple of strings.
    """
    _check_cards(cards, "cards")
    if not cards:
        return ""
    out = []
    for label, value, note in cards:
        note_html = f'<p class="card-note">{_esc(note)}</p>' if note else ""
        out.append(
            f'<div class="card"><p class="card-label">{_esc(label)}</p>'
            f'<p class="card-value">{_esc(value)}</p>{note_html}</div>'
        )
    return '<div class="cards">' + "".join(out) + "</div>"


def dataset_credit(dataset: str) -> str:
    """One credit line for a dataset: its title, licence and attribution.

    Parameters
    ----------
    dataset : str
        A registry id (see :data:`engine.datasets.REGISTRY`) or a dataset folder.

    Returns
    -------
    str
        Plain text, e.g. ``"Pediatric chest X-rays (Kermany). Licence: CC BY 4.0.
        Source: Kermany, Zhang, Goldbaum, ..."``. Show the dataset's ``caveat`` as well,
        in the report's ``caveats``.

    Raises
    ------
    DatasetError
        For an unknown id.
    """
    spec = get_dataset(dataset)
    parts = [spec.title]
    if spec.licence:
        parts.append(f"Licence: {spec.licence}")
    if spec.attribution:
        parts.append(f"Source: {spec.attribution}")
    return " ".join(p if p.endswith(".") else p + "." for p in parts)


def bundle_provenance(meta: BundleMeta) -> dict[str, str]:
    """Provenance rows describing a model bundle (for :func:`build_report`).

    Parameters
    ----------
    meta : BundleMeta
        From :func:`engine.bundle.read_meta`.

    Returns
    -------
    dict of str to str
        Model, hash, dataset, creation time, data fingerprints and library versions;
        empty fields are left out.
    """
    rows = {
        "Model": f"{meta.backbone} ({meta.weights} weights), input {meta.input_size} px",
        "Model hash (SHA-256)": meta.model_sha256,
        "Trained on": meta.dataset_id,
        "Model created": meta.created,
    }
    for split, fingerprint in meta.data_fingerprints.items():
        rows[f"Data fingerprint ({split})"] = str(fingerprint)
    for lib, version in meta.versions.items():
        rows[f"{lib} version"] = str(version)
    return {k: v for k, v in rows.items() if v}


def manifest_provenance(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Provenance rows describing a results folder's ``manifest.json``.

    Parameters
    ----------
    manifest : mapping
        From :func:`engine.evaluation.results.load_manifest`; missing fields are skipped.

    Returns
    -------
    dict of str to str
        Sweep name and spec hash, status, engine version, code version, model hash,
        dataset, split, fingerprint, image count, seed and run times.
    """

    def get(*keys: str) -> Any:
        node: Any = manifest
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node

    commit = get("git", "commit")
    if commit and get("git", "dirty"):
        commit = f"{commit} (with uncommitted changes)"
    split = get("data", "split")
    dataset = get("data", "dataset_id")
    rows = {
        "Results": get("spec", "name"),
        "Results status": get("status"),
        "Results spec hash (SHA-256)": get("spec", "sha256"),
        "Results engine version": get("engine_version"),
        "Results code version (git)": commit,
        "Results model hash (SHA-256)": get("model", "model_sha256"),
        "Results dataset": f"{dataset}, {split} split" if dataset and split else dataset,
        "Results data fingerprint": get("data", "fingerprint"),
        "Test images": get("data", "n_images"),
        "Seed": get("seeds", "spec"),
        "Results started": get("started"),
        "Results finished": get("ended"),
    }
    return {k: str(v) for k, v in rows.items() if v is not None and v != ""}


def build_report(
    *,
    title: str,
    subtitle: str = "",
    sections: Sequence[ReportSection],
    threat_models: Sequence[str],
    credits: Sequence[str],
    provenance: Mapping[str, str],
    caveats: Sequence[str] = (),
    generated_at: str | None = None,
    how_to_read: str = HOW_TO_READ,
) -> str:
    """Assemble a complete, self-contained HTML report.

    Parameters
    ----------
    title : str
        Report title (non-empty).
    subtitle : str, default=""
        One line under the title (model, dataset, attack...).
    sections : sequence of ReportSection
        The body, at least one section; each starts on a new printed page.
    threat_models : sequence of str
        The threat-model labels (:mod:`engine.threat`) of the numbers in the report; each
        is explained in the "Threat model" section. Empty when no attack is reported.
    credits : sequence of str
        Data and licence attributions (see :func:`dataset_credit`), plain text.
    provenance : mapping of str to str
        How the results were made (model hash, results manifest...; see
        :func:`bundle_provenance`, :func:`manifest_provenance`). The generation time and
        the engine version are added unless given.
    caveats : sequence of str, default=()
        Known limits of the results (e.g. the dataset's ``caveat``), shown prominently on
        the first page; plain text.
    generated_at : str or None, default=None
        Timestamp shown in the header; ``None`` for the current UTC time. Give it to get
        byte-identical reports from identical inputs.
    how_to_read : str, default=HOW_TO_READ
        Markdown of the "How to read this report" box.

    Returns
    -------
    str
        The HTML document. Write it with ``encoding="utf-8"``.

    Raises
    ------
    ParamError
        For an empty title, no sections, a section that is not a ReportSection, or an
        unknown threat-model label.
    """
    _check_str(title, "title", nonempty=True)
    _check_str(subtitle, "subtitle")
    _check_str(how_to_read, "how_to_read")
    if isinstance(sections, ReportSection) or not isinstance(sections, Sequence):
        raise ParamError(
            f"sections must be a list of ReportSection (got {type(sections).__name__})."
        )
    if not sections:
        raise ParamError("sections: a report needs at least one section (got none).")
    for i, section in enumerate(sections):
        if not isinstance(section, ReportSection):
            raise ParamError(
                f"sections[{i}] must be a ReportSection (got {type(section).__name__})."
            )
    labels = _check_threat_models(threat_models)
    credit_lines = _check_str_list(credits, "credits")
    caveat_lines = _check_str_list(caveats, "caveats")
    if not isinstance(provenance, Mapping):
        raise ParamError(
            f"provenance must be a mapping of str to str (got {type(provenance).__name__})."
        )
    if generated_at is None:
        generated_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    _check_str(generated_at, "generated_at")

    has_figures = any(s.figures for s in sections)
    fig_counter = iter(range(1, 1 + sum(len(s.figures) for s in sections)))

    front = [
        _title_block(title, subtitle, generated_at),
        _box("How to read this report", markdown_to_html(how_to_read)),
    ]
    if caveat_lines:
        items = "".join(f"<li>{_esc(c)}</li>" for c in caveat_lines)
        front.append(_box("Limits of these results", f"<ul>{items}</ul>", warning=True))
    front.append(_threat_section(labels))
    front.append(_toc(sections))

    body = [_section_html(s, i, fig_counter) for i, s in enumerate(sections, start=1)]
    back = _back_matter(credit_lines, provenance, generated_at, has_figures)

    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="RobustLens engine {_esc(engine.__version__)}">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
    ]
    if has_figures:
        head.append("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>")
        head.append(f'<script id="plotly-library">{_plotly_js()}</script>')
    head.append("</head>")
    tail = [f"<script>{_PRINT_JS}</script>"] if has_figures else []
    return "\n".join(
        [
            *head,
            "<body>",
            '<main class="report">',
            *front,
            *body,
            back,
            "</main>",
            *tail,
            "</body>",
            "</html>",
            "",
        ]
    )


# --- helpers -------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*[-*]\s+(\S.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(\S.*)$")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])")
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escape one line of text, then apply code, bold and italic."""
    parts = _CODE.split(text)  # odd positions are code spans
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{_esc(part)}</code>")
        else:
            escaped = _BOLD.sub(r"<strong>\1</strong>", _esc(part))
            out.append(_ITALIC.sub(r"<em>\1</em>", escaped))
    return "".join(out)


def _check_str(value: object, name: str, *, nonempty: bool = False) -> None:
    if not isinstance(value, str):
        raise ParamError(f"{name} must be a string (got {type(value).__name__}).")
    if nonempty and not value.strip():
        raise ParamError(f"{name} must not be empty (got {value!r}).")


def _check_str_list(values: Sequence[str], name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ParamError(f"{name} must be a list of strings (got {type(values).__name__}).")
    for i, value in enumerate(values):
        _check_str(value, f"{name}[{i}]")
    return [v for v in values if v.strip()]


def _check_cards(cards: Sequence[tuple[str, str, str]], name: str) -> None:
    if isinstance(cards, str) or not isinstance(cards, Sequence):
        raise ParamError(
            f"{name} must be a list of (label, value, footnote) (got {type(cards).__name__})."
        )
    for i, card in enumerate(cards):
        if (
            not isinstance(card, (tuple, list))
            or len(card) != 3
            or not all(isinstance(part, str) for part in card)
        ):
            raise ParamError(
                f"{name}[{i}] must be a (label, value, footnote) triple of strings (got {card!r})."
            )
        if not card[1].strip():
            raise ParamError(f"{name}[{i}] has an empty value (label {card[0]!r}).")


def _check_threat_models(threat_models: Sequence[str]) -> list[str]:
    labels = _check_str_list(threat_models, "threat_models")
    for label in labels:
        if not explain(label):
            known = "; ".join(repr(k) for k in KNOWN_THREAT_MODELS)
            raise ParamError(
                f"threat_models: unknown label {label!r}; use the labels of engine.threat: {known}."
            )
    return list(dict.fromkeys(labels))


@functools.cache
def _plotly_js() -> str:
    # plotly.js contains no "</script" today; escape it anyway so it can never end the tag.
    return _SCRIPT_END.sub(r"<\\/\1", plotly.offline.get_plotlyjs())


def _box(heading: str, inner: str, *, warning: bool = False) -> str:
    cls = "box warning" if warning else "box"
    return f'<div class="{cls}"><h2>{_esc(heading)}</h2>{inner}</div>'


def _title_block(title: str, subtitle: str, generated_at: str) -> str:
    sub = f'<p class="subtitle">{_esc(subtitle)}</p>' if subtitle.strip() else ""
    when = f'<p class="generated">Generated {_esc(generated_at)}</p>' if generated_at else ""
    return (
        f'<header class="title-block"><p class="kicker">RobustLens report</p>'
        f"<h1>{_esc(title)}</h1>{sub}{when}</header>"
    )


def _threat_section(labels: list[str]) -> str:
    parts = ['<section id="threat-model">', "<h2>Threat model: what the attacker knew</h2>"]
    if not labels:
        parts.append("<p>This report contains no attack results.</p>")
    else:
        parts.append(
            "<p>Every robustness number in this report carries one of these labels. "
            "It says what the attacker knew when the attacked images were made.</p>"
        )
        items = "".join(f"<dt>{_esc(lab)}</dt><dd>{_esc(explain(lab))}</dd>" for lab in labels)
        parts.append(f'<dl class="threats">{items}</dl>')
        if THREAT_ADAPTIVE not in labels and any(lab != THREAT_CLEAN for lab in labels):
            parts.append(
                _box(
                    "No adaptive attack in this report",
                    "<p>None of these results comes from an attacker who knows the defence. "
                    "A defence that looks strong here can still fall to such an attack "
                    "(Athalye, Carlini and Wagner, 2018): read its numbers as the best case."
                    "</p>",
                    warning=True,
                )
            )
    parts.append("</section>")
    return "\n".join(parts)


def _toc(sections: Sequence[ReportSection]) -> str:
    items = [
        f'<li><a href="#section-{i}">{_esc(s.heading)}</a></li>'
        for i, s in enumerate(sections, start=1)
    ]
    items.append('<li><a href="#credits">Data and credits</a></li>')
    items.append('<li><a href="#provenance">How these results were made</a></li>')
    return f'<nav class="toc"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def _figure_html(fig: BaseFigure, number: int) -> str:
    div = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=f"figure-{number}",
        config=_PLOTLY_CONFIG,
    )
    return f'<div class="figure">{div}</div>'


def _image_html(item: ReportImage) -> str:
    data = base64.b64encode(encode_png(item.image)).decode("ascii")
    h, w = item.image.shape[:2]
    caption = f"<strong>{_esc(item.title)}</strong>" if item.title else ""
    if item.caption:
        caption += _esc(item.caption)
    cap_html = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{w}" height="{h}" '
        f'alt="{_esc(item.title or "example image")}">{cap_html}</figure>'
    )


def _format_float(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def _table_html(table: pd.DataFrame) -> str:
    show_index = not (
        isinstance(table.index, pd.RangeIndex) and table.index.start == 0 and table.index.step == 1
    )
    inner = table.to_html(
        index=show_index,
        escape=True,
        border=0,
        na_rep="n/a",
        float_format=_format_float,
        classes="data",
    )
    return f'<div class="table-wrap">{inner}</div>'


def _section_html(section: ReportSection, number: int, fig_counter: Any) -> str:
    parts = [f'<section class="page" id="section-{number}">', f"<h2>{_esc(section.heading)}</h2>"]
    if section.cards:
        parts.append(headline_cards(section.cards))
    if section.text_md.strip():
        parts.append(f'<div class="text">{markdown_to_html(section.text_md)}</div>')
    parts.extend(_figure_html(fig, next(fig_counter)) for fig in section.figures)
    if section.images:
        parts.append(
            '<div class="images">' + "".join(_image_html(im) for im in section.images) + "</div>"
        )
    if section.table is not None:
        parts.append(_table_html(section.table))
    parts.append("</section>")
    return "\n".join(parts)


def _back_matter(
    credits: list[str], provenance: Mapping[str, str], generated_at: str, has_figures: bool
) -> str:
    lines = list(credits)
    if has_figures:
        lines.append(
            "Charts drawn with plotly.js (MIT licence, Plotly, Inc.), embedded in this file."
        )
    if lines:
        credit_html = "<ul>" + "".join(f"<li>{_esc(c)}</li>" for c in lines) + "</ul>"
    else:
        credit_html = "<p>No third-party data or software is credited in this report.</p>"

    rows = {"Report generated": generated_at, "Engine version": engine.__version__}
    given = {str(k).strip().casefold() for k in provenance}
    rows = {k: v for k, v in rows.items() if k.casefold() not in given and v}
    rows.update({str(k): str(v) for k, v in provenance.items()})
    body = "".join(
        f'<tr><th scope="row">{_esc(k)}</th><td>{_esc(v)}</td></tr>' for k, v in rows.items()
    )
    return "\n".join(
        [
            '<section class="page" id="credits">',
            "<h2>Data and credits</h2>",
            credit_html,
            "</section>",
            '<section id="provenance">',
            "<h2>How these results were made</h2>",
            "<p>The exact model, data and code behind the numbers, so that they can be "
            "checked and reproduced.</p>",
            '<div class="table-wrap"><table class="provenance">',
            f"<tbody>{body}</tbody></table></div>",
            "</section>",
            f"<footer>Made with RobustLens engine {_esc(engine.__version__)}. "
            "This file is self-contained: it works offline and loads nothing from the "
            "network.</footer>",
        ]
    )


# --------------------------------------------------------------------------- the dashboard's report

#: Parts a robustness report can include, in order (ids -> titles).
REPORT_PARTS: dict[str, str] = {
    "headline": "Headline numbers",
    "accuracy": "Accuracy against attack strength",
    "two_panel": "Model and patient view (seed 001)",
    "tradeoff": "Defence trade-off",
    "confusion": "Confusion matrices under attack",
    "example": "A live example",
}


def robustness_report(
    *,
    df: pd.DataFrame,
    manifest: Mapping[str, Any],
    meta: BundleMeta,
    title: str,
    subtitle: str = "",
    attack: str = "fgsm",
    eps: float = 8.0,
    parts: Sequence[str] = tuple(REPORT_PARTS),
    example: Any = None,
    generated_at: str | None = None,
) -> str:
    """The dashboard's stakeholder report for one model and its recap results.

    Parameters
    ----------
    df, manifest : pandas.DataFrame, mapping
        A recap results table and its manifest (:func:`engine.evaluation.load_results`).
    meta : BundleMeta
        The model's metadata.
    title, subtitle : str
        Shown at the top.
    attack, eps : str, float
        The attack and budget the headline, trade-off and confusion parts use
        (the nearest precomputed budget is used, and said).
    parts : sequence of str
        Keys of :data:`REPORT_PARTS` to include.
    example : engine.lab.LabResult, optional
        A live lab result for the "example" part.
    generated_at : str, optional
        Fixed timestamp (for reproducible files).

    Returns
    -------
    str
        The HTML document (:func:`build_report`).
    """
    from app import charts, views  # plotly figures; no TensorFlow

    unknown = [p for p in parts if p not in REPORT_PARTS]
    if unknown:
        raise ParamError(
            f"Unknown report part(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(REPORT_PARTS)}."
        )
    if not parts:
        raise ParamError("Choose at least one part for the report.")
    h = views.headline(df, attack=attack, eps=eps)
    used = h["eps"]
    att = views.attack_title(attack)
    threats = [THREAT_CLEAN, THREAT_TRANSFER]
    note = f" ({h['note']})" if h["note"] else ""
    sections: list[ReportSection] = []
    if "headline" in parts:
        cards = [
            ("Clean accuracy", f"{h['clean_accuracy']:.1%}", f"{h['n_images']} test images"),
            (
                f"Under {att}, ε = {used:g}",
                f"{h['attacked_accuracy']:.1%}",
                "no defence; attack crafted on the model",
            ),
        ]
        text = (
            f"On **{h['n_images']}** test images the model is right **{h['clean_accuracy']:.1%}** "
            f"of the time. An attacker who may change every pixel by at most **{used:g}** of "
            f"255 grey levels{note} brings that down to **{h['attacked_accuracy']:.1%}**."
        )
        if h["best_key"] is not None:
            cards.append(
                (
                    f"Best defence: {h['best_label']}",
                    f"{h['best_accuracy']:.1%}",
                    f"{h['recovered']:+.1%} recovered, {h['best_clean_cost']:+.1%} clean cost",
                )
            )
            text += (
                f" Passing the attacked images through **{h['best_label']}** gives back "
                f"**{h['best_accuracy']:.1%}**, at a cost of {h['best_clean_cost']:.1%} on "
                "images nobody attacked. The attacker here does not know about the defence: "
                "one who does would do better."
            )
        sections.append(ReportSection("Headline numbers", text, cards=cards))
    keys = [views.NO_DEFENCE] + ([h["best_key"]] if h["best_key"] else [])
    if "nlm+bilateral+guided" in set(df["defence_key"]):
        keys.append("nlm+bilateral+guided")
    if "accuracy" in parts:
        sections.append(
            ReportSection(
                "Accuracy against attack strength",
                "Each line is one way of cleaning the images before the model sees them. "
                "Further right, the attacker may change pixels more.",
                figures=[
                    charts.metric_vs_eps(df, metric="accuracy", attack=attack, defence_keys=keys)
                ],
            )
        )
    if "two_panel" in parts:
        sections.append(
            ReportSection(
                "Model and patient view",
                "Left: how the model scores. Right, for medical data: what it means for "
                "patients; the false-negative rate is the share of sick patients missed.",
                figures=[charts.two_panel(df, attack=attack, manifest=manifest)],
            )
        )
    if "tradeoff" in parts:
        sections.append(
            ReportSection(
                "Defence trade-off",
                "Up is good (accuracy won back under attack); left is good (little lost on "
                "clean images).",
                figures=[charts.tradeoff(df, attack=attack, eps=used)],
            )
        )
    if "confusion" in parts:
        classes = list(manifest.get("model", {}).get("classes") or meta.classes)
        figs = []
        for key in keys[:2]:
            row = views.find_row(df, attack, used, key)
            if row is not None:
                figs.append(
                    charts.confusion_heatmap(
                        row["confusion"],
                        classes,
                        title=f"{att} ε={used:g}, {views.setting_label(key)}",
                    )
                )
        sections.append(
            ReportSection(
                "Confusion matrices under attack",
                "Rows are the true class, columns what the model said.",
                figures=figs,
            )
        )
    if "example" in parts and example is not None:
        name = example.classes
        sections.append(
            ReportSection(
                "A live example",
                f"One image, attacked with {example.attack_title} at ε = "
                f"{example.attack_params.get('eps', 0):g} and cleaned with "
                f"{example.defence_title}. {example.perturbation_scale}.",
                images=[
                    ReportImage(
                        "Original",
                        example.original,
                        f"model says {name[example.pred_clean.label]} "
                        f"({example.pred_clean.confidence:.0%})",
                    ),
                    ReportImage("Perturbation (amplified)", example.perturbation_view),
                    ReportImage(
                        "Attacked",
                        example.adversarial,
                        f"model says {name[example.pred_adv.label]} "
                        f"({example.pred_adv.confidence:.0%})",
                    ),
                    ReportImage(
                        "Defended",
                        example.defended,
                        f"model says {name[example.pred_defended.label]} "
                        f"({example.pred_defended.confidence:.0%})",
                    ),
                ],
            )
        )
    spec = get_dataset(meta.dataset_id)
    caveats = [c for c in (spec.caveat, meta.notes) if c]
    caveats.append(
        "Robustness numbers come from attacks crafted on the undefended model; an attacker "
        "who knows the defence (adaptive attack) usually does better."
    )
    provenance = {**bundle_provenance(meta), **manifest_provenance(manifest)}
    return build_report(
        title=title,
        subtitle=subtitle,
        sections=sections,
        threat_models=threats,
        credits=[dataset_credit(meta.dataset_id)],
        provenance=provenance,
        caveats=caveats,
        generated_at=generated_at,
    )
