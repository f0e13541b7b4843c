"""The defence trade-off: what each setting costs on clean images against what it recovers."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app import labels, views
from app.charts.style import (
    ADAPTIVE_MARKER_LEGEND,
    FAMILY_COLOURS,
    HOVER,
    ONLY_TRANSFER_NOTE,
    TRANSFER_MARKER_LEGEND,
    base_layout,
    family_colour,
    images_note,
    legend_title_text,
    open_symbol,
    threat_subtitle,
    threats_subtitle,
    title_on_top,
)
from engine.evaluation import query
from engine.evaluation.keys import NO_DEFENCE
from engine.threat import ADAPTIVE, is_adaptive

__all__ = ["tradeoff"]

_SYMBOL = "circle"
#: Colour of the legend's key to the open (adaptive) markers: they take their family's.
_KEY_COLOUR = "#555555"


def _adaptive_table(df: pd.DataFrame, attack: str, used: float) -> pd.DataFrame:
    """:func:`app.views.tradeoff_table` against the adaptive attack at ``used``: only the
    settings with an adaptive row there (empty when the table has none)."""
    if ADAPTIVE.id not in query.threats(df):
        return pd.DataFrame()
    table = views.tradeoff_table(df, attack=attack, eps=used, threat=ADAPTIVE.id)
    if table.attrs.get("eps") != used or used == 0 or table.empty:
        return pd.DataFrame()
    return table  # at ε > 0: exactly the settings with an adaptive row


def _hover(
    r: pd.Series, attack: str, used: float, *, adaptive: bool = False, transfer: float | None = None
) -> str:
    """Hover text of one setting's point; ``adaptive``: against the adaptive attack, with
    ``transfer`` the same setting's recovered share against the transfer one (if it has one)."""
    head = f"{labels.attack_title(attack)} ε {labels.format_value(used)}"
    recovered = (
        f"Recovered under attack: {100 * r['recovered']:+.2f} points "
        f"({labels.format_metric('accuracy', r['attacked_accuracy'], digits=2)} "
        "with the defence"
    )
    if not adaptive:
        recovered += ")"
    else:
        head += ", attacker knows the defence (adaptive)"
        recovered += (
            ", against "
            f"{labels.format_metric('accuracy', r['undefended_attacked_accuracy'], digits=2)} "
            "without it on the same images)"
        )
        if transfer is not None:
            recovered += f"<br>Against the transfer attack: {100 * transfer:+.2f} points"
    return "<br>".join(
        [
            f"<b>{r['label']}</b>",
            head,
            recovered,
            f"Clean cost: {100 * r['clean_cost']:+.2f} points "
            f"({labels.format_metric('accuracy', r['clean_accuracy'], digits=2)} "
            "on clean images)",
            f"Images evaluated: {int(r['n_images'])}",
            f"Threat model: {r['threat_model']}",
        ]
    )


def tradeoff(df: pd.DataFrame, *, attack: str, eps: float) -> go.Figure:
    """Cost on clean images against accuracy recovered under attack, per defence setting.

    x = clean cost (accuracy the defence loses on clean images, percentage
    points), y = accuracy it wins back at this budget. The best settings sit
    top-left; "no defence" is the origin. Data: :func:`app.views.tradeoff_table`.

    Where the table holds adaptive rows (:mod:`engine.evaluation.threats`) of
    ``attack`` at this budget, each setting that has one gets a second,
    open marker of its colour at (clean cost, accuracy recovered against the
    adaptive attack, measured from the adaptive sweep's own undefended row on
    the same images), joined to its filled transfer marker by a thin dotted
    line: the drop from one to the other is what the defence owes to the
    attacker not knowing it. The legend's title,
    :data:`~app.charts.style.TRANSFER_MARKER_LEGEND`, says what the filled
    markers (one entry per family, as without adaptive rows) mean; one more
    entry, :data:`~app.charts.style.ADAPTIVE_MARKER_LEGEND`, stands for all
    open markers and dotted lines and shows or hides them together. Without
    adaptive rows the subtitle says that only transfer rows exist
    (:data:`~app.charts.style.ONLY_TRANSFER_NOTE`).

    The few best settings (most recovered for least clean cost, at most
    five) are labelled, skipping any whose label would overlap another's;
    hover has every point.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    attack : str
        Attack id.
    eps : float
        Budget, 0-255 units (the nearest precomputed one is used and said).

    Returns
    -------
    plotly.graph_objects.Figure
        One filled marker trace per defence family, then the "no defence"
        origin. With adaptive rows: first one dotted connector trace per
        family that has them (under the markers), each family's trace is
        followed by its open adaptive one where it has one, and a legend-only
        key trace comes before the origin; these adaptive traces share the
        ``legendgroup`` ``ADAPTIVE_MARKER_LEGEND`` and only the key is in the
        legend.
    """
    full, df = df, query.for_threat(df)
    table = views.tradeoff_table(df, attack=attack, eps=eps)
    used, note = table.attrs["eps"], table.attrs["note"]
    adaptive = _adaptive_table(full, attack, used) if used > 0 else pd.DataFrame()
    both = not adaptive.empty
    by_key = table.set_index("defence_key")
    recovered = dict(zip(table["defence_key"], table["recovered"], strict=True))
    ranges = _ranges(pd.concat([table, adaptive]) if both else table)
    labelled = _labelled(table, ranges)
    fig = go.Figure()
    families = list(dict.fromkeys(table["family"]))
    for family in families if both else []:  # the drop: transfer point -> adaptive point
        sub = adaptive[adaptive["family"] == family]
        sub = sub[sub["defence_key"].isin(by_key.index)]
        if sub.empty:
            continue
        line_x: list[float | None] = []
        line_y: list[float | None] = []
        for _, r in sub.iterrows():
            twin = by_key.loc[r["defence_key"]]
            line_x += [100 * twin["clean_cost"], 100 * r["clean_cost"], None]
            line_y += [100 * twin["recovered"], 100 * r["recovered"], None]
        fig.add_trace(
            go.Scatter(
                x=line_x,
                y=line_y,
                mode="lines",
                name=f"{labels.family_title(family)}: transfer → adaptive",
                line={"color": family_colour(family), "dash": "dot", "width": 1},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=ADAPTIVE_MARKER_LEGEND,
            )
        )
    for family in families:
        sub = table[table["family"] == family]
        colour = family_colour(family)
        fig.add_trace(
            go.Scatter(
                x=(100 * sub["clean_cost"]).tolist(),
                y=(100 * sub["recovered"]).tolist(),
                mode="markers+text",
                name=labels.family_title(family),
                text=[
                    r["label"] if r["defence_key"] in labelled else "" for _, r in sub.iterrows()
                ],
                textposition="middle right",
                customdata=sub["label"].tolist(),
                textfont={"size": 10},
                marker={"color": colour, "size": 11, "line": {"width": 0}, "symbol": _SYMBOL},
                hovertext=[_hover(r, attack, used) for _, r in sub.iterrows()],
                hovertemplate=HOVER,
            )
        )
        sub = adaptive[adaptive["family"] == family] if both else adaptive
        if sub.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=(100 * sub["clean_cost"]).tolist(),
                y=(100 * sub["recovered"]).tolist(),
                mode="markers",
                name=labels.family_title(family),
                customdata=sub["label"].tolist(),
                marker={
                    "color": colour,
                    "size": 11,
                    "symbol": open_symbol(_SYMBOL),
                    "line": {"width": 2, "color": colour},
                },
                hovertext=[
                    _hover(r, attack, used, adaptive=True, transfer=recovered.get(r["defence_key"]))
                    for _, r in sub.iterrows()
                ],
                hovertemplate=HOVER,
                showlegend=False,  # one legend entry for them all, below
                legendgroup=ADAPTIVE_MARKER_LEGEND,
            )
        )
    if both:  # the legend's key to the open markers; a click shows or hides them all
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines+markers",
                name=legend_title_text(f"{ADAPTIVE_MARKER_LEGEND}; dotted: its drop"),
                marker={"color": _KEY_COLOUR, "size": 11, "symbol": open_symbol(_SYMBOL)},
                line={"color": _KEY_COLOUR, "dash": "dot", "width": 1},
                legendgroup=ADAPTIVE_MARKER_LEGEND,
                hoverinfo="skip",
            )
        )
    base = table.iloc[0] if len(table) else None
    origin_hover = "<b>No defence</b><br>"
    if base is not None:
        origin_hover += (
            f"Clean: {labels.format_metric('accuracy', base['undefended_clean_accuracy'])}"
            f"<br>Under attack: "
            f"{labels.format_metric('accuracy', base['undefended_attacked_accuracy'])}"
        )
    if both:
        own = adaptive.iloc[0]
        origin_hover += (
            "<br>Under the adaptive attack's images: "
            f"{labels.format_metric('accuracy', own['undefended_attacked_accuracy'])} "
            "(the origin of the open markers)"
        )
    fig.add_trace(
        go.Scatter(
            x=[0.0],
            y=[0.0],
            mode="markers+text",
            name="No defence",
            text=["No defence"],
            textposition="bottom center",
            cliponaxis=False,  # the label may reach past the plot's left edge
            marker={"color": FAMILY_COLOURS[NO_DEFENCE], "size": 13, "symbol": "x"},
            hovertext=[origin_hover],
            hovertemplate=HOVER,
        )
    )
    guide = {"color": "#999999", "dash": "dash", "width": 1}
    fig.add_hline(y=0, line=guide)
    fig.add_vline(x=0, line=guide)
    for x, y, xa, ya, text in (
        (0.01, 0.99, "left", "top", "↖ worth it: recovers accuracy, costs little"),
        (0.99, 0.01, "right", "bottom", "costs on clean images, recovers little ↘"),
    ):
        fig.add_annotation(
            text=text,
            xref="paper",
            yref="paper",
            x=x,
            y=y,
            xanchor=xa,
            yanchor=ya,
            showarrow=False,
            font={"size": 11, "color": "#555555"},
        )
    cells = df[(df["attack"] == attack) & (df["eps"] == used)]
    if both:
        shown = full[
            (full["attack"] == attack)
            & (full["eps"] == used)
            & full["threat_model"].map(is_adaptive).astype(bool)
        ]
        plotted = pd.concat([cells, shown])
        subtitle = threats_subtitle(plotted, marks=("filled", "open"))
        subtitle += (
            " · open markers: recovered against the undefended model under the same "
            "adaptive attack; dotted: each setting's drop"
        )
        images = images_note(plotted)
        if images:
            subtitle += f" · {images}"
    else:
        subtitle = threat_subtitle(cells)
        if used > 0 and len(table):
            subtitle += f" · {ONLY_TRANSFER_NOTE}"
    if note:
        subtitle += f" · {note}"
    base_layout(
        fig,
        f"Defence trade-off, {labels.attack_title(attack)} ε {labels.format_value(used)}: "
        "best is top-left (most recovered, least lost on clean images)",
        subtitle,
        height=520,
    )
    title_on_top(fig)
    fig.update_xaxes(title_text="Clean cost: accuracy lost on clean images (percentage points)")
    # Two lines: one would run past the plot's height (and over the subtitle).
    fig.update_yaxes(title_text="Recovered: accuracy won back under attack<br>(percentage points)")
    fig.update_layout(margin={"l": 90})
    if both:
        title = legend_title_text(TRANSFER_MARKER_LEGEND)  # over the families' filled markers
        fig.update_layout(
            legend={"title": {"text": title, "font": {"size": 13}}, "tracegroupgap": 0}
        )
    if ranges is not None:
        fig.update_xaxes(range=list(ranges[0]))
        fig.update_yaxes(range=list(ranges[1]))
    return fig


def _ranges(drawn: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The x and y axis ranges (percentage points) of the points drawn and the origin, with
    room for the labels right of the points and for "No defence" under the origin."""
    if drawn.empty:
        return None
    out = []
    for column, left, right in (("clean_cost", 0.12, 0.4), ("recovered", 0.08, 0.15)):
        values = [0.0, *(100 * drawn[column].dropna())]
        lo, hi = min(values), max(values)
        pad = max(hi - lo, 1.0)
        out.append((lo - left * pad, hi + right * pad))
    return out[0], out[1]


#: Size of a label's character and line, as shares of the plot's width and height.
_CHAR_WIDTH, _LINE_HEIGHT = 0.01, 0.045


def _labelled(
    table: pd.DataFrame, ranges: tuple[tuple[float, float], tuple[float, float]] | None
) -> set[str]:
    """The keys of the few best settings (most recovered for least clean cost) to label: at
    most five, skipping any whose label would overlap one already kept. Hover has all."""
    if ranges is None:
        return set()
    (x0, x1), (y0, y1) = ranges
    score = table["recovered"] - table["clean_cost"].fillna(0)
    kept: list[tuple[float, float, float]] = []  # label's left, right, middle (plot shares)
    out: set[str] = set()
    for i in score.sort_values(ascending=False, kind="stable").index:
        r = table.loc[i]
        if len(out) == 5 or pd.isna(r["clean_cost"]) or pd.isna(r["recovered"]):
            continue
        x = (100 * r["clean_cost"] - x0) / (x1 - x0)
        y = (100 * r["recovered"] - y0) / (y1 - y0)
        right = x + 0.015 + _CHAR_WIDTH * len(str(r["label"]))
        if any(abs(y - m) < _LINE_HEIGHT and x < b and a < right for a, b, m in kept):
            continue
        kept.append((x, right, y))
        out.add(str(r["defence_key"]))
    return out
