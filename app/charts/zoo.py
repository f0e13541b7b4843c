"""Model-level against input defences: what each model keeps when the attacker knows the defence.

:func:`model_bars` draws, for one budget, a pair of horizontal bars per model
(the standard model and each training-time-defence variant): the model alone
and the model with its best input defence, both against the adaptive attacker,
on balanced accuracy (the mean of per-class recalls: 50 % is no skill on two
classes whatever the class balance). Accuracy, clean numbers, the setting and
the threat model are in the hover text. :func:`model_curves` draws the same
against ε, each model's line starting at its clean balanced accuracy (the
clean cost of its defence). Data: :func:`app.zoo.comparison`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from app import labels
from app.charts.style import HOVER, base_layout, centre_note, eps_axis, title_on_top

__all__ = ["model_bars", "model_curves"]

_ROW_PX = 34


def _no_skill(add_line: Callable[..., object], **at: float) -> None:
    """A dashed grey line at 50 % balanced accuracy, labelled "no skill"."""
    add_line(
        **at,
        line={"color": "#999999", "dash": "dash", "width": 1.5},
        annotation_text="no skill",
        annotation_position="bottom right",
        annotation_font={"size": 11, "color": "#777777"},
    )


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
            + (f"<br><i>{r['caveat']}</i>" if r.get("caveat") else "")
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
    _no_skill(fig.add_vline, x=50)
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


_LINE_COLOURS = ["#4c4c4c", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def model_curves(table: pd.DataFrame, *, attack: str) -> go.Figure:
    """Balanced accuracy of each model against ε, alone (solid) and with its best input defence.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`app.zoo.comparison` output over several budgets.
    attack : str
        Attack id (for the title).

    Returns
    -------
    plotly.graph_objects.Figure
        Per model a solid line (the model alone, from its clean balanced
        accuracy at ε 0) and a dotted one (with its best input defence at
        each budget, named in the hover text), in the model's colour; a dashed
        line at 50 % (no skill).
    """
    att = labels.attack_title(attack)
    title = f"Each model against the attack budget ({att}, attacker knows the defence)"
    fig = go.Figure()
    if table.empty:
        base_layout(fig, title, "No adaptive rows.")
        centre_note(fig, "No model has adaptive results")
        return fig
    for i, model in enumerate(dict.fromkeys(table["model"])):
        colour = _LINE_COLOURS[i % len(_LINE_COLOURS)]
        for kind, dash in (("alone", "solid"), ("best", "dot")):
            rows = table[(table["model"] == model) & (table["kind"] == kind)].sort_values("eps")
            if rows.empty:
                continue
            eps, bal = rows["eps"].tolist(), (100 * rows["balanced"]).tolist()
            hover = [
                f"<b>{model}</b>, {r['label']}<br>{att} ε {r['eps']:g}: balanced accuracy "
                f"{r['balanced']:.1%}, accuracy {r['accuracy']:.1%} ({r['n_images']} images)"
                f"<br>{r['threat_model']}"
                for _, r in rows.iterrows()
            ]
            if kind == "alone":
                first = rows.iloc[0]
                eps, bal = [0.0, *eps], [100 * float(first["clean_balanced"]), *bal]
                hover = [
                    f"<b>{model}</b>, no attack: balanced accuracy "
                    f"{first['clean_balanced']:.1%}, accuracy {first['clean_accuracy']:.1%}",
                    *hover,
                ]
            fig.add_trace(
                go.Scatter(
                    x=eps,
                    y=bal,
                    mode="lines+markers",
                    name=model if kind == "alone" else f"{model} + best input defence",
                    line={"color": colour, "dash": dash, "width": 2.5 if kind == "alone" else 2},
                    marker={"size": 7},
                    hovertext=hover,
                    hovertemplate=HOVER,
                )
            )
    _no_skill(fig.add_hline, y=50)
    base_layout(
        fig,
        title,
        "Balanced accuracy (50 % = no skill). ε 0: each model's clean balanced accuracy, "
        "the clean cost of its defence. Solid: the model alone; dotted: with its best input "
        "defence at that budget, crafted through it (BPDA).",
        height=440,
    )
    eps_axis(fig, [0.0, *table["eps"].tolist()])
    fig.update_yaxes(title_text="balanced accuracy (%)", range=[0, 102])
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    title_on_top(fig)
    return fig
