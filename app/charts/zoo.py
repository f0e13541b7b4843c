"""Model-level against input defences: what each model keeps when the attacker knows the defence.

:func:`model_bars` draws, for one budget, a pair of horizontal bars per model
(the standard model and each training-time-defence variant): the model alone
and the model with its best input defence, both against the adaptive attacker,
on balanced accuracy (the mean of per-class recalls: 50 % is no skill on two
classes whatever the class balance). Accuracy, clean numbers, the setting and
the threat model are in the hover text. Data: :func:`app.zoo.comparison`.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app import labels
from app.charts.style import HOVER, base_layout, centre_note, title_on_top

__all__ = ["model_bars"]

_ROW_PX = 34
_COLOURS = {"alone": "#4c4c4c", "best": "#1f77b4"}
_NAMES = {"alone": "model alone", "best": "model + its best input defence"}


def model_bars(table: pd.DataFrame, *, attack: str, eps: float) -> go.Figure:
    """Balanced accuracy of each model, alone and with its best input defence, at one budget.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`app.zoo.comparison` output.
    attack : str
        Attack id (for the title).
    eps : float
        The budget to draw (rows at other budgets are ignored).

    Returns
    -------
    plotly.graph_objects.Figure
        One row per model (the standard model on top), bars in percent, a
        dashed line at 50 % (no skill).
    """
    att = labels.attack_title(attack)
    title = f"Which model holds when the attacker knows the defence? ({att}, ε {eps:g})"
    fig = go.Figure()
    at = table[table["eps"] == float(eps)] if not table.empty else table
    if at.empty:
        base_layout(fig, title, "No adaptive rows at this budget.")
        centre_note(fig, "No model has adaptive results at this budget")
        return fig
    models = list(dict.fromkeys(at["model"]))
    for kind in ("alone", "best"):
        rows = at[at["kind"] == kind]
        if rows.empty:
            continue
        hover = [
            f"<b>{r['model']}</b>, {r['label']}<br>{att} ε {eps:g}, attacker knows the defence<br>"
            f"balanced accuracy {r['balanced']:.1%}, accuracy {r['accuracy']:.1%} "
            f"({r['n_images']} images)<br>clean: accuracy {r['clean_accuracy']:.1%}, "
            f"balanced {r['clean_balanced']:.1%}<br>{r['threat_model']}"
            for _, r in rows.iterrows()
        ]
        fig.add_trace(
            go.Bar(
                x=(100 * rows["balanced"]).tolist(),
                y=rows["model"].tolist(),
                orientation="h",
                name=_NAMES[kind],
                marker={"color": _COLOURS[kind]},
                text=[
                    f"{100 * b:.0f} %" + ("" if kind == "alone" else f" · {lab}")
                    for b, lab in zip(rows["balanced"], rows["label"], strict=True)
                ],
                textposition="outside",
                cliponaxis=False,
                hovertext=hover,
                hovertemplate=HOVER,
            )
        )
    fig.add_vline(
        x=50,
        line={"color": "#999999", "dash": "dash", "width": 1.5},
        annotation_text="no skill",
        annotation_position="bottom right",
        annotation_font={"size": 11, "color": "#777777"},
    )
    base_layout(
        fig,
        title,
        "Balanced accuracy (mean recall over classes; 50 % = no skill). Adaptive attacker: "
        "white-box on the model, through the input defence with BPDA/EOT.",
        height=160 + _ROW_PX * 2 * len(models),
    )
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.18})
    fig.update_xaxes(title_text="balanced accuracy under attack (%)", range=[0, 118])
    fig.update_yaxes(categoryorder="array", categoryarray=models[::-1], automargin=True)
    title_on_top(fig)
    return fig
