"""One section of a report and the HTML of its parts: cards, text, charts, notes, images, table."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.io as pio
from plotly.basedatatypes import BaseFigure

from app.report.text import check_str, escape, markdown_to_html
from engine.errors import ParamError
from engine.images import as_rgb_uint8, encode_png

__all__ = ["ReportImage", "ReportNote", "ReportSection", "headline_cards", "section_html"]

_PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}


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
        check_str(self.title, "ReportImage.title")
        check_str(self.caption, "ReportImage.caption")
        object.__setattr__(self, "image", as_rgb_uint8(self.image))


@dataclass(frozen=True)
class ReportNote:
    """A short note shown in a box right under a section's charts (e.g. a sanity finding).

    Parameters
    ----------
    text_md : str
        One or two sentences in the Markdown subset of :func:`markdown_to_html`.
    warning : bool, default=True
        Shown in the warning colours; ``False`` for a plain remark (a baseline).

    Raises
    ------
    ParamError
        When ``text_md`` is not a non-empty string.
    """

    text_md: str
    warning: bool = True

    def __post_init__(self) -> None:
        check_str(self.text_md, "ReportNote.text_md", nonempty=True)


@dataclass(frozen=True)
class ReportSection:
    """One section of a report; it starts on a new page when printed.

    Parts are shown in this order: headline cards, text, charts, notes, images, table.

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
    notes : sequence of ReportNote, default=()
        Boxes right under the charts, about what they show.

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
    notes: Sequence[ReportNote] = ()

    def __post_init__(self) -> None:
        check_str(self.heading, "ReportSection.heading", nonempty=True)
        check_str(self.text_md, "ReportSection.text_md")
        for name, items, kind in (
            ("figures", self.figures, BaseFigure),
            ("images", self.images, ReportImage),
            ("notes", self.notes, ReportNote),
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
        note_html = f'<p class="card-note">{escape(note)}</p>' if note else ""
        out.append(
            f'<div class="card"><p class="card-label">{escape(label)}</p>'
            f'<p class="card-value">{escape(value)}</p>{note_html}</div>'
        )
    return '<div class="cards">' + "".join(out) + "</div>"


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
    caption = f"<strong>{escape(item.title)}</strong>" if item.title else ""
    if item.caption:
        caption += escape(item.caption)
    cap_html = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{w}" height="{h}" '
        f'alt="{escape(item.title or "example image")}">{cap_html}</figure>'
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


def section_html(section: ReportSection, number: int, fig_counter: Iterator[int]) -> str:
    """The ``<section>`` of one report section; figures are numbered from ``fig_counter``."""
    parts = [f'<section class="page" id="section-{number}">', f"<h2>{escape(section.heading)}</h2>"]
    if section.cards:
        parts.append(headline_cards(section.cards))
    if section.text_md.strip():
        parts.append(f'<div class="text">{markdown_to_html(section.text_md)}</div>')
    parts.extend(_figure_html(fig, next(fig_counter)) for fig in section.figures)
    parts.extend(
        f'<div class="box{" warning" if note.warning else ""} note">'
        f"{markdown_to_html(note.text_md)}</div>"
        for note in section.notes
    )
    if section.images:
        parts.append(
            '<div class="images">' + "".join(_image_html(im) for im in section.images) + "</div>"
        )
    if section.table is not None:
        parts.append(_table_html(section.table))
    parts.append("</section>")
    return "\n".join(parts)
