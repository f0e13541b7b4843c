"""A metric against one defence parameter at a fixed budget, under both threat models.

One line per combination of the family's other parameters, its adaptive
values dashed in the same colour where the table has adaptive rows, and the
undefended model as the reference line (:func:`metric_vs_param`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app import labels, views
from app.charts.style import (
    ADAPTIVE_LEGEND,
    DASHES,
    FAMILY_COLOURS,
    HOVER,
    ONLY_TRANSFER_NOTE,
    SYMBOLS,
    TRANSFER_LEGEND,
    adaptive_rows,
    base_layout,
    family_colour,
    hover_text,
    images_note,
    legend_group,
    plot_value,
    threat_subtitle,
    threats_subtitle,
    title_on_top,
    y_axis,
)
from engine.errors import ParamError
from engine.evaluation import query
from engine.evaluation.keys import NO_DEFENCE, parse_defence_key
from engine.threat import ADAPTIVE

__all__ = ["metric_vs_param"]


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
