"""Plotly figures of the dashboard, built from results tables.

Every builder returns a :class:`plotly.graph_objects.Figure` that the pages
show with ``st.plotly_chart(fig, config=CHART_CONFIG)``. The figures carry
what a reader needs to trust them:

* axis titles with units (budgets in ``ε (L∞, 0–255 pixel levels)``, the
  engine's one pixel convention);
* hover text with the exact value, the number of images, the defence
  setting and the threat model of the point;
* the threat model as the figure's subtitle: recap attacks are crafted on the
  *undefended* model and tested through the defence; an attacker who knows
  the defence does better (Athalye et al. 2018);
* one colour per defence family (:data:`FAMILY_COLOURS`), with "no defence"
  always near-black so that it stands out.

Nothing here imports TensorFlow or Streamlit; the data logic lives in
:mod:`app.views`.

Downloads
---------
:data:`CHART_CONFIG` makes the modebar's camera button save a PNG at twice
the on-screen resolution; :data:`CHART_CONFIG_SVG` saves an SVG instead
(vector, for papers). :func:`chart_config` sets the file name. Outside the
browser, ``fig.write_html(path, config=CHART_CONFIG)`` keeps the same
buttons; ``fig.write_image`` needs the optional ``kaleido`` package.
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import views
from app.views import EPS_AXIS, METRICS, MODEL_PANEL, NO_DEFENCE, PATIENT_PANEL
from engine.errors import ParamError
from engine.threat import THREAT_TRANSFER

__all__ = [
    "CHART_CONFIG",
    "CHART_CONFIG_SVG",
    "FAMILY_COLOURS",
    "LIVE_COLOUR",
    "PATIENT_CLASSES",
    "chart_config",
    "class_counts",
    "confusion_heatmap",
    "family_colour",
    "metric_axis_title",
    "metric_vs_eps",
    "metric_vs_param",
    "overlay_live",
    "topk_bars",
    "tradeoff",
    "training_curves",
    "two_panel",
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
#: Class names of the 2 x 2 patient confusion matrix ([[TN, FP], [FN, TP]]).
PATIENT_CLASSES: tuple[str, str] = ("healthy", "sick")

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "pentagon")
_PANEL_COLOURS = {
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


def family_colour(family: str) -> str:
    """The colour of a defence family (stable across figures and sessions)."""
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    if "+" in family:
        return _CHAIN_COLOUR
    return _SPARE_COLOURS[zlib.crc32(family.encode()) % len(_SPARE_COLOURS)]


def metric_axis_title(metric: str) -> str:
    """Axis title of a metric with its unit, e.g. ``"Accuracy (%)"``."""
    info = views.check_metric(metric)
    unit = {"share": " (%)", "dB": " (dB)", "levels": " (0–255 pixel levels)"}.get(info.unit, "")
    return f"{info.label}{unit}"


# --------------------------------------------------------------------------- helpers


def _wrap(text: str, width: int) -> tuple[str, int]:
    """``text`` broken into lines of at most ``width`` characters with ``<br>``; and the count.

    Plotly never wraps titles: a long one is cut off in a narrow column.
    """
    lines = textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]
    return "<br>".join(lines), len(lines)


def _base_layout(fig: go.Figure, title: str, subtitle: str, *, height: int = 460) -> None:
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


def _y_axis(fig: go.Figure, metric: str, **where: Any) -> None:
    info = METRICS[metric]
    if info.unit == "share":
        fig.update_yaxes(
            title_text=metric_axis_title(metric), tickformat=".0%", range=[-0.02, 1.02], **where
        )
    else:
        fig.update_yaxes(title_text=metric_axis_title(metric), **where)


def _eps_axis(fig: go.Figure, eps: Sequence[float], **where: Any) -> None:
    ticks = sorted(set(eps))
    fig.update_xaxes(
        title_text=EPS_AXIS,
        tickvals=ticks,
        ticktext=[views.format_value(e) for e in ticks],
        **where,
    )


def _threat_subtitle(rows: pd.DataFrame) -> str:
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


def _plot_value(value: Any) -> float | None:
    """A value as plotted: shares stay fractions, infinities and NaN become gaps."""
    v = float(value) if value is not None else math.nan
    return v if math.isfinite(v) else None


def _describe(row: pd.Series) -> str:
    full = row.get("defence_label")
    if isinstance(full, str) and full and full != "None":
        return full
    return views.setting_label(str(row["defence_key"]))


def _hover(row: pd.Series, metric: str, *, title: str | None = None) -> str:
    """Hover text of one results row: exact value, images, defence, threat model."""
    info = METRICS[metric]
    head = title or views.setting_label(str(row["defence_key"]))
    return "<br>".join(
        [
            f"<b>{head}</b>",
            f"{views.attack_title(str(row['attack']))} ε {views.format_value(float(row['eps']))}",
            f"{info.label}: {views.format_metric(metric, row[metric], digits=2)}",
            f"Images evaluated: {int(row['n_images'])}",
            f"Defence: {_describe(row)}",
            f"Threat model: {row['threat_model']}",
        ]
    )


def _rows_for(df: pd.DataFrame, attack: str, key: str) -> pd.DataFrame:
    rows = df[(df["attack"] == attack) & (df["defence_key"] == key)]
    return rows.sort_values("eps")


def _centre_note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 13, "color": "#555555"},
    )


def _style_per_key(keys: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """Key -> (colour, dash, marker): colour by family, dash/marker by rank within it."""
    seen: dict[str, int] = {}
    out = {}
    for key in keys:
        family = views.parse_defence_key(key)[0]
        i = seen.get(family, 0)
        seen[family] = i + 1
        out[key] = (family_colour(family), _DASHES[i % len(_DASHES)], _SYMBOLS[i % len(_SYMBOLS)])
    return out


# --------------------------------------------------------------------------- curves


def metric_vs_eps(
    df: pd.DataFrame, *, metric: str, attack: str, defence_keys: Sequence[str]
) -> go.Figure:
    """One metric against attack strength, one line per defence setting.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    metric : str
        A key of :data:`app.views.METRICS`.
    attack : str
        Attack id.
    defence_keys : sequence of str
        Defence settings to draw (at least one); "none" is drawn thickest.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Scatter`` trace per key, in the order given.

    Raises
    ------
    ParamError
        Unknown metric, attack or key; no key given.
    """
    info = views.check_metric(metric)
    views.check_attack(df, attack)
    keys = list(dict.fromkeys(defence_keys))
    if not keys:
        raise ParamError("defence_keys must name at least one defence setting; got none.")
    for key in keys:
        views.check_defence_key(df, key)
    styles = _style_per_key(keys)
    fig = go.Figure()
    shown = []
    for key in keys:
        rows = _rows_for(df, attack, key)
        shown.append(rows)
        colour, dash, symbol = styles[key]
        fig.add_trace(
            go.Scatter(
                x=rows["eps"].tolist(),
                y=[_plot_value(v) for v in rows[metric]],
                mode="lines+markers",
                name=views.setting_label(key),
                line={"color": colour, "dash": dash, "width": 3.5 if key == NO_DEFENCE else 2},
                marker={"symbol": symbol, "size": 8},
                hovertext=[_hover(r, metric) for _, r in rows.iterrows()],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    plotted = pd.concat(shown)
    better = "higher is better" if info.higher_is_better else "lower is better"
    subtitle = _threat_subtitle(plotted)
    values = pd.to_numeric(plotted[metric], errors="coerce")
    undefined = info.patient and not np.isfinite(values).any()
    if undefined:
        subtitle += f" · {info.label} is undefined: this dataset declares no “sick” classes"
    elif np.isinf(values).any():
        subtitle += f" · gaps: {info.label} is infinite where the images are identical"
    _base_layout(
        fig,
        f"{info.label} against {views.attack_title(attack)} attack strength ({better})",
        subtitle,
    )
    _y_axis(fig, metric)
    _eps_axis(fig, plotted["eps"].tolist())
    if undefined:
        _centre_note(fig, "Undefined for this dataset (no “sick” classes)")
    return fig


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
        Four traces per panel; the right panel's legend is ``legend2``.
    """
    views.check_attack(df, attack)
    views.check_defence_key(df, defence_key)
    rows = _rows_for(df, attack, defence_key)
    patient = views.has_patient_view(rows)
    setting = views.setting_label(defence_key)
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
    panels = [(MODEL_PANEL, 1, "legend")]
    if patient:
        panels.append((PATIENT_PANEL, 2, "legend2"))
    for metrics, col, legend in panels:
        for metric in metrics:
            info = METRICS[metric]
            name = info.label
            if metric == "patient_accuracy":
                name = "Accuracy (sick vs healthy)"
            if not info.higher_is_better:
                name += " (lower is better)"
            fig.add_trace(
                go.Scatter(
                    x=rows["eps"].tolist(),
                    y=[_plot_value(v) for v in rows[metric]],
                    mode="lines+markers",
                    name=name,
                    legend=legend,
                    line={
                        "color": _PANEL_COLOURS[metric],
                        "dash": "solid" if info.higher_is_better else "dash",
                        "width": 2.5,
                    },
                    marker={"size": 7},
                    hovertext=[_hover(r, metric, title=name) for _, r in rows.iterrows()],
                    hovertemplate="%{hovertext}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(
            title_text="Value (%)", tickformat=".0%", range=[-0.02, 1.02], row=1, col=col
        )
        _eps_axis(fig, rows["eps"].tolist(), row=1, col=col)
    subtitle = _threat_subtitle(rows)
    if not patient:
        subtitle += (
            " · No patient view: this dataset declares no “sick” classes, so sensitivity, NPV "
            "and the false-negative rate are undefined"
        )
    same = np.allclose(
        rows["macro_recall"].astype(float), rows["macro_specificity"].astype(float), equal_nan=True
    )
    if same:  # two classes: one class's recall is the other's specificity
        subtitle += " · macro recall and macro specificity coincide (two classes)"
        for trace in fig.data:
            if trace.name == METRICS["macro_specificity"].label:
                trace.line.dash = "dot"
    _base_layout(
        fig,
        f"Recap against {views.attack_title(attack)} attack strength: {setting}",
        subtitle,
        height=560,
    )
    # One vertical legend under each panel, so each panel's lines are explained beneath it.
    legend = {"orientation": "v", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0.0}
    fig.update_layout(legend=legend, margin={"b": 160})
    if patient:
        fig.update_layout(legend2={**legend, "x": 0.55})
    return fig


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

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    metric : str
        A key of :data:`app.views.METRICS`.
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

    Raises
    ------
    ParamError
        Unknown metric, attack, family or parameter; a fixed value the table lacks.
    """
    info = views.check_metric(metric)
    views.check_attack(df, attack)
    options = views.defence_options(df)
    if family not in options:
        raise ParamError(
            f"Unknown defence family {family!r}; this table has: {', '.join(options)}."
        )
    fam = options[family]
    if param not in fam.params:
        known = ", ".join(fam.params) or "none"
        raise ParamError(f"{fam.title} has no parameter {param!r} in this table; known: {known}.")
    fixed = dict(fixed or {})
    for name, value in fixed.items():
        if name not in fam.params or name == param:
            raise ParamError(
                f"Cannot hold {name!r} fixed; {fam.title}'s other parameters: "
                f"{', '.join(k for k in fam.params if k != param) or 'none'}."
            )
        if value not in fam.params[name]:
            raise ParamError(
                f"{fam.title}: {name}={views.format_value(value)} is not in this table; "
                f"it has {', '.join(views.format_value(v) for v in fam.params[name])}."
            )
    used, note = views.resolve_eps(df, attack, eps, NO_DEFENCE)
    parsed = {k: views.parse_defence_key(k)[1] for k in fam.keys}
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
            f"No {fam.title} rows at {attack} ε {views.format_value(used)} with the values held."
        )
    colour = family_colour(family)
    fig = go.Figure()
    for i, (combo, points) in enumerate(groups.items()):
        points.sort(key=lambda t: (isinstance(t[0], str), t[0]))
        name = ", ".join(f"{q}={views.format_value(v)}" for q, v in zip(free, combo, strict=True))
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in points],
                y=[_plot_value(r[metric]) for _, r in points],
                mode="lines+markers",
                name=name or fam.title,
                line={"color": colour, "dash": _DASHES[i % len(_DASHES)], "width": 2},
                marker={"symbol": _SYMBOLS[i % len(_SYMBOLS)], "size": 9},
                hovertext=[_hover(r, metric) for _, r in points],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    base = views.find_row(df, attack, used, NO_DEFENCE)
    clean = views.find_row(df, attack, 0.0, NO_DEFENCE)
    for ref, dash, text in ((base, "dash", "no defence"), (clean, "dot", "no defence, no attack")):
        value = None if ref is None else _plot_value(ref[metric])
        if value is None or (ref is clean and used == 0):
            continue
        fig.add_hline(
            y=value,
            line={"color": FAMILY_COLOURS[NO_DEFENCE], "dash": dash, "width": 1.5},
            annotation_text=f"{text}: {views.format_metric(metric, value)}",
            annotation_position="bottom right" if dash == "dash" else "top right",
        )
    held = [f"{k}={views.format_value(v)}" for k, v in fixed.items()]
    held += [f"{q}={views.format_value(kept[0].get(q))}" for q in constant]
    title = (
        f"{info.label} against {fam.title} {param}, "
        f"{views.attack_title(attack)} ε {views.format_value(used)}"
    )
    if held:
        title += f" ({', '.join(held)})"
    subtitle_bits = [_threat_subtitle(cells)]
    if tied:
        subtitle_bits.append(f"{', '.join(tied)} varies with {param}")
    if note:
        subtitle_bits.append(note)
    _base_layout(fig, title, " · ".join(subtitle_bits))
    _y_axis(fig, metric)
    helptext = fam.help.get(param, "")
    fig.update_xaxes(title_text=f"{param}: {helptext}" if helptext else param)
    values = sorted({x for pts in groups.values() for x, _ in pts}, key=lambda v: (str(type(v)), v))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        fig.update_xaxes(tickvals=values, ticktext=[views.format_value(v) for v in values])
    else:
        fig.update_xaxes(type="category")
    return fig


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
                    f"{views.attack_title(attack)} ε {views.format_value(used)}",
                    f"Recovered under attack: {100 * r['recovered']:+.2f} points "
                    f"({views.format_metric('accuracy', r['attacked_accuracy'], digits=2)} "
                    "with the defence)",
                    f"Clean cost: {100 * r['clean_cost']:+.2f} points "
                    f"({views.format_metric('accuracy', r['clean_accuracy'], digits=2)} "
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
                name=views.family_title(family),
                text=[
                    r["label"] if r["defence_key"] in labelled else "" for _, r in sub.iterrows()
                ],
                textposition="middle right",
                customdata=sub["label"].tolist(),
                textfont={"size": 10},
                marker={"color": family_colour(family), "size": 11, "line": {"width": 0}},
                hovertext=hover,
                hovertemplate="%{hovertext}<extra></extra>",
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
                    f"Clean: {views.format_metric('accuracy', base['undefended_clean_accuracy'])}"
                    f"<br>Under attack: "
                    f"{views.format_metric('accuracy', base['undefended_attacked_accuracy'])}"
                    if base is not None
                    else ""
                )
            ],
            hovertemplate="%{hovertext}<extra></extra>",
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
    subtitle = _threat_subtitle(df[(df["attack"] == attack) & (df["eps"] == used)])
    if note:
        subtitle += f" · {note}"
    _base_layout(
        fig,
        f"Defence trade-off, {views.attack_title(attack)} ε {views.format_value(used)}: "
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


# --------------------------------------------------------------------------- single cells


def confusion_heatmap(
    cm: Any, classes: Sequence[str] = PATIENT_CLASSES, *, title: str = "Confusion matrix"
) -> go.Figure:
    """Annotated confusion matrix: rows = true class, columns = predicted class.

    Cells show the share of the row (the true class) in percent; hovering
    gives the count. Works for the K x K matrix and the 2 x 2 patient view
    (``[[TN, FP], [FN, TP]]`` with ``classes=PATIENT_CLASSES``).

    Parameters
    ----------
    cm : array-like, shape (K, K)
        Counts (e.g. a results row's ``confusion``).
    classes : sequence of str, default=("healthy", "sick")
        K class names, in the matrix's order.
    title : str, default="Confusion matrix"

    Raises
    ------
    ParamError
        ``cm`` missing (no patient view), not square, negative, or not K x K.
    """
    if cm is None or (isinstance(cm, float) and math.isnan(cm)):
        raise ParamError(
            "No confusion matrix to draw (the patient view is empty when the dataset declares "
            "no “sick” classes)."
        )
    m = np.asarray(cm, dtype=float)
    names = [str(c) for c in classes]
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ParamError(f"cm must be a square K x K matrix of counts; got shape {m.shape}.")
    if m.shape[0] != len(names):
        raise ParamError(f"cm is {m.shape[0]} x {m.shape[0]} but {len(names)} classes were given.")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ParamError("cm must hold non-negative counts.")
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(rows > 0, 100 * m / np.where(rows > 0, rows, 1), np.nan)
    text = [["–" if math.isnan(v) else f"{v:.1f} %" for v in r] for r in share]
    hover = [
        [
            f"True {names[i]}, predicted {names[j]}<br>{int(m[i, j])} images"
            + ("" if math.isnan(share[i, j]) else f" ({share[i, j]:.1f} % of true {names[i]})")
            for j in range(len(names))
        ]
        for i in range(len(names))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            colorbar={"title": {"text": "% of true class"}},
        )
    )
    k = len(names)
    _base_layout(
        fig,
        title,
        f"{int(m.sum())} images · rows: true class, columns: prediction",
        height=max(360, 120 + 60 * k),
    )
    fig.update_xaxes(title_text="Predicted class", type="category")
    fig.update_yaxes(title_text="True class", type="category", autorange="reversed")
    return fig


def topk_bars(
    probs: Any,
    classes: Sequence[str],
    *,
    k: int = 3,
    title: str = "Top predictions",
    true_label: int | str | None = None,
) -> go.Figure:
    """Horizontal bars of the ``k`` most probable classes of one image.

    The predicted class is on top; the true class, when given, is green
    (the predicted class red when it is wrong) and, if outside the top ``k``,
    named in a note with its probability.

    Parameters
    ----------
    probs : array-like, shape (K,)
        Class probabilities of one image.
    classes : sequence of str
        K class names.
    k : int, default=3
        Bars to show (at most K).
    title : str, default="Top predictions"
    true_label : int or str, optional
        The true class, as an index or a name.

    Raises
    ------
    ParamError
        Shapes disagree, probabilities outside [0, 1], bad ``k`` or unknown true label.
    """
    p = np.asarray(probs, dtype=float)
    names = [str(c) for c in classes]
    if p.ndim != 1 or p.shape[0] != len(names) or p.size == 0:
        raise ParamError(
            f"probs must be one probability per class ({len(names)}); got shape {p.shape}."
        )
    if not np.all(np.isfinite(p)) or p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ParamError("probs must be probabilities in [0, 1] (softmax outputs, not logits).")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ParamError(f"k must be a positive integer; got {k!r}.")
    true_index: int | None = None
    if true_label is not None:
        if isinstance(true_label, str):
            if true_label not in names:
                raise ParamError(f"Unknown true label {true_label!r}; classes: {', '.join(names)}.")
            true_index = names.index(true_label)
        elif isinstance(true_label, int | np.integer) and 0 <= int(true_label) < len(names):
            true_index = int(true_label)
        else:
            raise ParamError(f"true_label must be a class index in [0, {len(names)}) or a name.")
    order = list(np.argsort(-p, kind="stable")[: min(int(k), len(names))])
    top = order[0]
    colours = []
    for i in order:
        if true_index is not None and i == true_index:
            colours.append("#2ca02c")
        elif true_index is not None and i == top:
            colours.append("#d62728")
        elif i == top:
            colours.append("#1f77b4")
        else:
            colours.append("#9e9e9e")
    fig = go.Figure(
        go.Bar(
            x=[float(p[i]) for i in order],
            y=[names[i] for i in order],
            orientation="h",
            marker={"color": colours},
            text=[f"{100 * p[i]:.1f} %" for i in order],
            textposition="auto",
            hovertext=[
                f"{names[i]}: {100 * p[i]:.2f} %" + (" (true class)" if i == true_index else "")
                for i in order
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    if true_index is None:
        subtitle = "Probability the model gives each class"
    elif top == true_index:
        subtitle = f"Correct: the true class is {names[true_index]}"
    else:
        subtitle = f"Wrong: the true class is {names[true_index]}"
    if true_index is not None and true_index not in order:
        rank = int(np.sum(p > p[true_index])) + 1
        subtitle += f" ({100 * p[true_index]:.1f} %, rank {rank})"
    _base_layout(fig, title, subtitle, height=max(220, 110 + 45 * len(order)))
    fig.update_layout(showlegend=False, margin={"b": 50})
    fig.update_xaxes(title_text="Probability (%)", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


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
        A key of :data:`app.views.METRICS`.
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
    info = views.check_metric(metric)
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
                f"{x} {views.format_value(r[x])}",
                f"{info.label}: {views.format_metric(metric, r[metric], digits=2)}",
                f"Images evaluated: {r.get('n_images', '?')}",
                "Recomputed now on a small sample: expect noise",
            ]
        )
        for r in points
    ]
    trace = go.Scatter(
        x=[r[x] for r in points],
        y=[_plot_value(r[metric]) for r in points],
        mode="lines+markers",
        name=label,
        line={"color": LIVE_COLOUR, "dash": "dashdot", "width": 2},
        marker={"symbol": "diamond", "size": 11, "color": LIVE_COLOUR},
        hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
    )
    if row is not None or col is not None:
        fig.add_trace(trace, row=row or 1, col=col or 1)
    else:
        fig.add_trace(trace)
    return fig


# --------------------------------------------------------------------------- model & data cards


def training_curves(history: Sequence[Mapping[str, float]]) -> go.Figure:
    """Training and validation accuracy and loss per epoch (a bundle's ``history.csv``).

    Parameters
    ----------
    history : sequence of dict
        One dict per epoch with ``epoch`` and any of ``acc``/``val_acc``,
        ``loss``/``val_loss`` (:func:`app.cards.read_history`).
    """
    if not history:
        raise ParamError("history: no epochs to plot (the bundle has no history.csv).")
    epochs = [int(h.get("epoch", i)) + 1 for i, h in enumerate(history)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"))
    series = (
        ("acc", "training", 1, "#1f77b4", "solid"),
        ("val_acc", "validation", 1, "#ff7f0e", "solid"),
        ("loss", "training", 2, "#1f77b4", "dot"),
        ("val_loss", "validation", 2, "#ff7f0e", "dot"),
    )
    for column, name, col, colour, dash in series:
        values = [h.get(column) for h in history]
        if all(v is None for v in values):
            continue
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=values,
                mode="lines+markers",
                name=f"{name} {'accuracy' if col == 1 else 'loss'}",
                line={"color": colour, "dash": dash},
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="epoch", nticks=6)
    fig.update_yaxes(tickformat=".0%", nticks=5, row=1, col=1)
    fig.update_yaxes(nticks=5, row=1, col=2)
    _base_layout(
        fig,
        "Training curves",
        "Training accuracy is class-weighted and augmented; validation is clean.",
        height=360,
    )
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0})
    return fig


def class_counts(counts: Mapping[str, Mapping[str, int]], spec: Any = None) -> go.Figure:
    """Images per class in each split (a dataset card), stacked by split.

    Parameters
    ----------
    counts : dict
        ``{split: {class: n}}`` (:func:`app.cards.dataset_card`).
    spec : DatasetSpec, optional
        For readable class names.
    """
    if not counts:
        raise ParamError("counts: no splits to plot.")
    fig = go.Figure()
    for split, per_class in counts.items():
        names = [spec.class_title(c) if spec is not None else c for c in per_class]
        fig.add_trace(
            go.Bar(
                x=names,
                y=list(per_class.values()),
                name=f"{split} ({sum(per_class.values())})",
                hovertemplate="%{x}: %{y} images<extra>" + split + "</extra>",
            )
        )
    fig.update_layout(barmode="stack", xaxis_title="class", yaxis_title="images")
    _base_layout(fig, "Images per class and split", "", height=360)
    return fig
