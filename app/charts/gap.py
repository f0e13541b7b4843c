"""What each defence keeps when the attacker knows it: transfer against adaptive, per setting.

:func:`threat_gap` is a dumbbell chart for people who are not ML experts: one
row per defence setting with adaptive rows, a filled dot at its accuracy
against an attacker who does not know the defence (transfer), an open dot at
its accuracy against one who does (adaptive), and a line between them: the
longer the line, the more of the defence's apparent gain was the attacker's
ignorance. Two reference lines: the undefended model under the same attack (on
the adaptive sweep's images) and the no-skill rate (always answering the most
common class). Data: :func:`app.views.threat_comparison`.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app import labels, views
from app.charts.style import (
    ADAPTIVE_MARKER_LEGEND,
    HOVER,
    TRANSFER_MARKER_LEGEND,
    base_layout,
    centre_note,
    family_colour,
    legend_title_text,
    title_on_top,
)
from engine.evaluation import query, sanity
from engine.evaluation.keys import NO_DEFENCE, family

__all__ = ["threat_gap"]

_ROW_PX = 30  # height per setting, so labels never overlap
_KEY = "#555555"  # colour of the legend's keys


def threat_gap(df: pd.DataFrame, *, attack: str, eps: float) -> go.Figure:
    """Each defence setting's accuracy against both threat models at one budget.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table (with an adaptive sweep merged in; without one the
        figure says there is nothing to compare).
    attack : str
        Attack id.
    eps : float
        Budget, 0-255 units; the nearest precomputed one is used and said.

    Returns
    -------
    plotly.graph_objects.Figure
        Per setting (sorted by adaptive accuracy, best on top): a grey line
        from the transfer to the adaptive accuracy, a filled marker (transfer,
        legend group :data:`~app.charts.style.TRANSFER_MARKER_LEGEND`) and an
        open one (adaptive, :data:`~app.charts.style.ADAPTIVE_MARKER_LEGEND`)
        in the family's colour; dashed vertical lines at the undefended
        accuracy and the no-skill rate.

    Raises
    ------
    ParamError
        Unknown attack; ``eps`` outside [0, 255].
    """
    used, note = query.resolve_eps(df, attack, eps)
    table = views.threat_comparison(df, attack=attack, eps=[used]) if used > 0 else None
    att = labels.attack_title(attack)
    title = f"What each defence keeps when the attacker knows it ({att}, ε {used:g})"
    fig = go.Figure()
    if table is None or table.empty:
        base_layout(fig, title, note or "No adaptive rows for this attack and budget.")
        centre_note(fig, "No attack crafted through the defences at this budget")
        return fig
    none = table[table["defence_key"] == NO_DEFENCE]
    rows = table[table["defence_key"] != NO_DEFENCE].sort_values(
        ["adaptive", "transfer"], ascending=True, kind="stable"
    )
    names = [str(n) for n in rows["label"]]
    for y, (_, r) in zip(names, rows.iterrows(), strict=True):
        fig.add_trace(
            go.Scatter(
                x=[100 * r["transfer"], 100 * r["adaptive"]],
                y=[y, y],
                mode="lines",
                line={"color": "#bbbbbb", "width": 3},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    colours = [family_colour(family(str(k))) for k in rows["defence_key"]]
    for column, group, symbol, fill in (
        ("transfer", TRANSFER_MARKER_LEGEND, "circle", True),
        ("adaptive", ADAPTIVE_MARKER_LEGEND, "circle-open", False),
    ):
        hover = [
            f"<b>{r['label']}</b><br>{att} ε {used:g}<br>"
            f"attacker does not know it: {r['transfer']:.1%} ({r['n_transfer']} images)<br>"
            f"attacker knows it: {r['adaptive']:.1%} ({r['n_adaptive']} images)<br>"
            f"{r['adaptive_label']}"
            for _, r in rows.iterrows()
        ]
        key = {"symbol": symbol, "size": 11, "color": _KEY, "line": {"width": 2.5, "color": _KEY}}
        fig.add_trace(  # the legend's key, in grey: the points take their family's colour
            go.Scatter(
                x=[None], y=[None], mode="markers", name=legend_title_text(group), marker=key
            )
        )
        fig.add_trace(
            go.Scatter(
                x=(100 * rows[column]).tolist(),
                y=names,
                mode="markers",
                name=legend_title_text(group),
                showlegend=False,
                marker={
                    "symbol": symbol,
                    "size": 11,
                    "color": colours,
                    "line": {"width": 2.5 if not fill else 0.5, "color": colours},
                },
                hovertext=hover,
                hovertemplate=HOVER,
            )
        )
    refs = []
    if len(none):
        refs.append((100 * float(none["adaptive"].iloc[0]), "no defence", "#222222"))
    clean = query.find_row(df, attack, 0.0, NO_DEFENCE)
    rate = sanity.no_skill_rate(None if clean is None else clean.get("confusion"))
    if rate is not None:
        refs.append((100 * rate, "always the most common answer", "#999999"))
    for x, text, colour in refs:
        fig.add_vline(
            x=x,
            line={"color": colour, "dash": "dash", "width": 1.5},
            annotation_text=text,
            annotation_position="bottom right",
            annotation_font={"size": 11, "color": colour},
        )
    subtitle = (
        "Filled: the attack is crafted on the undefended model (transfer); open: crafted "
        "through the defence (adaptive: BPDA/EOT). The grey line is what the defence "
        "seemed to win and did not."
    )
    if note:
        subtitle += f" · {note}"
    base_layout(fig, title, subtitle, height=max(360, 140 + _ROW_PX * len(names)))
    fig.update_xaxes(title="Accuracy (%)", range=[-2, 102], ticksuffix="%")
    fig.update_yaxes(automargin=True)
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
        margin={"l": 20, "b": 110},
    )
    title_on_top(fig)
    return fig
