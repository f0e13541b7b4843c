"""The defence trade-off: what each setting costs on clean images against what it recovers."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app import labels, views
from app.charts.style import FAMILY_COLOURS, HOVER, base_layout, family_colour, threat_subtitle
from engine.evaluation import query
from engine.evaluation.keys import NO_DEFENCE

__all__ = ["tradeoff"]


def tradeoff(df: pd.DataFrame, *, attack: str, eps: float) -> go.Figure:
    """Cost on clean images against accuracy recovered under attack, per defence setting.

    x = clean cost (accuracy the defence loses on clean images, percentage
    points), y = accuracy it wins back at this budget. The best settings sit
    top-left; "no defence" is the origin. Data: :func:`app.views.tradeoff_table`.

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
        One marker trace per defence family, plus the "no defence" origin.
    """
    df = query.for_threat(df)
    table = views.tradeoff_table(df, attack=attack, eps=eps)
    used, note = table.attrs["eps"], table.attrs["note"]
    # Label the few best settings only (most recovered for least clean cost); hover has all.
    score = table["recovered"] - table["clean_cost"].fillna(0)
    labelled = set(table.loc[score.nlargest(min(5, len(table))).index, "defence_key"])
    fig = go.Figure()
    for family in dict.fromkeys(table["family"]):
        sub = table[table["family"] == family]
        hover = [
            "<br>".join(
                [
                    f"<b>{r['label']}</b>",
                    f"{labels.attack_title(attack)} ε {labels.format_value(used)}",
                    f"Recovered under attack: {100 * r['recovered']:+.2f} points "
                    f"({labels.format_metric('accuracy', r['attacked_accuracy'], digits=2)} "
                    "with the defence)",
                    f"Clean cost: {100 * r['clean_cost']:+.2f} points "
                    f"({labels.format_metric('accuracy', r['clean_accuracy'], digits=2)} "
                    "on clean images)",
                    f"Images evaluated: {int(r['n_images'])}",
                    f"Threat model: {r['threat_model']}",
                ]
            )
            for _, r in sub.iterrows()
        ]
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
                marker={"color": family_colour(family), "size": 11, "line": {"width": 0}},
                hovertext=hover,
                hovertemplate=HOVER,
            )
        )
    base = table.iloc[0] if len(table) else None
    fig.add_trace(
        go.Scatter(
            x=[0.0],
            y=[0.0],
            mode="markers+text",
            name="No defence",
            text=["No defence"],
            textposition="bottom center",
            marker={"color": FAMILY_COLOURS[NO_DEFENCE], "size": 13, "symbol": "x"},
            hovertext=[
                "<b>No defence</b><br>"
                + (
                    f"Clean: {labels.format_metric('accuracy', base['undefended_clean_accuracy'])}"
                    f"<br>Under attack: "
                    f"{labels.format_metric('accuracy', base['undefended_attacked_accuracy'])}"
                    if base is not None
                    else ""
                )
            ],
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
    subtitle = threat_subtitle(df[(df["attack"] == attack) & (df["eps"] == used)])
    if note:
        subtitle += f" · {note}"
    base_layout(
        fig,
        f"Defence trade-off, {labels.attack_title(attack)} ε {labels.format_value(used)}: "
        "best is top-left (most recovered, least lost on clean images)",
        subtitle,
        height=520,
    )
    fig.update_xaxes(title_text="Clean cost: accuracy lost on clean images (percentage points)")
    fig.update_yaxes(title_text="Recovered: accuracy won back under attack (percentage points)")
    if len(table):
        xs = [0.0, *(100 * table["clean_cost"].dropna())]
        ys = [0.0, *(100 * table["recovered"].dropna())]
        for axis, values, right in ((fig.update_xaxes, xs, 0.35), (fig.update_yaxes, ys, 0.15)):
            lo, hi = min(values), max(values)
            pad = max(hi - lo, 1.0)
            axis(range=[lo - 0.08 * pad, hi + right * pad])  # room for the labels
    return fig
