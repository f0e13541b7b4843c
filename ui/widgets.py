"""Widgets shared by pages: pickers that map to the nearest precomputed setting."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import charts, views


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


#: Shown instead of a page's controls when a partial sweep has no attacked row yet.
NO_ATTACKED_ROWS = (
    "The precomputed sweep has no attacked results yet (it is partial): only clean images "
    "so far. Come back when it has progressed, or finish it with the command on the "
    "Models & data page."
)


def param_slider(label: str, values: tuple[Any, ...], *, key: str, help: str = "") -> Any:
    """A slider over a parameter's range (numbers) or its values (anything else)."""
    if all(_is_number(v) for v in values):
        lo, hi = min(values), max(values)
        if all(float(v).is_integer() for v in values):
            return st.slider(label, int(lo), int(hi), int(values[0]), 1, key=key, help=help)
        span = float(hi) - float(lo)
        step = 0.1 if span <= 5 else 0.5
        return st.slider(label, float(lo), float(hi), float(values[0]), step, key=key, help=help)
    return st.select_slider(label, list(values), key=key, help=help)


def defence_picker(
    df: pd.DataFrame, *, key: str, label: str = "Defence", default: str = views.NO_DEFENCE
) -> tuple[str, dict[str, Any]]:
    """Pick a defence family and its parameters; returns ``(family, requested params)``.

    The sliders move freely; :func:`app.views.nearest_setting` maps the
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
            name, info.params[name], key=f"{key}_{family}_{name}", help=info.help.get(name, "")
        )
    return family, params


def eps_slider(
    df: pd.DataFrame, attack: str, *, key: str, default: float = 8.0, label: str | None = None
) -> float:
    """A slider over the precomputed ε range (fine steps); the page maps it to the nearest."""
    values = views.eps_values(df, attack)
    hi = float(max(values)) if values else 32.0
    return st.slider(
        label or "Attack strength ε (0–255 pixel levels)",
        0.0,
        hi,
        min(default, hi),
        0.5,
        key=key,
        help="The largest change allowed to any pixel, in 0–255 levels (ε = 8 is 8/255, "
        "about 3 %). The curves are precomputed at "
        + ", ".join(views.format_value(v) for v in values)
        + "; other values show the nearest.",
    )


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


#: ε choices of the live lab: fine steps at the low end, 0-64 levels.
LAB_EPS: list[float] = [
    *(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0),
    *(10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 28.0, 32.0, 40.0, 48.0, 56.0, 64.0),
]


def declared_params(
    params: tuple[Any, ...],
    *,
    key: str,
    skip: tuple[str, ...] = (),
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """One widget per declared :class:`engine.params.Param` (house rule 6); returns the values.

    Ranges, steps, defaults and help all come from the declaration. An
    optional class index (``target``) becomes a class picker.
    """
    values: dict[str, Any] = {}
    for p in params:
        if p.name in skip:
            continue
        k = f"{key}_{p.name}"
        label = p.name.replace("_", " ")
        default = p.default if p.default is not None else p.low
        # A value already in the session (a preset, or the user's) wins over the default.
        init: dict[str, Any] = {} if k in st.session_state else {"value": default}
        if p.name == "target" and classes:
            opts: list[int | None] = ([None] if p.default is None else []) + list(
                range(len(classes))
            )
            values[p.name] = st.selectbox(
                "Target class",
                opts,
                format_func=lambda i: "none (untargeted)" if i is None else classes[i],
                key=k,
                help=p.help,
            )
        elif p.kind is bool:
            init = {} if k in st.session_state else {"value": bool(p.default)}
            values[p.name] = st.toggle(label, key=k, help=p.help, **init)
        elif p.kind is int and (p.high - p.low) > 200:
            values[p.name] = int(
                st.number_input(
                    label,
                    min_value=int(p.low),
                    max_value=int(p.high),
                    step=int(p.step or 1),
                    key=k,
                    help=p.help,
                    **{n: int(v) for n, v in init.items()},
                )
            )
        else:
            num = int if p.kind is int else float
            hi = p.high if p.kind is int or p.high <= 1000 else 2000.0  # e.g. guided eps
            values[p.name] = st.slider(
                label,
                min_value=num(p.low),
                max_value=num(hi),
                step=num(p.step or (1 if num is int else 0.1)),
                key=k,
                help=p.help,
                **{n: num(v) for n, v in init.items()},
            )
    return values


def param_picker(
    df: pd.DataFrame, attack: str, *, key: str, chains: bool = True
) -> tuple[str, str, float]:
    """Pick a defence family, one of its swept parameters and a budget.

    Returns ``(family, param, eps)`` with ``eps`` mapped to the nearest
    precomputed budget (an info box says so when it differs).
    """
    options = views.defence_options(df)
    tunable = [f for f, i in options.items() if i.varying and (chains or "+" not in f)]
    c1, c2, c3 = st.columns(3)
    family = c1.selectbox(
        "Defence", tunable, format_func=lambda f: options[f].title, key=f"{key}_family"
    )
    param = c2.selectbox("Parameter", options[family].varying, key=f"{key}_param")
    with c3:
        eps_req = eps_slider(df, attack, key=f"{key}_eps")
    eps_used, note = views.resolve_eps(df, attack, eps_req)
    if note:
        st.info(note)
    return family, param, eps_used
