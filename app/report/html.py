"""The generic report builder: one self-contained, offline HTML file for non-experts.

:func:`build_report` assembles headline cards, text, Plotly charts, example
images and tables into a single HTML document with, always:

* a **"How to read this report"** box (accuracy, attack strength, defences,
  threat-model labels, chance differences, in plain language);
* a **"Threat model"** section explaining each label the report uses
  (:func:`engine.threat.explain`), with a warning when no result comes from an
  adaptive attack;
* a **"Data and credits"** section (dataset licences and attributions; see
  :func:`app.report.robustness.dataset_credit`) and a **provenance** table
  (engine version, model hash, results manifest; see
  :func:`app.report.robustness.bundle_provenance` and
  :func:`app.report.robustness.manifest_provenance`).

The style sheet and the print script are the files ``report.css`` and
``print.js`` beside this module, embedded in every report.

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
of Markdown (see :func:`app.report.text.markdown_to_html`); raw HTML in it is
shown as text.

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
>>> from app.report import ReportSection, build_report, dataset_credit
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

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import plotly.offline

import engine
from app.report.section import ReportSection, section_html
from app.report.text import check_str, escape, markdown_to_html
from engine.errors import ParamError
from engine.threat import THREAT_ADAPTIVE, THREAT_CLEAN, THREAT_TRANSFER, explain, is_adaptive

__all__ = [
    "CSP",
    "HOW_TO_READ",
    "KNOWN_THREAT_MODELS",
    "build_report",
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

#: Network loads are forbidden outright; inline scripts and styles are the report itself.
# 'unsafe-eval' is kept because plotly.js compiles WebGL shaders with Function().
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)


_HERE = Path(__file__).resolve().parent
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


@functools.cache
def _asset(name: str) -> str:
    """The text of ``report.css`` or ``print.js`` (beside this module)."""
    return (_HERE / name).read_text(encoding="utf-8")


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
        Data and licence attributions (see :func:`app.report.robustness.dataset_credit`),
        plain text.
    provenance : mapping of str to str
        How the results were made (model hash, results manifest...; see
        :mod:`app.report.robustness`). The generation time and
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
    check_str(title, "title", nonempty=True)
    check_str(subtitle, "subtitle")
    check_str(how_to_read, "how_to_read")
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
    check_str(generated_at, "generated_at")

    has_figures = any(s.figures for s in sections)
    fig_counter = iter(range(1, 1 + sum(len(s.figures) for s in sections)))

    front = [
        _title_block(title, subtitle, generated_at),
        _box("How to read this report", markdown_to_html(how_to_read)),
    ]
    if caveat_lines:
        items = "".join(f"<li>{escape(c)}</li>" for c in caveat_lines)
        front.append(_box("Limits of these results", f"<ul>{items}</ul>", warning=True))
    front.append(_threat_section(labels))
    front.append(_toc(sections))

    body = [section_html(s, i, fig_counter) for i, s in enumerate(sections, start=1)]
    back = _back_matter(credit_lines, provenance, generated_at, has_figures)

    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="RobustLens engine {escape(engine.__version__)}">',
        f"<title>{escape(title)}</title>",
        f"<style>\n{_asset('report.css')}</style>",
    ]
    if has_figures:
        head.append("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>")
        head.append(f'<script id="plotly-library">{_plotly_js()}</script>')
    head.append("</head>")
    tail = [f"<script>\n{_asset('print.js')}</script>"] if has_figures else []
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


def _check_str_list(values: Sequence[str], name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ParamError(f"{name} must be a list of strings (got {type(values).__name__}).")
    for i, value in enumerate(values):
        check_str(value, f"{name}[{i}]")
    return [v for v in values if v.strip()]


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
    return f'<div class="{cls}"><h2>{escape(heading)}</h2>{inner}</div>'


def _title_block(title: str, subtitle: str, generated_at: str) -> str:
    sub = f'<p class="subtitle">{escape(subtitle)}</p>' if subtitle.strip() else ""
    when = f'<p class="generated">Generated {escape(generated_at)}</p>' if generated_at else ""
    return (
        f'<header class="title-block"><p class="kicker">RobustLens report</p>'
        f"<h1>{escape(title)}</h1>{sub}{when}</header>"
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
        items = "".join(f"<dt>{escape(lab)}</dt><dd>{escape(explain(lab))}</dd>" for lab in labels)
        parts.append(f'<dl class="threats">{items}</dl>')
        if not any(map(is_adaptive, labels)) and any(lab != THREAT_CLEAN for lab in labels):
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
        f'<li><a href="#section-{i}">{escape(s.heading)}</a></li>'
        for i, s in enumerate(sections, start=1)
    ]
    items.append('<li><a href="#credits">Data and credits</a></li>')
    items.append('<li><a href="#provenance">How these results were made</a></li>')
    return f'<nav class="toc"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def _back_matter(
    credits: list[str], provenance: Mapping[str, str], generated_at: str, has_figures: bool
) -> str:
    lines = list(credits)
    if has_figures:
        lines.append(
            "Charts drawn with plotly.js (MIT licence, Plotly, Inc.), embedded in this file."
        )
    if lines:
        credit_html = "<ul>" + "".join(f"<li>{escape(c)}</li>" for c in lines) + "</ul>"
    else:
        credit_html = "<p>No third-party data or software is credited in this report.</p>"

    rows = {"Report generated": generated_at, "Engine version": engine.__version__}
    given = {str(k).strip().casefold() for k in provenance}
    rows = {k: v for k, v in rows.items() if k.casefold() not in given and v}
    rows.update({str(k): str(v) for k, v in provenance.items()})
    body = "".join(
        f'<tr><th scope="row">{escape(k)}</th><td>{escape(v)}</td></tr>' for k, v in rows.items()
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
            f"<footer>Made with RobustLens engine {escape(engine.__version__)}. "
            "This file is self-contained: it works offline and loads nothing from the "
            "network.</footer>",
        ]
    )
