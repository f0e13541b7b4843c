"""What every page shares: the dataset/backbone choice, cached loaders, the model worker.

Thin glue between Streamlit and the engine (house rule 1): no numbers are
computed here. TensorFlow never loads in this process: models live in the
model worker (:mod:`app.worker`), so Streamlit's ``clear_session`` after
each rerun cannot throw their compiled kernels away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app import catalog
from app.worker import ModelWorker
from engine import datasets, threat
from engine.bundle import BACKBONE_INFO
from engine.errors import EngineError

log = logging.getLogger(__name__)

#: The shipped default choice.
DEFAULT_DATASET = "chest_xray"
DEFAULT_BACKBONE = "mobilenet_v3_large"

#: Session-state keys of the choice that follows the user across pages.
KEY_DATASET = "sel_dataset"
KEY_BACKBONE = "sel_backbone"
KEY_VARIANT = "sel_variant"

#: Backbones offered in the picker (the tiny test CNN is for tests and the synthetic set).
PICKER_BACKBONES = ["mobilenet_v3_large", "mobilenet_v3_small", "resnet50", "inception_v3"]


# --------------------------------------------------------------------------- choice
@st.cache_data(ttl=30, show_spinner=False)
def _entries() -> list[catalog.Entry]:
    """Every model/results entry (re-scanned at most every 30 s: new trainings appear)."""
    return catalog.entries()


def _dataset_options() -> list[str]:
    shipped = {e.dataset_id for e in _entries()}
    return [d for d in datasets.REGISTRY if d in shipped] + [
        d for d in datasets.REGISTRY if d not in shipped
    ]


def _backbone_options(dataset_id: str) -> list[str]:
    extra = [e.backbone for e in _entries() if e.dataset_id == dataset_id]
    return PICKER_BACKBONES + [b for b in dict.fromkeys(extra) if b not in PICKER_BACKBONES]


def _variants(dataset_id: str, backbone: str) -> dict[str, catalog.Entry]:
    """The training-time-defence variants of a pair that have a model (``""``: standard)."""
    return {
        e.variant: e
        for e in _entries()
        if e.dataset_id == dataset_id and e.backbone == backbone and e.variant and e.has_model
    }


def _dataset_label(dataset_id: str) -> str:
    spec = datasets.REGISTRY[dataset_id]
    n = sum(e.has_model for e in _entries() if e.dataset_id == dataset_id)
    return f"{spec.title}" + (f"  ·  {n} model{'s' * (n > 1)}" if n else "  ·  no model yet")


def _backbone_label(dataset_id: str, backbone: str) -> str:
    entry = next(
        (
            e
            for e in _entries()
            if e.dataset_id == dataset_id and e.backbone == backbone and not e.variant
        ),
        catalog.Entry(dataset_id, backbone),
    )
    title = BACKBONE_INFO[backbone].title
    if not entry.has_model:
        return f"{title}  ·  not trained"
    return f"{title}  ·  {'shipped' if entry.shipped else 'trained here'}"


def _from_link() -> None:
    """Take the choice from a shared link (``?dataset=ID&backbone=ID``) once per session."""
    if st.session_state.get("_sel_from_link"):
        return
    st.session_state["_sel_from_link"] = True
    params = st.query_params
    if params.get("dataset") in datasets.REGISTRY:
        st.session_state[KEY_DATASET] = params["dataset"]
        # the backbone default depends on the dataset: the first with a model
        models = [e.backbone for e in _entries() if e.dataset_id == params["dataset"]]
        st.session_state[KEY_BACKBONE] = models[0] if models else DEFAULT_BACKBONE
    if params.get("backbone") in BACKBONE_INFO:
        st.session_state[KEY_BACKBONE] = params["backbone"]
    st.session_state[KEY_VARIANT] = params.get("variant", "")


def _follow_dataset() -> None:
    """After a dataset change, keep the backbone if it has a model, else take one that has."""
    dataset_id = st.session_state[KEY_DATASET]
    models = [e.backbone for e in _entries() if e.dataset_id == dataset_id and e.has_model]
    if models and st.session_state.get(KEY_BACKBONE) not in models:
        st.session_state[KEY_BACKBONE] = models[0]


def picker() -> catalog.Entry:
    """Render the dataset and backbone picker in the sidebar and return the choice.

    A link with ``?dataset=ID&backbone=ID`` opens on that choice, and the
    address bar follows the choice, so a copied link shows the same model.
    """
    _from_link()
    ds_options = _dataset_options()
    if st.session_state.get(KEY_DATASET) not in ds_options:
        st.session_state[KEY_DATASET] = DEFAULT_DATASET
    st.sidebar.selectbox(
        "Dataset",
        ds_options,
        key=KEY_DATASET,
        format_func=_dataset_label,
        on_change=_follow_dataset,
    )
    bb_options = _backbone_options(st.session_state[KEY_DATASET])
    if st.session_state.get(KEY_BACKBONE) not in bb_options:
        st.session_state[KEY_BACKBONE] = DEFAULT_BACKBONE
    dataset_id = st.session_state[KEY_DATASET]
    st.sidebar.selectbox(
        "Model backbone",
        bb_options,
        key=KEY_BACKBONE,
        format_func=lambda b: _backbone_label(dataset_id, b),
    )
    variants = _variants(dataset_id, st.session_state[KEY_BACKBONE])
    if variants:
        options = ["", *variants]
        if st.session_state.get(KEY_VARIANT) not in options:
            st.session_state[KEY_VARIANT] = ""
        st.sidebar.selectbox(
            "Training",
            options,
            key=KEY_VARIANT,
            format_func=lambda v: variants[v].variant_title if v else "standard training",
            help="Models trained with a training-time defence (adversarial or filter "
            "training) are listed beside the standard one.",
        )
    else:
        st.session_state[KEY_VARIANT] = ""
    chosen = {"dataset": dataset_id, "backbone": st.session_state[KEY_BACKBONE]}
    if st.session_state[KEY_VARIANT]:
        chosen["variant"] = st.session_state[KEY_VARIANT]
    elif "variant" in st.query_params:
        del st.query_params["variant"]
    st.query_params.update(**chosen)
    return current()


def current() -> catalog.Entry:
    """The choice in this session (the shipped default before any is made)."""
    dataset_id = st.session_state.get(KEY_DATASET, DEFAULT_DATASET)
    backbone = st.session_state.get(KEY_BACKBONE, DEFAULT_BACKBONE)
    variant = st.session_state.get(KEY_VARIANT, "")
    try:
        return catalog.find(dataset_id, backbone, variant)
    except EngineError:
        return catalog.find(DEFAULT_DATASET, DEFAULT_BACKBONE)


# --------------------------------------------------------------------------- loaders
@st.cache_data(show_spinner="Reading the precomputed results…", max_entries=16)
def _load_results(path: str, stamp: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    from engine.evaluation.results import load_results

    return load_results(path)


@st.cache_data(show_spinner=False, max_entries=16)
def _load_per_image(path: str, stamp: float) -> pd.DataFrame:
    return pd.read_csv(path)


def _stamp(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def results(entry: catalog.Entry) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The entry's recap table and manifest (cached), or ``None`` with a message shown."""
    if entry.results_dir is None:
        return None
    try:
        from engine.evaluation.results import ADAPTIVE_DIR

        stamp = _stamp(entry.results_dir / "results.csv")
        stamp += _stamp(entry.results_dir / ADAPTIVE_DIR / "results.csv")  # its companion
        return _load_results(str(entry.results_dir), stamp)
    except EngineError as exc:
        st.error(f"The precomputed results for {entry.title} cannot be read: {exc}")
        return None


def per_image(entry: catalog.Entry) -> pd.DataFrame | None:
    """The entry's per-image table (cached), or ``None``."""
    if entry.results_dir is None:
        return None
    from engine.evaluation.results import per_image_file

    path = per_image_file(entry.results_dir)
    if not path.is_file():
        return None
    return _load_per_image(str(path), _stamp(path))


@st.cache_data(show_spinner=False, max_entries=32)
def _status(results_dir: str, model_dir: str, stamp: tuple[float, float]) -> tuple[str, list[str]]:
    entry = catalog.Entry("", "", Path(model_dir) if model_dir else None, Path(results_dir))
    s = catalog.results_status(entry)
    return s.state, s.reasons


def results_status(entry: catalog.Entry) -> catalog.ResultsStatus:
    """Cached :func:`app.catalog.results_status`."""
    if entry.results_dir is None:
        return catalog.ResultsStatus("missing")
    model_file = entry.model_dir / "model.keras" if entry.model_dir else Path()
    state, reasons = _status(
        str(entry.results_dir),
        str(entry.model_dir or ""),
        # re-checked when the results or the model file change
        (_stamp(entry.results_dir / "manifest.json"), _stamp(model_file)),
    )
    return catalog.ResultsStatus(state, reasons)


@st.cache_resource(show_spinner=False, max_entries=4)
def test_split(dataset_id: str) -> datasets.SplitIndex | None:
    """The dataset's test split (no pixels), or ``None`` when its files are not here."""
    try:
        return datasets.load_splits(dataset_id)["test"]
    except EngineError:
        return None


# --------------------------------------------------------------------------- worker
@st.cache_resource(show_spinner=False)
def worker() -> ModelWorker:
    """The model worker shared by every session (it owns TensorFlow)."""
    return ModelWorker()


@st.cache_resource(show_spinner=False)
def _preloads() -> dict[str, threading.Thread]:
    return {}


@st.cache_resource(show_spinner=False)
def _loaded() -> set[str]:
    return set()


def ensure_loaded(model_dir: str | Path) -> None:
    """Load (and trace) a model in the worker once per app, not on every click.

    (Worker calls load their bundle on demand anyway, e.g. after a worker
    restart; this only lets a page show a spinner for the first, slow load.)
    """
    key = str(model_dir)
    if key not in _loaded():
        worker().load(key)
        _loaded().add(key)


def preload(entry: catalog.Entry) -> None:
    """Start loading (and tracing) the entry's model in the background, once."""
    if entry.model_dir is None:
        return
    key = str(entry.model_dir)
    started = _preloads()
    if key in started:
        return

    def load() -> None:
        try:
            worker().load(key)
        except EngineError as exc:  # shown again, readably, when a page needs the model
            log.warning("Preloading %s failed: %s", key, exc)

    t = threading.Thread(target=load, name=f"preload-{entry.key}", daemon=True)
    started[key] = t
    t.start()


# --------------------------------------------------------------------------- messages
@contextlib.contextmanager
def friendly_errors(what: str) -> Iterator[None]:
    """Show an engine error as a readable message instead of a traceback."""
    try:
        yield
    except EngineError as exc:
        st.error(f"{what}: {exc}")


def threat_badge(label: str) -> None:
    """A caption naming the threat model of the numbers above it, with its meaning."""
    st.caption(f"Threat model: **{label}**. {threat.explain(label)}")


def no_model(entry: catalog.Entry) -> None:
    """Explain that no model is trained for this choice, and how to train one."""
    st.warning(
        f"No model is trained for **{entry.title}** yet. Train one on this machine "
        "(the dashboard finds it in `runs/models`), then precompute its recap curves:"
    )
    st.code(catalog.train_command(entry.dataset_id, entry.backbone), language="bash")
    st.caption(
        "Needs the dataset in place (`python -m engine.datasets info "
        f"{entry.dataset_id}` says where to put it). "
        "The shipped models are trained from scratch at 160 px on 2 CPU cores."
    )


def sidebar_status(entry: catalog.Entry) -> None:
    """Under the picker: what the chosen model is and whether its results are fresh."""
    box = st.sidebar.container()
    meta = entry.meta
    if meta is None:
        box.caption("No model for this choice yet: the pages say how to train one.")
        return
    acc = meta.clean_metrics.get("accuracy")
    n = meta.clean_metrics.get("n_images")
    origin = "trained from scratch" if meta.weights == "none" else f"weights: {meta.weights}"
    line = f"{meta.input_size} px, {origin}"
    if isinstance(acc, float):
        line += f"; clean test accuracy **{acc:.1%}** on {n} images"
    box.caption(line)
    status = results_status(entry)
    if status.state == "missing":
        box.caption("No precomputed recap curves for this model.")
    elif not status.ok:
        box.warning(status.message(), icon="⚠️")
    if PRELOAD:
        preload(entry)


#: Load the chosen model in the background as soon as the app opens (off in tests).
PRELOAD = os.environ.get("ROBUSTLENS_PRELOAD", "1") != "0"


# --------------------------------------------------------------------------- model-level defences
def model_table(entry: catalog.Entry, attack: str, eps: Sequence[float]) -> pd.DataFrame | None:
    """:func:`app.zoo.comparison` of the entry's family at budgets ``eps`` (``None``: none)."""
    from app import zoo

    family = zoo.siblings(entry, _entries())
    if len(family) < 2:
        return None
    tables = []
    for e in family:
        loaded = results(e)
        if loaded is not None:
            tables.append((e, loaded[0]))
    return zoo.comparison(tables, attack=attack, eps=eps)


def variant_budgets(entry: catalog.Entry, attack: str, eps: float | None = None) -> list[float]:
    """The attacked budgets (eps > 0) of ``attack`` in the entry's results, and ``eps``."""
    loaded = results(entry)
    found = (
        set()
        if loaded is None
        else set(loaded[0].loc[lambda d: (d["attack"] == attack) & (d["eps"] > 0), "eps"])
    )
    if eps is not None:
        found.add(eps)
    return sorted(float(e) for e in found)


def model_level(entry: catalog.Entry, attack: str, eps: float, *, key: str) -> None:
    """The standard model beside its training-time-defence variants (nothing when it has none).

    Draws :func:`app.charts.zoo.model_bars` and says :func:`app.zoo.answer`.
    """
    from app import charts, zoo
    from app.charts.zoo import model_bars, model_curves

    with friendly_errors("The model comparison cannot be drawn"):
        # one comparison over every budget: the bars and the answer read ``eps`` from it
        table = model_table(entry, attack, variant_budgets(entry, attack, eps))
        if table is None:
            return
        st.subheader("Model-level defences")
        st.caption(
            "Each model trained with a training-time defence beside the standard one, alone "
            "and with its best input defence (among the settings every model was swept with), "
            "all against an attacker who knows the defence."
        )
        st.plotly_chart(
            model_bars(table, attack=attack, eps=eps),
            config=charts.chart_config(f"{entry.key}_{attack}_models"),
            key=key,
        )
        said = zoo.answer(table, eps)
        if said:
            st.info(said)
        if table["eps"].nunique() > 1:
            st.plotly_chart(
                model_curves(table, attack=attack),
                config=charts.chart_config(f"{entry.key}_{attack}_models_eps"),
                key=f"{key}_eps",
            )
