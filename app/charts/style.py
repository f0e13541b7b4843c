"""The look of every dashboard figure: colours, fonts, titles, axes, hover text, downloads.

The figure modules (:mod:`app.charts.curves`, :mod:`app.charts.tradeoff`,
:mod:`app.charts.model`) draw through these helpers, so every figure carries
what a reader needs to trust it: axis titles with units, hover text with the
exact value, the number of images, the defence setting and the threat model,
the threat model as the subtitle, and one colour per defence family
(:data:`FAMILY_COLOURS`, "no defence" near-black so that it stands out).
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from app import labels
from app.labels import EPS_AXIS, METRICS
from engine.errors import ParamError
from engine.evaluation import keys, query
from engine.evaluation.keys import CHAIN_SEP, NO_DEFENCE
from engine.threat import (
    ADAPTIVE,
    THREAT_ADAPTIVE,
    THREAT_TRANSFER,
    TRANSFER,
    is_adaptive,
    parse_adaptive,
)

__all__ = [
    "ADAPTIVE_LEGEND",
    "ADAPTIVE_MARKER_LEGEND",
    "CHART_CONFIG",
    "CHART_CONFIG_SVG",
    "DASHES",
    "FAMILY_COLOURS",
    "HOVER",
    "LIVE_COLOUR",
    "ONLY_TRANSFER_NOTE",
    "PANEL_COLOURS",
    "SYMBOLS",
    "TRANSFER_LEGEND",
    "TRANSFER_MARKER_LEGEND",
    "adaptive_curves",
    "adaptive_rows",
    "base_layout",
    "centre_note",
    "chart_config",
    "eps_axis",
    "eps_curve",
    "family_colour",
    "hover_text",
    "images_note",
    "legend_group",
    "legend_title_text",
    "metric_axis_title",
    "open_symbol",
    "plot_value",
    "rows_for",
    "style_per_key",
    "threat_subtitle",
    "threats_subtitle",
    "title_on_top",
    "y_axis",
]


def chart_config(filename: str = "robustlens_chart", fmt: str = "png") -> dict[str, Any]:
    """A plotly ``config`` whose modebar downloads the figure.

    Parameters
    ----------
    filename : str, default="robustlens_chart"
        File name without extension.
    fmt : {"png", "svg", "jpeg", "webp"}, default="png"
        Image format; raster formats are saved at 2x scale.

    Returns
    -------
    dict
        For ``st.plotly_chart(fig, config=...)`` or ``fig.write_html(..., config=...)``.
    """
    if fmt not in ("png", "svg", "jpeg", "webp"):
        raise ParamError(f"Unknown image format {fmt!r}; known: png, svg, jpeg, webp.")
    return {
        "displaylogo": False,
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
        "toImageButtonOptions": {"format": fmt, "filename": filename, "scale": 2},
    }


#: Modebar config: the camera button saves a PNG at 2x scale.
CHART_CONFIG: dict[str, Any] = chart_config()
#: Same, saving an SVG (vector) instead.
CHART_CONFIG_SVG: dict[str, Any] = chart_config(fmt="svg")

#: Defence family -> colour. "none" is near-black; chains (ids joined by "+") are red.
FAMILY_COLOURS: dict[str, str] = {
    NO_DEFENCE: "#222222",
    "nlm": "#1f77b4",
    "bilateral": "#ff7f0e",
    "guided": "#2ca02c",
    "gaussian": "#9467bd",
    "median": "#8c564b",
    "webp_flip": "#e377c2",
    "jpeg": "#17becf",
    "bit_depth": "#bcbd22",
}
_CHAIN_COLOUR = "#d62728"
_SPARE_COLOURS = ("#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
#: Colour of the live (recomputed on a few images) overlay.
LIVE_COLOUR = "#c51b7d"
#: Hover text is given per point; this template shows it without the trace box.
HOVER = "%{hovertext}<extra></extra>"

#: Line dashes and marker symbols that tell apart the settings of one family.
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "pentagon")
#: Metric -> line colour in seed 001's two panels.
PANEL_COLOURS = {
    "accuracy": "#1f77b4",
    "macro_recall": "#ff7f0e",
    "macro_specificity": "#2ca02c",
    "fooling_rate": "#d62728",
    "patient_accuracy": "#1f77b4",
    "sensitivity": "#9467bd",
    "npv": "#17becf",
    "fnr": "#d62728",
}
_FONT = {"family": "Inter, Arial, sans-serif", "size": 13}
_TITLE_WIDTH = 70  # characters per title line (17 px font, ~600 px)
_SUBTITLE_WIDTH = 95  # characters per subtitle line (12 px font)
_TRANSFER_CAVEAT = "an attacker who knows the defence does better (Athalye et al. 2018)"
#: Legend-group titles of a chart drawing both threat models (solid transfer, dashed adaptive).
TRANSFER_LEGEND = f"Solid: attacker does not know the defence ({TRANSFER.title.lower()})"
ADAPTIVE_LEGEND = f"Dashed: attacker knows the defence ({ADAPTIVE.title.lower()}: BPDA/EOT)"
#: The same for a chart of points: transfer points filled, adaptive points open (hollow).
TRANSFER_MARKER_LEGEND = f"Filled: attacker does not know the defence ({TRANSFER.title.lower()})"
ADAPTIVE_MARKER_LEGEND = f"Open: attacker knows it ({ADAPTIVE.title.lower()}: BPDA/EOT)"
#: Characters per line of a legend-group title wrapped by :func:`legend_group`.
LEGEND_TITLE_WIDTH = 34
#: Said on a chart of defences when the table has no adaptive rows for what it draws.
ONLY_TRANSFER_NOTE = (
    f"only {TRANSFER.title.lower()} rows: no {ADAPTIVE.title.lower()} attack "
    "in this table for these settings"
)


def family_colour(family: str) -> str:
    """The colour of a defence family (stable across figures and sessions)."""
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    if CHAIN_SEP in family:
        return _CHAIN_COLOUR
    return _SPARE_COLOURS[zlib.crc32(family.encode()) % len(_SPARE_COLOURS)]


def metric_axis_title(metric: str) -> str:
    """Axis title of a metric with its unit, e.g. ``"Accuracy (%)"``."""
    info = labels.check_metric(metric)
    unit = {"share": " (%)", "dB": " (dB)", "levels": " (0–255 pixel levels)"}.get(info.unit, "")
    return f"{info.label}{unit}"


# --------------------------------------------------------------------------- layout and hover


def _wrap(text: str, width: int) -> tuple[str, int]:
    """``text`` broken into lines of at most ``width`` characters with ``<br>``; and the count.

    Plotly never wraps titles: a long one is cut off in a narrow column.
    """
    lines = textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]
    return "<br>".join(lines), len(lines)


def base_layout(fig: go.Figure, title: str, subtitle: str, *, height: int = 460) -> None:
    title_text, n_title = _wrap(title, _TITLE_WIDTH)
    subtitle_text, n_sub = _wrap(subtitle, _SUBTITLE_WIDTH)
    top = 30 + 24 * n_title + 17 * n_sub
    fig.update_layout(
        title={
            "text": title_text,
            "subtitle": {"text": subtitle_text, "font": {"size": 12, "color": "#555555"}},
            "x": 0.0,
            "xanchor": "left",
            "font": {"size": 17},
        },
        font=_FONT,
        template="plotly_white",
        height=height + top - 90,
        margin={"t": top + 20, "l": 70, "r": 30, "b": 70},
        hoverlabel={"align": "left"},
    )


def title_on_top(fig: go.Figure, *, room: int = 0) -> None:
    """Pin the title block of :func:`base_layout` to the figure's top edge.

    Plotly centres the title's first line in the top margin, so a long title
    and subtitle run down over the plot (or over subplot titles). Pinned to
    the top, the block ends above the plot; the top margin is fitted to it,
    with ``room`` more pixels (e.g. for subplot titles), and the figure's
    height changes by as much, so the plot keeps its height.
    """
    n_title = (fig.layout.title.text or "").count("<br>") + 1
    n_sub = (fig.layout.title.subtitle.text or "").count("<br>") + 1
    top = 20 + 22 * n_title + 15 * n_sub + 16 + room
    old = fig.layout.margin.t or top
    fig.update_layout(
        title={"yref": "container", "y": 1.0, "yanchor": "top", "pad": {"t": 20}},
        margin={"t": top},
        height=(fig.layout.height or 450) + top - old,
    )


def y_axis(fig: go.Figure, metric: str, **where: Any) -> None:
    info = METRICS[metric]
    if info.unit == "share":
        fig.update_yaxes(
            title_text=metric_axis_title(metric), tickformat=".0%", range=[-0.02, 1.02], **where
        )
    else:
        fig.update_yaxes(title_text=metric_axis_title(metric), **where)


def eps_axis(fig: go.Figure, eps: Sequence[float], **where: Any) -> None:
    ticks = sorted(set(eps))
    fig.update_xaxes(
        title_text=EPS_AXIS,
        tickvals=ticks,
        ticktext=[labels.format_value(e) for e in ticks],
        **where,
    )


def threat_subtitle(rows: pd.DataFrame) -> str:
    """The subtitle naming the threat model of the attacked rows (eps > 0) plotted."""
    attacked = [t for t in dict.fromkeys(rows.loc[rows["eps"] > 0, "threat_model"]) if t]
    if not attacked:
        return "Threat model: clean images only (no attack)"
    text = "; ".join(str(t) for t in attacked)
    defended = (rows["defence_key"] != NO_DEFENCE).any()
    if defended and THREAT_TRANSFER in attacked:
        text += f" — {_TRANSFER_CAVEAT}"
    if (rows["eps"] == 0).any():
        text += "; ε 0 = clean images"
    return f"Threat model: {text}"


def threats_subtitle(rows: pd.DataFrame, *, marks: tuple[str, str] = ("solid", "dashed")) -> str:
    """The subtitle of a chart drawing transfer rows solid and adaptive rows dashed.

    Names both threat models, the adaptive attackers' backward passes and EOT
    samples found in ``rows`` (e.g. ``bpda-identity, EOT 8``), and ε 0 if drawn.
    ``marks`` names how each is drawn (e.g. ``("filled", "open")`` for markers).
    """
    found = [parse_adaptive(t) for t in dict.fromkeys(rows["threat_model"]) if isinstance(t, str)]
    how = [f"{a.backward}, EOT {a.eot}" if a.eot > 1 else a.backward for a in found if a]
    text = f"Threat models: {marks[0]} = {THREAT_TRANSFER}; {marks[1]} = {THREAT_ADAPTIVE}"
    shown = "; ".join(h for h in dict.fromkeys(how) if h)
    if shown:
        text += f" ({shown})"
    if (rows["eps"] == 0).any():
        text += "; ε 0 = clean images"
    return text


def plot_value(value: Any) -> float | None:
    """A value as plotted: shares stay fractions, infinities and NaN become gaps."""
    v = float(value) if value is not None else math.nan
    return v if math.isfinite(v) else None


def _describe(row: pd.Series) -> str:
    full = row.get("defence_label")
    if isinstance(full, str) and full and full != "None":
        return full
    return labels.setting_label(str(row["defence_key"]))


def hover_text(row: pd.Series, metric: str, *, title: str | None = None) -> str:
    """Hover text of one results row: exact value, images, defence, threat model."""
    info = METRICS[metric]
    head = title or labels.setting_label(str(row["defence_key"]))
    return "<br>".join(
        [
            f"<b>{head}</b>",
            f"{labels.attack_title(str(row['attack']))} ε {labels.format_value(float(row['eps']))}",
            f"{info.label}: {labels.format_metric(metric, row[metric], digits=2)}",
            f"Images evaluated: {int(row['n_images'])}",
            f"Defence: {_describe(row)}",
            f"Threat model: {row['threat_model']}",
        ]
    )


def rows_for(df: pd.DataFrame, attack: str, key: str) -> pd.DataFrame:
    rows = df[(df["attack"] == attack) & (df["defence_key"] == key)]
    return rows.sort_values("eps")


def adaptive_curves(df: pd.DataFrame, attack: str, keys: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Key -> its adaptive rows (and clean ones), for the keys with adaptive rows of ``attack``."""
    if ADAPTIVE.id not in query.threats(df):
        return {}
    df = query.for_threat(df, ADAPTIVE.id)
    out = {}
    for key in keys:
        rows = rows_for(df, attack, key)
        if any(is_adaptive(t) for t in rows.loc[rows["eps"] > 0, "threat_model"]):
            out[key] = rows
    return out


def adaptive_rows(
    df: pd.DataFrame, attack: str, keys: Sequence[str], *, eps: float | None = None
) -> pd.DataFrame:
    """The attacked rows of ``attack`` stored under an adaptive label, for ``keys``.

    The rows :func:`engine.evaluation.query.for_threat` selects for ``"adaptive"``, but
    never the transfer rows that stand in for "none" where it has no adaptive row: only
    what an adaptive attack produced. ``eps`` keeps one budget. Empty (same columns)
    when there are none.
    """
    if "threat_model" not in df or ADAPTIVE.id not in query.threats(df):
        return df.iloc[:0]
    df = query.for_threat(df, ADAPTIVE.id)
    keep = (
        (df["attack"] == attack)
        & (df["eps"] > 0)
        & df["defence_key"].isin(list(keys))
        & df["threat_model"].map(is_adaptive).astype(bool)
    )
    if eps is not None:
        keep &= df["eps"] == eps
    return df[keep]


def _counts(values: pd.Series) -> str:
    found = sorted({int(v) for v in values if pd.notna(v)})
    if not found:
        return "?"
    return str(found[0]) if len(found) == 1 else f"{found[0]}–{found[-1]}"


def images_note(rows: pd.DataFrame) -> str:
    """Said when the adaptive rows among ``rows`` were run on other images than the transfer ones.

    The adaptive attack is often run on a subset of the test split (it is slow), so its
    numbers carry more noise; e.g. ``"adaptive attack on 200 images, transfer on 624"``.
    ``""`` when the attacked rows of both threat models count the same images.
    """
    attacked = rows[rows["eps"] > 0]
    if attacked.empty or "n_images" not in attacked:
        return ""
    adaptive = attacked["threat_model"].map(is_adaptive).astype(bool)
    a, t = _counts(attacked.loc[adaptive, "n_images"]), _counts(attacked.loc[~adaptive, "n_images"])
    if not adaptive.any() or adaptive.all() or a == t:
        return ""
    return f"{ADAPTIVE.title.lower()} attack on {a} images, {TRANSFER.title.lower()} on {t}"


def legend_group(title: str, *, group: str | None = None, wrap: bool = True) -> dict[str, Any]:
    """Trace keywords putting a trace under a legend-group title.

    Parameters
    ----------
    title : str
        The group's title, e.g. :data:`TRANSFER_LEGEND`.
    group : str, optional
        The ``legendgroup`` id; default ``title`` (a figure with two legends gives each
        its own id, so that a click in one legend leaves the other alone).
    wrap : bool, default=True
        Break the title into lines of :data:`LEGEND_TITLE_WIDTH` characters, so that
        a legend beside or under a narrow panel stays narrow.

    Returns
    -------
    dict
        ``legendgroup`` and ``legendgrouptitle`` for ``go.Scatter(**...)``.
    """
    text = legend_title_text(title) if wrap else title
    return {"legendgroup": group or title, "legendgrouptitle": {"text": text}}


def legend_title_text(text: str) -> str:
    """``text`` broken with ``<br>`` into lines of :data:`LEGEND_TITLE_WIDTH` characters."""
    return _wrap(text, LEGEND_TITLE_WIDTH)[0]


def open_symbol(symbol: str) -> str:
    """The hollow version of a plotly marker symbol (``"circle"`` -> ``"circle-open"``)."""
    return symbol if symbol.endswith("-open") else f"{symbol}-open"


def eps_curve(
    rows: pd.DataFrame,
    metric: str,
    name: str,
    line: dict[str, Any],
    symbol: str,
    *,
    group: str | None = None,
) -> go.Scatter:
    """One setting's curve against ε; ``group`` puts it under that legend-group title."""
    extra: dict[str, Any] = {}
    if group is not None:
        extra = {"legendgroup": group, "legendgrouptitle": {"text": legend_title_text(group)}}
    return go.Scatter(
        x=rows["eps"].tolist(),
        y=[plot_value(v) for v in rows[metric]],
        mode="lines+markers",
        name=name,
        line=line,
        marker={"symbol": symbol, "size": 8},
        hovertext=[hover_text(r, metric) for _, r in rows.iterrows()],
        hovertemplate=HOVER,
        **extra,
    )


def centre_note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 13, "color": "#555555"},
    )


def style_per_key(defence_keys: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """Key -> (colour, dash, marker): colour by family, dash/marker by rank within it."""
    seen: dict[str, int] = {}
    out = {}
    for key in defence_keys:
        family = keys.family(key)
        i = seen.get(family, 0)
        seen[family] = i + 1
        out[key] = (family_colour(family), DASHES[i % len(DASHES)], SYMBOLS[i % len(SYMBOLS)])
    return out
