"""Model-level defences beside input defences: which one holds under an attacker who knows it?

A model trained with a training-time defence (:mod:`engine.hardening`:
adversarial training, filter training, distillation) is its own catalog entry,
a *variant* of the standard model (:attr:`app.catalog.Entry.variant`). Attacked
with no input defence, a variant's rows are white-box attacks on the defended
model itself: the attacker knows the defence by construction. With an input
defence on top, its adaptive sweep crafts the attack through that too.

:func:`comparison` puts the standard model and its variants side by side at a
few budgets: each model alone, and each model with its best input defence
against the adaptive attacker (chosen by balanced accuracy, since on a
two-class test set with 62.5 % pneumonia, answering "pneumonia" always scores
62.5 % accuracy and 50 % balanced accuracy). No TensorFlow, no Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from app import catalog
from app.labels import setting_label
from engine import hardening
from engine.evaluation import query
from engine.evaluation.keys import NO_DEFENCE
from engine.threat import ADAPTIVE

__all__ = ["BALANCED", "COLUMNS", "answer", "comparison", "siblings"]

#: The results column read as balanced accuracy (the mean of per-class recalls).
BALANCED = "macro_recall"

COLUMNS = [
    "model",
    "variant",
    "eps",
    "kind",
    "defence_key",
    "label",
    "accuracy",
    "balanced",
    "clean_accuracy",
    "clean_balanced",
    "n_images",
    "threat_model",
    "caveat",
]


def siblings(entry: catalog.Entry, entries: Sequence[catalog.Entry]) -> list[catalog.Entry]:
    """The entry's standard model and its variants that have results (standard first)."""
    same = [
        e
        for e in entries
        if e.dataset_id == entry.dataset_id
        and e.backbone == entry.backbone
        and e.results_dir is not None
    ]
    return sorted(same, key=lambda e: (e.variant != "", e.variant))


def _clean(df: pd.DataFrame, attack: str, key: str, n: int) -> pd.Series | None:
    """The clean row of a setting on the same number of images as an attacked row."""
    rows = df[(df["attack"] == attack) & (df["eps"] == 0.0) & (df["defence_key"] == key)]
    same = rows[rows["n_images"] == n]
    pick = same if not same.empty else rows
    return None if pick.empty else pick.iloc[0]


def _caveat(entry: catalog.Entry) -> str:
    """The training-time defence's caveat (:func:`engine.hardening.caveat`), if any."""
    d = (entry.meta.training or {}).get("defence") if entry.meta is not None else None
    return hardening.caveat(str(d.get("kind", "")), str(d.get("method", ""))) if d else ""


def _row(
    model: str,
    variant: str,
    df: pd.DataFrame,
    attack: str,
    eps: float,
    kind: str,
    r: pd.Series,
    caveat: str = "",
) -> dict[str, object]:
    key = str(r["defence_key"])
    c = _clean(df, attack, key, int(r["n_images"]))
    return {
        "model": model,
        "variant": variant,
        "eps": eps,
        "kind": kind,
        "defence_key": key,
        "label": "no input defence" if key == NO_DEFENCE else setting_label(key),
        "accuracy": float(r["accuracy"]),
        "balanced": float(r[BALANCED]),
        "clean_accuracy": float(c["accuracy"]) if c is not None else math.nan,
        "clean_balanced": float(c[BALANCED]) if c is not None else math.nan,
        "n_images": int(r["n_images"]),
        "threat_model": str(r["threat_model"]),
        "caveat": caveat,
    }


def comparison(
    tables: Sequence[tuple[catalog.Entry, pd.DataFrame]], *, attack: str, eps: Sequence[float]
) -> pd.DataFrame:
    """Each model alone and with its best input defence, against the adaptive attacker.

    Parameters
    ----------
    tables : sequence of (Entry, DataFrame)
        Each model's results table (with its adaptive companion merged, as
        :func:`engine.evaluation.load_results` returns it).
    attack : str
        Attack id; a model without rows of it is left out.
    eps : sequence of float
        Budgets; a model without a budget is left out at that budget.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`; per model and budget a ``kind="alone"`` row (no input
        defence: the adaptive row where one exists, else the attack on the
        model itself, which is the same attack) and, where the model has
        adaptive rows of input defences, a ``kind="best"`` row: the one with
        the highest balanced accuracy (ties: accuracy) among the input-defence
        settings that every model compared has adaptive rows of at that budget,
        so that a model swept with more settings is not favoured by the
        number of tries.
    """

    def cells(df: pd.DataFrame, e: float) -> pd.DataFrame:
        adaptive = query.for_threat(df, ADAPTIVE.id)
        return adaptive[
            (adaptive["attack"] == attack)
            & (adaptive["eps"] == e)
            & (adaptive["defence_key"] != NO_DEFENCE)
            & (adaptive["threat_model"].astype(str).str.startswith("adaptive"))
        ]

    tables = [(entry, df) for entry, df in tables if attack in query.attacked(df)]
    budgets = [float(x) for x in eps]
    # the best is chosen among the settings that every model was swept with at a budget
    shared: dict[float, set[str]] = {}
    for e in budgets:
        # (a model with no adaptive input-defence rows at a budget does not constrain it)
        keys = [k for k in (set(cells(df, e)["defence_key"]) for _, df in tables) if k]
        shared[e] = set.intersection(*keys) if keys else set()
    rows: list[dict[str, object]] = []
    for entry, df in tables:
        for e in budgets:
            alone = query.find_row(df, attack, e, NO_DEFENCE, threat=ADAPTIVE.id)
            if alone is None:
                continue
            name = entry.variant_title
            why = _caveat(entry)
            rows.append(_row(name, entry.variant, df, attack, e, "alone", alone, why))
            mine = cells(df, e)
            mine = mine[mine["defence_key"].isin(shared[e])]
            if mine.empty:
                continue
            best = mine.sort_values([BALANCED, "accuracy"], ascending=False, kind="stable")
            rows.append(_row(name, entry.variant, df, attack, e, "best", best.iloc[0], why))
    return pd.DataFrame(rows, columns=COLUMNS)


def answer(table: pd.DataFrame, eps: float) -> str:
    """One plain sentence: which model and defence keeps the most against the adaptive attacker."""
    at = table[table["eps"] == float(eps)]
    if at.empty or at["variant"].nunique() < 2:
        return ""
    top = at.sort_values(["balanced", "accuracy"], ascending=False, kind="stable").iloc[0]
    std = at[at["variant"] == ""]
    std_best = std.sort_values("balanced", ascending=False).iloc[0] if not std.empty else None
    what = f"the {top['model']} model" + (
        "" if top["defence_key"] == NO_DEFENCE else f" with {top['label']}"
    )
    said = (
        f"Against an attacker who knows the defence (ε = {float(eps):g}), {what} keeps the "
        f"most: balanced accuracy {top['balanced']:.1%} (accuracy {top['accuracy']:.1%}; "
        f"clean {top['clean_accuracy']:.1%})."
    )
    if std_best is not None and std_best["variant"] != top["variant"]:
        said += (
            f" The standard model's best keeps {std_best['balanced']:.1%} balanced accuracy"
            + ("" if std_best["defence_key"] == NO_DEFENCE else f" ({std_best['label']})")
            + "."
        )
    if top["caveat"]:
        said += f" {top['caveat']}"
    if top["balanced"] <= 0.55:
        said += " That is close to no skill (50 % balanced accuracy): no option really holds."
    return said
