"""Explorer: a small live sweep of ε or a defence parameter, over the precomputed curve."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st

from app import charts, labels, views
from engine import datasets, threat
from engine import defences as dfn
from engine.errors import EngineError
from engine.evaluation import query
from engine.lab import LiveAttacker, MiniSweepOptions
from engine.params import declaration
from ui import common, widgets

#: The Live lab's switch, with the same words.
ADAPTIVE_SWITCH = "The attacker knows the defence"
ADAPTIVE_HELP = (
    "Off: each test image is attacked on the model alone, and the defence is applied "
    "afterwards, as the precomputed curves do: the attacker does not know the defence. "
    "On: the attacker knows the defence and attacks straight through it, once for every "
    "defence setting (so the sweep takes longer). Where the defence cannot be followed "
    "step by step (a filter, a codec), the attacker treats it as letting the image "
    "through unchanged when it works out which way to push the pixels; against a random "
    "defence, it averages over several random draws of it. This is the honest test of "
    "what a defence is worth."
)

entry = common.current()
st.title("Explorer")
st.markdown(
    "Check a precomputed curve yourself: run the same attack and defence live on a few "
    "test images and see the live points land on (or off) the curve computed on the "
    "whole test set. Repeats of the same sweep are instant."
)
if entry.model_dir is None:
    common.no_model(entry)
    st.stop()
loaded = common.results(entry)
if loaded is None:
    st.info("This model has no precomputed curve to compare with yet.")
    st.stop()
df, manifest = loaded


@st.cache_resource(show_spinner=False)
def _sweeps() -> dict[tuple, list[dict[str, Any]]]:
    """Finished live sweeps, shared by sessions (they are deterministic)."""
    return {}


def _defences(specs: list[Any]) -> list[dfn.Defence] | None:
    """The defence settings of the sweep (``None`` if one is not valid: the sweep says why)."""
    try:
        return [dfn.Identity() if s is None else dfn.from_spec(s) for s in specs]
    except EngineError:
        return None


def pick_attacker(specs: list[Any]) -> tuple[bool, int | None]:
    """The lab's switch (the attacker knows the defence), and its EOT draws for a random one."""
    switch = declaration(LiveAttacker, "adaptive")
    adaptive = bool(
        widgets.param_widget(switch, key="ex_adaptive", label=ADAPTIVE_SWITCH, help=ADAPTIVE_HELP)
    )
    built = _defences(specs) or []
    if not (adaptive and any(d.randomised for d in built)):
        return adaptive, None
    draws = declaration(LiveAttacker, "eot_samples")
    eot = widgets.param_widget(draws, key="ex_eot", label="EOT draws per step")
    return True, int(eot) if isinstance(eot, int | float) else None  # None: the declared default


@st.cache_data(show_spinner="Reading test images…", max_entries=8)
def _images(dataset_id: str, n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    index = common.test_split(dataset_id)
    assert index is not None
    picks = datasets.subset_indices(index.labels, n, seed=seed)
    return [index.image(int(i)) for i in picks], index.labels[picks]


index = common.test_split(entry.dataset_id)
if index is None:
    st.warning(
        f"The {entry.dataset_id} test images are not on this machine, so nothing can be "
        "recomputed live. The Models & data page says how to get them."
    )
    st.stop()

if not query.attacked(df):
    st.info(widgets.NO_ATTACKED_ROWS)
    st.stop()
c1, c2, c3 = st.columns(3)
sweeps = ["ε (attack strength)"]
if widgets.tunable_families(df, chains=False):  # a variant's sweep has one setting each
    sweeps.append("a defence parameter")
what = c1.radio("Sweep", sweeps, key="ex_what")
attack = c2.selectbox(
    "Attack", query.attacked(df), format_func=labels.attack_title, key="ex_attack"
)
metric_ids = [
    m
    for m in ("accuracy", "macro_recall", "fooling_rate", "sensitivity", "npv", "fnr")
    if m in df.columns and df[m].notna().any()
]
metric = c3.selectbox(
    "Metric", metric_ids, format_func=lambda m: labels.METRICS[m].label, key="ex_metric"
)
n = int(
    widgets.param_widget(
        declaration(MiniSweepOptions, "n_images"),
        key="ex_n",
        label="Test images (N): more is slower and less noisy",
    )
)
positive = list(getattr(entry.meta, "positive_indices", []) or [])

if what.startswith("ε"):
    family, params = widgets.defence_picker(df, key="ex_def")
    row, note = query.nearest_setting(
        df, attack=attack, eps=0, defence_family=family, params=params
    )
    if note:
        st.info(f"Nearest precomputed setting: {note}.")
    key_ = row["defence_key"]
    spec = row["defence_params"]
    eps_values = query.eps_values(df, attack, key_)
    fig = charts.metric_vs_eps(df, metric=metric, attack=attack, defence_keys=[key_])
    x_name = "eps"
    defences_arg = [spec]
    request = ("eps", attack, tuple(eps_values), str(spec))
else:
    family, param, eps_used = widgets.param_picker(df, attack, key="ex", chains=False)
    midpoints = st.toggle("Add points between the precomputed values", True, key="ex_mid")
    settings = views.live_param_settings(df, family=family, param=param, midpoints=midpoints)
    fig = charts.metric_vs_param(
        df, metric=metric, attack=attack, eps=eps_used, family=family, param=param
    )
    x_name = param
    eps_values = [eps_used]
    defences_arg = [s for _, s in settings]
    request = ("param", attack, eps_used, tuple(str(s) for s in defences_arg))

adaptive, eot_samples = pick_attacker(defences_arg)
built = _defences(defences_arg)
no_defence = built is not None and all(isinstance(d, dfn.Identity) for d in built)
transfer_only = not any(threat.is_adaptive(str(t)) for t in df["threat_model"].unique())
if adaptive and no_defence:
    st.info(
        "This setting has no defence, so an attacker who knows the defence has nothing more "
        "to know: the live points are those of the plain attack. Pick a defence to see the "
        "difference."
    )
elif adaptive and transfer_only:
    st.info(
        "The live points are for an attacker who knows the defence; the precomputed curve is "
        "for an attacker who does not (transfer), so the defence looks stronger on the curve "
        "than it is against this attacker: expect the live points below it."
    )

attacker = (adaptive, eot_samples)
key = (entry.key, entry.meta.model_sha256 if entry.meta else "", n, metric, *attacker, *request)
done = _sweeps().get(key)
run = st.button(
    "▶ Run the live sweep" if done is None else "Shown below (cached)",
    type="primary",
    key="ex_run",
    disabled=done is not None,
)
if run and done is None:
    images, labels = _images(entry.dataset_id, n, 0)
    bar = st.progress(0.0, text="Starting…")
    t0 = time.perf_counter()

    def progress(k: int, total: int, message: str) -> None:
        elapsed = time.perf_counter() - t0
        eta = elapsed / max(k, 1) * (total - k)
        bar.progress(k / total, text=f"{message} · {k}/{total} · about {eta:.0f} s left")

    with common.friendly_errors("The live sweep failed"):
        rows = common.worker().mini_sweep(
            str(entry.model_dir),
            images,
            labels,
            attack=attack,
            eps_values=eps_values,
            defences=defences_arg,
            positive=positive or None,
            adaptive=adaptive,
            eot_samples=eot_samples,
            progress=progress,
        )
        if x_name != "eps":  # rows are eps-major, one per defence setting
            values = [v for v, _ in settings]
            for i, r in enumerate(rows):
                r[x_name] = values[i % len(values)]
        _sweeps()[key] = rows
        st.session_state["ex_seconds"] = time.perf_counter() - t0
        st.rerun()  # redraw with the live points and the "cached" button

if done:
    name = f"live, attacker knows the defence ({n} images)" if adaptive else f"live ({n} images)"
    charts.overlay_live(fig, done, metric=metric, x=x_name, name=name)
widgets.chart(fig, key="ex_chart", filename=f"{entry.key}_explorer")
if done:
    if "ex_seconds" in st.session_state:
        st.caption(f"Live sweep computed in {st.session_state.pop('ex_seconds'):.1f} s.")
    st.caption(
        f"Live points: {n} test images, so each point can sit up to about "
        f"±{100 / np.sqrt(n):.0f} points (two standard errors) from the full-test-set "
        "curve by chance alone."
    )
    with st.expander("Live numbers"):
        st.dataframe(
            [{k: r.get(k) for k in (x_name, "defence_label", "n_images", metric)} for r in done],
            hide_index=True,
        )
# The threat model of the live rows shown (an attacked row's, not a clean one's), else the
# precomputed curve's.
shown = list(dict.fromkeys(str(r.get("threat_model")) for r in done or []))
attacked = [t for t in shown if t != threat.THREAT_CLEAN]
for label in attacked or shown or [threat.THREAT_TRANSFER]:
    common.threat_badge(label)
