"""Metrics against attack strength or a defence parameter, and the live overlay.

:func:`metric_vs_eps` and :func:`two_panel` are seed 001's recap curves (one
metric per defence setting; the model and the patient panels),
:func:`metric_vs_param` a metric against one defence parameter at a fixed
budget, :func:`overlay_live` a few images recomputed now drawn over either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import labels, views
from app.charts.style import (
    ADAPTIVE_LEGEND,
    DASHES,
    FAMILY_COLOURS,
    HOVER,
    LIVE_COLOUR,
    ONLY_TRANSFER_NOTE,
    PANEL_COLOURS,
    SYMBOLS,
    TRANSFER_LEGEND,
    adaptive_curves,
    adaptive_rows,
    base_layout,
    centre_note,
    eps_axis,
    eps_curve,
    family_colour,
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
from engine.evaluation.keys import NO_DEFENCE, parse_defence_key
from engine.threat import ADAPTIVE

__all__ = ["metric_vs_eps", "metric_vs_param", "overlay_live", "two_panel"]


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


def _tied(settings: list[dict[str, Any]], a: str, b: str) -> bool:
    """Whether params ``a`` and ``b`` vary together (a one-to-one map over the settings)."""
    ab: dict[Any, Any] = {}
    ba: dict[Any, Any] = {}
    for p in settings:
        va, vb = p.get(a), p.get(b)
        if ab.setdefault(va, vb) != vb or ba.setdefault(vb, va) != va:
            return False
    return True


def metric_vs_param(
    df: pd.DataFrame,
    *,
    metric: str,
    attack: str,
    eps: float,
    family: str,
    param: str,
    fixed: Mapping[str, Any] | None = None,
) -> go.Figure:
    """A metric against one defence parameter at a fixed attack budget.

    Parameters that vary together with ``param`` in the sweep (a ``zip`` in
    the spec, e.g. NLM's ``h`` and ``h_color``) move with it; the family's
    other parameters are held at the values in ``fixed`` (shown in the
    title) or, when not fixed, get one line per combination. The level
    without defence at this budget is a dashed reference line, the clean
    level without defence a dotted one.

    Where the table holds adaptive rows (:mod:`engine.evaluation.threats`) of
    ``attack`` at this budget for some of the settings drawn, each line's
    adaptive values are drawn dashed in its colour and marker next to its
    transfer values, drawn solid (the lines of several combinations are then
    told apart by marker), under the legend-group titles
    :data:`~app.charts.style.TRANSFER_LEGEND` and
    :data:`~app.charts.style.ADAPTIVE_LEGEND`; only the parameter values
    with an adaptive row get an adaptive point. The level without defence is
    then a solid reference line, with a dashed one for the adaptive sweep's
    own "none" row where it has one (its images). Without adaptive rows the
    subtitle says that only transfer rows exist
    (:data:`~app.charts.style.ONLY_TRANSFER_NOTE`).

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    metric : str
        A key of :data:`app.labels.METRICS`.
    attack : str
        Attack id.
    eps : float
        Budget, 0-255 units (the nearest precomputed one is used and said).
    family : str
        Defence family id (see :func:`app.views.defence_options`).
    param : str
        One of the family's parameters in the table.
    fixed : dict, optional
        Values of other parameters to hold; each must be in the table.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Scatter`` trace per combination, each followed by its adaptive
        trace where it has adaptive rows (``legendgroup`` ``ADAPTIVE_LEGEND``).

    Raises
    ------
    ParamError
        Unknown metric, attack, family or parameter; a fixed value the table lacks.
    """
    full, df = df, query.for_threat(df)
    info = labels.check_metric(metric)
    query.check_attack(df, attack)
    query.check_param(df, family, param)
    fam = views.defence_options(df)[family]
    fixed = dict(fixed or {})
    for name, value in fixed.items():
        if name not in fam.params or name == param:
            raise ParamError(
                f"Cannot hold {name!r} fixed; {fam.title}'s other parameters: "
                f"{', '.join(k for k in fam.params if k != param) or 'none'}."
            )
        if value not in fam.params[name]:
            raise ParamError(
                f"{fam.title}: {name}={labels.format_value(value)} is not in this table; "
                f"it has {', '.join(labels.format_value(v) for v in fam.params[name])}."
            )
    used, note = query.resolve_eps(df, attack, eps, NO_DEFENCE)
    parsed = {k: parse_defence_key(k)[1] for k in fam.keys}
    settings = {k: p for k, p in parsed.items() if all(p.get(n) == v for n, v in fixed.items())}
    kept = list(settings.values())
    others = [q for q in fam.params if q != param and q not in fixed]
    constant = [q for q in others if len({p.get(q) for p in kept}) == 1]
    tied = [q for q in others if q not in constant and _tied(kept, param, q)]
    free = [q for q in others if q not in (*constant, *tied)]

    cells = df[
        (df["attack"] == attack) & (df["eps"] == used) & df["defence_key"].isin(list(settings))
    ]
    groups: dict[tuple[Any, ...], list[tuple[Any, pd.Series]]] = {}
    for _, row in cells.iterrows():
        p = settings[str(row["defence_key"])]
        groups.setdefault(tuple(p.get(q) for q in free), []).append((p.get(param), row))
    if not groups:
        raise ParamError(
            f"No {fam.title} rows at {attack} ε {labels.format_value(used)} with the values held."
        )
    adaptive_cells = adaptive_rows(full, attack, list(settings), eps=used)
    adaptive_groups: dict[tuple[Any, ...], list[tuple[Any, pd.Series]]] = {}
    for _, row in adaptive_cells.iterrows():
        p = settings[str(row["defence_key"])]
        adaptive_groups.setdefault(tuple(p.get(q) for q in free), []).append((p.get(param), row))
    both = bool(adaptive_groups)
    colour = family_colour(family)
    fig = go.Figure()
    for i, (combo, points) in enumerate(groups.items()):
        name = ", ".join(f"{q}={labels.format_value(v)}" for q, v in zip(free, combo, strict=True))
        symbol = SYMBOLS[i % len(SYMBOLS)]
        if not both:
            line = {"color": colour, "dash": DASHES[i % len(DASHES)], "width": 2}
            fig.add_trace(_param_curve(points, metric, name or fam.title, line, symbol, {}))
            continue
        line = {"color": colour, "dash": "solid", "width": 2}
        group = legend_group(TRANSFER_LEGEND)
        fig.add_trace(_param_curve(points, metric, name or fam.title, line, symbol, group))
        if combo in adaptive_groups:
            line = {**line, "dash": "dash"}
            group = legend_group(ADAPTIVE_LEGEND)
            trace = _param_curve(
                adaptive_groups[combo], metric, name or fam.title, line, symbol, group
            )
            fig.add_trace(trace)
    base = query.find_row(df, attack, used, NO_DEFENCE)
    clean = query.find_row(df, attack, 0.0, NO_DEFENCE)
    own = adaptive_rows(full, attack, [NO_DEFENCE], eps=used) if both else full.iloc[:0]
    references = [
        (base, "solid" if both else "dash", "no defence", "bottom right"),
        (clean, "dot", "no defence, no attack", "top right"),
    ]
    if not own.empty:  # the adaptive sweep's own undefended row: its images
        own_row = own.iloc[0]
        text = f"no defence, {ADAPTIVE.title.lower()} ({int(own_row['n_images'])} images)"
        # The upper line's text above it, the lower one's below it: never on the other line.
        own_higher = base is not None and _value(own_row, metric) > _value(base, metric)
        references[0] = (base, "solid", "no defence", "bottom left" if own_higher else "top left")
        references.append((own_row, "dash", text, "top left" if own_higher else "bottom left"))
    for ref, dash, text, where in references:
        value = None if ref is None else plot_value(ref[metric])
        if value is None or (ref is clean and used == 0):
            continue
        if info.unit == "share" and value < 0.08:  # a text under it would sit on the ticks
            where = where.replace("bottom", "top")
            if not own.empty and where == "top left" and ref is not base:
                where = "top right"  # both lines near 0: the other text is top left
        fig.add_hline(
            y=value,
            line={"color": FAMILY_COLOURS[NO_DEFENCE], "dash": dash, "width": 1.5},
            annotation_text=f"{text}: {labels.format_metric(metric, value)}",
            annotation_position=where,
        )
    held = [f"{k}={labels.format_value(v)}" for k, v in fixed.items()]
    held += [f"{q}={labels.format_value(kept[0].get(q))}" for q in constant]
    title = (
        f"{info.label} against {fam.title} {param}, "
        f"{labels.attack_title(attack)} ε {labels.format_value(used)}"
    )
    if held:
        title += f" ({', '.join(held)})"
    if both:
        plotted = pd.concat([cells, adaptive_cells])
        subtitle_bits = [threats_subtitle(plotted)]
        images = images_note(plotted)
        if images:
            subtitle_bits.append(images)
    else:
        subtitle_bits = [threat_subtitle(cells)]
        if used > 0:
            subtitle_bits.append(ONLY_TRANSFER_NOTE)
    if tied:
        subtitle_bits.append(f"{', '.join(tied)} varies with {param}")
    if note:
        subtitle_bits.append(note)
    base_layout(fig, title, " · ".join(subtitle_bits))
    title_on_top(fig)
    y_axis(fig, metric)
    helptext = fam.help.get(param, "")
    fig.update_xaxes(title_text=f"{param}: {helptext}" if helptext else param)
    drawn = [*groups.values(), *adaptive_groups.values()]
    values = sorted({x for pts in drawn for x, _ in pts}, key=lambda v: (str(type(v)), v))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        fig.update_xaxes(tickvals=values, ticktext=[labels.format_value(v) for v in values])
    else:
        fig.update_xaxes(type="category")
    if both:
        fig.update_layout(legend={"groupclick": "toggleitem"})
    return fig


def _value(row: pd.Series, metric: str) -> float:
    """``row[metric]`` as a number for comparing (a gap counts as -inf)."""
    value = plot_value(row[metric])
    return -np.inf if value is None else value


def _param_curve(
    points: list[tuple[Any, pd.Series]],
    metric: str,
    name: str,
    line: dict[str, Any],
    symbol: str,
    group: dict[str, Any],
) -> go.Scatter:
    """One line of :func:`metric_vs_param`: (parameter value, row) points, sorted by value."""
    points = sorted(points, key=lambda t: (isinstance(t[0], str), t[0]))
    return go.Scatter(
        x=[x for x, _ in points],
        y=[plot_value(r[metric]) for _, r in points],
        mode="lines+markers",
        name=name,
        line=line,
        marker={"symbol": symbol, "size": 9},
        hovertext=[hover_text(r, metric) for _, r in points],
        hovertemplate=HOVER,
        **group,
    )


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
