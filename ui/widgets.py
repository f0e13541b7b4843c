"""Widgets shared by pages: pickers that map to the nearest precomputed setting."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import charts, labels, views
from engine import attacks, defences
from engine.errors import ParamError
from engine.evaluation import query
from engine.params import Param, declaration, format_number


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


#: Shown instead of a page's controls when a partial sweep has no attacked row yet.
NO_ATTACKED_ROWS = (
    "The precomputed sweep has no attacked results yet (it is partial): only clean images "
    "so far. Come back when it has progressed, or finish it with the command on the "
    "Models & data page."
)


#: What a parameter widget returns: a number, a flag, or ``None`` for an unset option.
Value = int | float | bool | str | None


def _declared_param(family: str, name: str) -> Param | None:
    """The declaration of a single defence's parameter; ``None`` for chains and unknown ids."""
    cls = defences.REGISTRY.get(family)
    return next((p for p in cls.PARAMS if p.name == name), None) if cls else None


def _number_options(p: Param, key: str, help: str) -> dict[str, Any]:
    """A declared number's widget range and step (house rule 6: nothing invented here)."""
    num = int if p.kind is int else float
    assert p.low is not None and p.slider_high is not None and p.step is not None
    return {
        "min_value": num(p.low),
        "max_value": num(p.slider_high),
        "step": num(p.step),
        "key": key,
        "help": help,
    }


def param_slider(
    label: str, values: tuple[Any, ...], *, key: str, help: str = "", declared: Param | None = None
) -> Value:
    """A slider over a parameter's precomputed values; the page maps a choice to the nearest.

    With the parameter's declaration the slider runs from the smallest to the
    largest value in the declared step; without one (a chain member, or values
    that are not numbers) it offers the values themselves.
    """
    if declared is not None and declared.kind in (int, float) and all(map(_is_number, values)):
        opts = _number_options(declared, key, help or declared.help)
        num = int if declared.kind is int else float
        opts |= {"min_value": num(min(values)), "max_value": num(max(values))}
        return st.slider(label, value=num(values[0]), **opts)
    return st.select_slider(label, list(values), key=key, help=help)


def defence_picker(
    df: pd.DataFrame, *, key: str, label: str = "Defence", default: str = query.NO_DEFENCE
) -> tuple[str, dict[str, Any]]:
    """Pick a defence family and its parameters; returns ``(family, requested params)``.

    The sliders move freely; :func:`engine.evaluation.query.nearest_setting` maps the
    request to the nearest precomputed setting and says so.
    """
    options = views.defence_options(df)
    families = list(options)
    family = st.selectbox(
        label,
        families,
        index=families.index(default) if default in families else 0,
        format_func=lambda f: options[f].title,
        key=f"{key}_family",
    )
    params: dict[str, Any] = {}
    info = options[family]
    for name in info.varying:
        params[name] = param_slider(
            name,
            info.params[name],
            key=f"{key}_{family}_{name}",
            help=info.help.get(name, ""),
            declared=_declared_param(family, name),
        )
    return family, params


def eps_slider(df: pd.DataFrame, attack: str, *, key: str, label: str | None = None) -> float:
    """A slider over the precomputed ε range in the declared step; the page maps it to the nearest.

    It starts at the declared default ε (capped at the largest precomputed
    budget). An attack this code does not declare offers its precomputed
    budgets themselves.
    """
    values = query.eps_values(df, attack)
    label = label or "Attack strength ε (0–255 pixel levels)"
    help = (
        "The largest change allowed to any pixel, in 0–255 levels (ε = 8 is 8/255, "
        "about 3 %). The curves are precomputed at "
        + ", ".join(labels.format_value(v) for v in values)
        + "; other values show the nearest."
    )
    info = attacks.REGISTRY.get(attack)
    if info is None:
        return float(st.select_slider(label, values, key=key, help=help))
    eps = declaration(info.params_cls, "eps")
    opts = _number_options(eps, key, help)
    hi = max(values, default=opts["max_value"])
    opts["max_value"] = hi
    assert isinstance(eps.default, float)
    return float(st.slider(label, value=min(eps.default, hi), **opts))


def chart(fig: Any, *, key: str, filename: str) -> None:
    """A Plotly chart whose camera button saves PNG or SVG (the page's choice)."""
    fmt = st.session_state.get("chart_format", "png")
    st.plotly_chart(fig, config=charts.chart_config(filename, fmt), key=key)


def chart_format_choice() -> None:
    """Let the user pick what the charts' camera button saves."""
    st.radio(
        "Chart download format (camera button on each chart)",
        ["png", "svg"],
        horizontal=True,
        key="chart_format",
        format_func=str.upper,
    )


def param_widget(
    p: Param,
    *,
    key: str,
    label: str | None = None,
    help: str | None = None,
    classes: list[str] | None = None,
) -> Value:
    """One widget for one declared :class:`engine.params.Param` (house rule 6).

    Everything it shows comes from the declaration: its ``choices`` give a
    select slider (e.g. the fine ε steps), a bool a toggle, ``widget="class"``
    a class picker where ``classes`` are known, ``widget="number"`` (or a class
    without known classes) a number box, anything else a slider from ``low``
    to :attr:`~engine.params.Param.slider_high` in ``step``. A value already in
    the session (a preset, or the user's) wins over the declared default.
    """
    fresh = key not in st.session_state
    label = label or p.name.replace("_", " ")
    help = p.help if help is None else help
    if p.widget == "class" and classes:
        names = classes
        opts: list[int | None] = [*([None] if p.default is None else []), *range(len(names))]
        return st.selectbox(
            "Target class",
            opts,
            format_func=lambda i: "none (untargeted)" if i is None else names[i],
            key=key,
            help=help,
        )
    if p.choices:
        choice = st.select_slider(
            label,
            list(p.choices),
            value=p.default if fresh else None,
            format_func=format_number,
            key=key,
            help=help,
        )
        return p.kind(choice)
    if p.kind is bool:
        return st.toggle(label, value=fresh and bool(p.default), key=key, help=help)
    num = int if p.kind is int else float
    opts_ = _number_options(p, key, help)
    default = p.default if p.default is not None else p.low
    assert isinstance(default, int | float)
    if p.widget in ("number", "class"):
        return num(st.number_input(label, value=num(default) if fresh else "min", **opts_))
    return st.slider(label, value=num(default) if fresh else None, **opts_)


def declared_params(
    params: tuple[Param, ...],
    *,
    key: str,
    skip: tuple[str, ...] = (),
    classes: list[str] | None = None,
) -> dict[str, Value]:
    """One :func:`param_widget` per declared parameter (``key`` + ``_`` + name); returns the values.

    An optional class index (``target``) becomes a class picker when
    ``classes`` are given.
    """
    return {
        p.name: param_widget(p, key=f"{key}_{p.name}", classes=classes)
        for p in params
        if p.name not in skip
    }


#: Why a sweep with one setting per defence (``assets/specs/variants.toml``) has no
#: parameter to vary.
NOTHING_TUNABLE = (
    "this sweep sets one value per defence (a model variant's sweep), so there is no "
    "defence parameter to vary; the standard model's sweep has them"
)


def tunable_families(df: pd.DataFrame, *, chains: bool = True) -> list[str]:
    """Defence families with a parameter that takes more than one value in ``df``."""
    options = views.defence_options(df)
    return [f for f, i in options.items() if i.varying and (chains or "+" not in f)]


def param_picker(
    df: pd.DataFrame, attack: str, *, key: str, chains: bool = True
) -> tuple[str, str, float]:
    """Pick a defence family, one of its swept parameters and a budget.

    Returns ``(family, param, eps)`` with ``eps`` mapped to the nearest
    precomputed budget (an info box says so when it differs).
    """
    options = views.defence_options(df)
    tunable = tunable_families(df, chains=chains)
    if not tunable:
        raise ParamError(NOTHING_TUNABLE)
    c1, c2, c3 = st.columns(3)
    family = c1.selectbox(
        "Defence", tunable, format_func=lambda f: options[f].title, key=f"{key}_family"
    )
    param = c2.selectbox("Parameter", options[family].varying, key=f"{key}_param")
    with c3:
        eps_req = eps_slider(df, attack, key=f"{key}_eps")
    eps_used, note = query.resolve_eps(df, attack, eps_req)
    if note:
        st.info(note)
    return family, param, eps_used
