"""Metrics against attack strength or a defence parameter, and the live overlay.

:func:`metric_vs_eps` and :func:`two_panel` are seed 001's recap curves (one
metric per defence setting; the model and the patient panels),
:func:`overlay_live` a few images recomputed now drawn over either or over
:func:`app.charts.param.metric_vs_param`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import labels
from app.charts.style import (
    ADAPTIVE_LEGEND,
    HOVER,
    LIVE_COLOUR,
    ONLY_TRANSFER_NOTE,
    PANEL_COLOURS,
    SYMBOLS,
    TRANSFER_LEGEND,
    adaptive_curves,
    base_layout,
    centre_note,
    eps_axis,
    eps_curve,
    hover_text,
    images_note,
    legend_group,
    plot_value,
    rows_for,
    style_per_key,
    threat_subtitle,
    threats_subtitle,
    title_on_top,
    y_axis,
)
from app.labels import METRICS, MODEL_PANEL, PATIENT_PANEL
from engine.errors import ParamError
from engine.evaluation import query
from engine.evaluation.keys import NO_DEFENCE

__all__ = ["metric_vs_eps", "overlay_live", "two_panel"]


def metric_vs_eps(
    df: pd.DataFrame, *, metric: str, attack: str, defence_keys: Sequence[str]
) -> go.Figure:
    """One metric against attack strength, one line per defence setting and threat model.

    Where the table holds adaptive rows (:mod:`engine.evaluation.threats`) of
    ``attack`` for a setting, that setting's adaptive curve is drawn dashed in
    its colour and marker next to its transfer curve, drawn solid (a family's
    settings are then told apart by marker), each under a legend-group title
    saying what the attacker knew; "none" without adaptive rows is drawn once
    (through no defence both attacks are one). Without adaptive rows the
    figure is transfer-only, as the subtitle says.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    metric : str
        A key of :data:`app.labels.METRICS`.
    attack : str
        Attack id.
    defence_keys : sequence of str
        Defence settings to draw (at least one); "none" is drawn thickest.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Scatter`` trace per key, in the order given, each followed by
        its adaptive trace where it has one (``legendgroup`` ``ADAPTIVE_LEGEND``).

    Raises
    ------
    ParamError
        Unknown metric, attack or key; no key given.
    """
    full, df = df, query.for_threat(df)
    info = labels.check_metric(metric)
    query.check_attack(df, attack)
    keys = list(dict.fromkeys(defence_keys))
    if not keys:
        raise ParamError("defence_keys must name at least one defence setting; got none.")
    for key in keys:
        query.check_defence_key(df, key)
    styles = style_per_key(keys)
    adaptive = adaptive_curves(full, attack, keys)
    fig = go.Figure()
    shown = []
    for key in keys:
        rows = rows_for(df, attack, key)
        shown.append(rows)
        colour, dash, symbol = styles[key]
        line = {"color": colour, "dash": dash, "width": 3.5 if key == NO_DEFENCE else 2}
        name = labels.setting_label(key)
        if not adaptive:
            fig.add_trace(eps_curve(rows, metric, name, line, symbol))
            continue
        if key == NO_DEFENCE and key not in adaptive:
            name += " (the same under both threat models)"
        solid = {**line, "dash": "solid"}  # settings of a family: told apart by marker
        fig.add_trace(eps_curve(rows, metric, name, solid, symbol, group=TRANSFER_LEGEND))
        if key in adaptive:
            shown.append(adaptive[key])
            dashed = {**solid, "dash": "dash"}
            fig.add_trace(
                eps_curve(adaptive[key], metric, name, dashed, symbol, group=ADAPTIVE_LEGEND)
            )
    plotted = pd.concat(shown)
    better = "higher is better" if info.higher_is_better else "lower is better"
    subtitle = threats_subtitle(plotted) if adaptive else threat_subtitle(plotted)
    if adaptive and images_note(plotted):
        subtitle += f" · {images_note(plotted)}"
    if not adaptive and (plotted["defence_key"] != NO_DEFENCE).any() and (plotted["eps"] > 0).any():
        subtitle += f" · {ONLY_TRANSFER_NOTE}"
    values = pd.to_numeric(plotted[metric], errors="coerce")
    undefined = info.patient and not np.isfinite(values).any()
    if undefined:
        subtitle += f" · {info.label} is undefined: this dataset declares no “sick” classes"
    elif np.isinf(values).any():
        subtitle += f" · gaps: {info.label} is infinite where the images are identical"
    base_layout(
        fig,
        f"{info.label} against {labels.attack_title(attack)} attack strength ({better})",
        subtitle,
    )
    y_axis(fig, metric)
    eps_axis(fig, plotted["eps"].tolist())
    if undefined:
        centre_note(fig, "Undefined for this dataset (no “sick” classes)")
    if adaptive:
        fig.update_layout(legend={"groupclick": "toggleitem"})
    return fig


def _panel_trace(
    rows: pd.DataFrame,
    metric: str,
    name: str,
    legend: str,
    line: dict[str, Any],
    marker: dict[str, Any],
    group: dict[str, Any],
) -> go.Scatter:
    """One metric's curve of :func:`two_panel`, in its panel's legend (and group, if any)."""
    return go.Scatter(
        x=rows["eps"].tolist(),
        y=[plot_value(v) for v in rows[metric]],
        mode="lines+markers",
        name=name,
        legend=legend,
        line=line,
        marker=marker,
        hovertext=[hover_text(r, metric, title=name) for _, r in rows.iterrows()],
        hovertemplate=HOVER,
        **group,
    )


def two_panel(
    df: pd.DataFrame,
    *,
    attack: str,
    defence_key: str = NO_DEFENCE,
    manifest: Mapping[str, Any] | None = None,
) -> go.Figure:
    """Seed 001's recap view: model performance (left) and impact on health (right).

    Left: accuracy, macro recall, macro specificity and fooling rate against
    attack strength; right: patient accuracy, sensitivity, NPV and
    false-negative rate. Without patient metrics (the dataset declares no
    "sick" classes: they are NaN) only the left panel is drawn, with a note
    saying why.

    Where the table holds adaptive rows (:mod:`engine.evaluation.threats`) of
    ``attack`` for ``defence_key`` ("none" included, when it has its own),
    every metric is drawn twice in its colour: solid against the transfer
    attack, dashed against the adaptive one, with one marker per metric
    (lower-is-better metrics then say so by name only); each panel's legend
    groups its curves under :data:`~app.charts.style.TRANSFER_LEGEND` and
    :data:`~app.charts.style.ADAPTIVE_LEGEND`, and the subtitle names both
    threat models (and the adaptive attack's images where they differ).
    Without adaptive rows the curves are the transfer ones, lower-is-better
    metrics dashed; for a defended setting the subtitle then says that only
    transfer rows exist (:data:`~app.charts.style.ONLY_TRANSFER_NOTE`).

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    attack : str
        Attack id.
    defence_key : str, default="none"
        The defence setting whose curves are drawn.
    manifest : dict, optional
        The sweep's manifest; names the "sick" classes in the right panel's title.

    Returns
    -------
    plotly.graph_objects.Figure
        Four traces per panel, each followed by its adaptive twin where there
        are adaptive rows; the right panel's legend is ``legend2``.
    """
    full, df = df, query.for_threat(df)
    query.check_attack(df, attack)
    query.check_defence_key(df, defence_key)
    rows = rows_for(df, attack, defence_key)
    adaptive = adaptive_curves(full, attack, [defence_key]).get(defence_key)
    patient = query.has_patient_view(rows)
    setting = labels.setting_label(defence_key)
    positive = list(((manifest or {}).get("model") or {}).get("positive") or [])
    right_title = "Impact on health (patient view)"
    if positive:
        right_title = f"Impact on health (sick = {', '.join(map(str, positive))})"
    if patient:
        fig = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=("Model performance", right_title),
            horizontal_spacing=0.1,
        )
    else:
        fig = make_subplots(rows=1, cols=1, subplot_titles=("Model performance",))
    same = np.allclose(
        rows["macro_recall"].astype(float), rows["macro_specificity"].astype(float), equal_nan=True
    )
    panels = [(MODEL_PANEL, 1, "legend")]
    if patient:
        panels.append((PATIENT_PANEL, 2, "legend2"))
    for metrics, col, legend in panels:
        for i, metric in enumerate(metrics):
            info = METRICS[metric]
            name = info.label
            if metric == "patient_accuracy":
                name = "Accuracy (sick vs healthy)"
            if not info.higher_is_better:
                name += " (lower is better)"
            line = {"color": PANEL_COLOURS[metric], "width": 2.5}
            if adaptive is None:
                dash = "solid" if info.higher_is_better else "dash"
                if same and metric == "macro_specificity":  # drawn over macro recall
                    dash = "dot"
                trace = _panel_trace(
                    rows, metric, name, legend, {**line, "dash": dash}, {"size": 7}, {}
                )
                fig.add_trace(trace, row=1, col=col)
                continue
            marker = {"size": 7, "symbol": SYMBOLS[i % len(SYMBOLS)]}
            for threat_rows, dash, title in (
                (rows, "solid", TRANSFER_LEGEND),
                (adaptive, "dash", ADAPTIVE_LEGEND),
            ):
                group = legend_group(title, group=f"{legend}: {title}")
                trace = _panel_trace(
                    threat_rows, metric, name, legend, {**line, "dash": dash}, marker, group
                )
                fig.add_trace(trace, row=1, col=col)
        fig.update_yaxes(
            title_text="Value (%)", tickformat=".0%", range=[-0.02, 1.02], row=1, col=col
        )
        eps_axis(fig, rows["eps"].tolist(), row=1, col=col)
    if adaptive is None:
        subtitle = threat_subtitle(rows)
        if defence_key != NO_DEFENCE and (rows["eps"] > 0).any():
            subtitle += f" · {ONLY_TRANSFER_NOTE}"
    else:
        plotted = pd.concat([rows, adaptive])
        subtitle = threats_subtitle(plotted)
        images = images_note(plotted)
        if images:
            subtitle += f" · {images}"
    if not patient:
        subtitle += (
            " · No patient view: this dataset declares no “sick” classes, so sensitivity, NPV "
            "and the false-negative rate are undefined"
        )
    if same:  # two classes: one class's recall is the other's specificity
        subtitle += " · macro recall and macro specificity coincide (two classes)"
    # Each panel's legend under it: two group titles of two lines and four curves in each.
    extra = 0 if adaptive is None else _TWO_PANEL_GROUPED_LEGEND
    base_layout(
        fig,
        f"Recap against {labels.attack_title(attack)} attack strength: {setting}",
        subtitle,
        height=560 + extra,
    )
    # One vertical legend under each panel, so each panel's lines are explained beneath it.
    under: dict[str, Any] = {
        "orientation": "v",
        "yanchor": "top",
        "y": -0.25,
        "xanchor": "left",
        "x": 0.0,
    }
    if adaptive is not None:
        under.update(groupclick="toggleitem", tracegroupgap=8)
    fig.update_layout(legend=under, margin={"b": 160 + extra})
    title_on_top(fig, room=_PANEL_TITLES)  # room above the panels for their titles
    if patient:
        fig.update_layout(legend2={**under, "x": 0.55})
    return fig


#: Extra height (px) under :func:`two_panel` for legends that hold both threat models.
_TWO_PANEL_GROUPED_LEGEND = 190
#: Height (px) of the panel titles above :func:`two_panel`'s plots.
_PANEL_TITLES = 26


def overlay_live(
    fig: go.Figure,
    rows: Sequence[Mapping[str, Any]],
    *,
    metric: str,
    x: str = "eps",
    name: str | None = None,
    row: int | None = None,
    col: int | None = None,
) -> go.Figure:
    """Add a live sweep (a few images, recomputed now) over a precomputed figure.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        A figure from this module (changed in place and returned).
    rows : sequence of dict
        One dict per point with the x value under ``x`` (``"eps"`` or a
        defence parameter), ``metric`` and optionally ``n_images``.
    metric : str
        A key of :data:`app.labels.METRICS`.
    x : str, default="eps"
        Key of the x value in each dict.
    name : str, optional
        Legend name; default ``"live (N images)"``.
    row, col : int, optional
        Subplot to draw in (for :func:`two_panel`).

    Returns
    -------
    plotly.graph_objects.Figure
        ``fig``, with one more trace.

    Raises
    ------
    ParamError
        Unknown metric, no rows, or a row without ``x`` or ``metric``.
    """
    info = labels.check_metric(metric)
    if not rows:
        raise ParamError("overlay_live needs at least one live result; got none.")
    for i, r in enumerate(rows):
        missing = [k for k in (x, metric) if k not in r]
        if missing:
            raise ParamError(
                f"Live result {i} has no {', '.join(map(repr, missing))}; it has: "
                f"{', '.join(map(str, r)) or 'nothing'}."
            )
    points = sorted(rows, key=lambda r: r[x])
    counts = {int(r["n_images"]) for r in points if r.get("n_images") is not None}
    n_text = f"{max(counts)} images" if len(counts) == 1 else "a few images"
    if len(counts) > 1:
        n_text = f"{min(counts)}–{max(counts)} images"
    label = name or f"live ({n_text})"
    hover = [
        "<br>".join(
            [
                f"<b>{label}</b>",
                f"{x} {labels.format_value(r[x])}",
                f"{info.label}: {labels.format_metric(metric, r[metric], digits=2)}",
                f"Images evaluated: {r.get('n_images', '?')}",
                "Recomputed now on a small sample: expect noise",
            ]
        )
        for r in points
    ]
    trace = go.Scatter(
        x=[r[x] for r in points],
        y=[plot_value(r[metric]) for r in points],
        mode="lines+markers",
        name=label,
        line={"color": LIVE_COLOUR, "dash": "dashdot", "width": 2},
        marker={"symbol": "diamond", "size": 11, "color": LIVE_COLOUR},
        hovertext=hover,
        hovertemplate=HOVER,
    )
    if row is not None or col is not None:
        fig.add_trace(trace, row=row or 1, col=col or 1)
    else:
        fig.add_trace(trace)
    return fig
