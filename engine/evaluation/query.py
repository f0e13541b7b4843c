"""Questions to a sweep's results table, as plain pandas.

A sweep's ``results.csv`` and ``per_image.csv`` (columns documented in
:mod:`engine.evaluation`) hold one row per cell ``(attack, eps, defence
setting)``. These functions answer what a research user asks of them before
drawing anything: which attacks and budgets exist, which row is one cell,
which precomputed budget or defence setting is nearest to the one wanted,
which defence families and parameter values the table has, and which images
an attack flipped (from the per-image records). The dashboard
builds on them (:mod:`app.views`); nothing here draws, nor imports plotly or
streamlit.

Every function takes the table (as returned by
:func:`engine.evaluation.load_results`, or read with plain pandas) and never
changes it. A table may hold rows of several threat models for one cell
(transfer and adaptive, :mod:`engine.evaluation.threats`): the functions that
pick rows take ``threat=`` (a threat-model id, default ``"transfer"``) and read
that threat model's rows and the clean rows only, so a caller that names none
sees exactly what a transfer-only table shows; :func:`threats` says which a
table has and :func:`for_threat` selects them. Unknown attacks, defence keys,
families and parameters raise :class:`~engine.errors.ParamError` naming the
value and the allowed ones. Defence keys are read with :mod:`engine.evaluation.keys`.

Example
-------
On the shipped chest X-ray sweep::

    from engine.evaluation import load_results
    from engine.evaluation import query
    table, manifest = load_results("assets/results/chest_xray__mobilenet_v3_large")
    query.eps_values(table, "fgsm")          # [0.0, 1.0, 2.0, 4.0, 8.0, ...]
    row, note = query.nearest_setting(table, attack="fgsm", eps=5, defence_family="median")
    note                                     # 'ε 5 is not precomputed; showing ε 4 (nearest)'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from engine.defences import REGISTRY as DEFENCES
from engine.errors import ParamError
from engine.evaluation._rows import (
    allowed,
    attacked,
    attacks,
    check_attack,
    check_defence_key,
    defence_keys,
    eps_values,
    find_row,
    has_patient_view,
    resolve_eps,
)
from engine.evaluation.keys import CHAIN_SEP, NO_DEFENCE, family, format_value, parse_defence_key
from engine.evaluation.threats import for_threat, threats
from engine.threat import TRANSFER

__all__ = [
    "NO_DEFENCE",
    "attacked",
    "attacks",
    "check_attack",
    "check_defence_key",
    "check_param",
    "defence_families",
    "defence_keys",
    "defence_spec",
    "eps_values",
    "family_keys",
    "family_params",
    "family_title",
    "find_row",
    "flipped_images",
    "for_threat",
    "has_patient_view",
    "nearest_setting",
    "resolve_eps",
    "threats",
]


# --------------------------------------------------------------------------- defence settings


def family_title(family: str, *, short: bool = False) -> str:
    """Display name of a defence family, from :data:`engine.defences.REGISTRY`.

    ``"Non-local means"`` (``short``: ``"NLM"``); a chain joins its members'
    short names with arrows (``"NLM → Bilateral → Guided"``); an unknown id is
    shown as it is.
    """
    ids = family.split(CHAIN_SEP)
    if len(ids) == 1 and not short:
        return DEFENCES[family].TITLE if family in DEFENCES else family
    return " → ".join(DEFENCES[i].LABEL if i in DEFENCES else i for i in ids)


def defence_families(df: pd.DataFrame) -> list[str]:
    """Families of the table in table order (``"none"`` first when present)."""
    fams = list(dict.fromkeys(family(k) for k in defence_keys(df)))
    if NO_DEFENCE in fams:
        fams.remove(NO_DEFENCE)
        fams.insert(0, NO_DEFENCE)
    return fams


def family_keys(df: pd.DataFrame, family_id: str) -> list[str]:
    """Keys of the family's settings, in table order.

    Raises
    ------
    ParamError
        The table has no setting of ``family_id``.
    """
    found = [k for k in defence_keys(df) if family(k) == family_id]
    if not found:
        known = allowed(defence_families(df))
        raise ParamError(f"Unknown defence family {family_id!r}; this table has: {known}.")
    return found


def _sort_values(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def family_params(df: pd.DataFrame, family_id: str) -> dict[str, list[Any]]:
    """Parameters named in a family's keys and the values the table has, sorted.

    Raises
    ------
    ParamError
        The table has no setting of ``family_id``.
    """
    values: dict[str, set[Any]] = {}
    for key in family_keys(df, family_id):
        for k, v in parse_defence_key(key)[1].items():
            values.setdefault(k, set()).add(v)
    return {k: _sort_values(v) for k, v in values.items()}


def check_param(df: pd.DataFrame, family_id: str, param: str) -> list[Any]:
    """The values ``param`` takes in the family's settings (sorted).

    Raises
    ------
    ParamError
        Unknown family, or no setting of it names ``param``.
    """
    params = family_params(df, family_id)
    if param not in params:
        raise ParamError(
            f"{family_title(family_id)} has no parameter {param!r} in this table; "
            f"known: {allowed(list(params)) or 'none'}."
        )
    return params[param]


def defence_spec(df: pd.DataFrame, key: str) -> dict[str, Any] | list[dict[str, Any]]:
    """The stored :func:`engine.defences.to_spec` of a setting (JSON decoded if needed).

    Raises
    ------
    ParamError
        The table has no row for ``key``.
    """
    check_defence_key(df, key)
    spec = df.loc[df["defence_key"] == key, "defence_params"].iloc[0]
    decoded = json.loads(spec) if isinstance(spec, str) else spec
    if not isinstance(decoded, dict | list):
        raise ParamError(f"Defence setting {key!r} stores no defence spec; got {spec!r}.")
    return decoded


# --------------------------------------------------------------------------- nearest setting


def _param_distance(want: Any, have: Any, spread: float) -> float:
    if want == have:
        return 0.0
    numeric = (int, float, np.number)
    if (
        isinstance(want, numeric)
        and isinstance(have, numeric)
        and not isinstance(want, bool)
        and not isinstance(have, bool)
    ):
        return abs(float(want) - float(have)) / spread
    return 1e6  # a different non-numeric value (a bool, a name): only chosen as a last resort


def _pick_key(
    df: pd.DataFrame, family_id: str, params: Mapping[str, Any] | None
) -> tuple[str, list[str]]:
    keys = family_keys(df, family_id)
    params = dict(params or {})
    for name in params:
        check_param(df, family_id, name)
    spreads = {}
    for name, values in family_params(df, family_id).items():
        nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        spreads[name] = (max(nums) - min(nums)) if len(nums) > 1 else 1.0
    best_key, best_cost = keys[0], math.inf
    for key in keys:  # table order breaks ties
        have = parse_defence_key(key)[1]
        cost = sum(
            _param_distance(want, have.get(name), spreads[name]) for name, want in params.items()
        )
        if cost < best_cost:
            best_key, best_cost = key, cost
    chosen = parse_defence_key(best_key)[1]
    notes = [
        f"{name} {format_value(want)} is not precomputed; showing {name} "
        f"{format_value(chosen.get(name))} (nearest)"
        for name, want in params.items()
        if chosen.get(name) != want
    ]
    return best_key, notes


def nearest_setting(
    df: pd.DataFrame,
    *,
    attack: str,
    eps: float,
    defence_family: str | None = None,
    params: Mapping[str, Any] | None = None,
    threat: str = TRANSFER.id,
) -> tuple[pd.Series, str]:
    """The precomputed row nearest to a requested budget and defence setting.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    attack : str
        Attack id (must be in the table).
    eps : float
        Requested budget, 0-255 units; the nearest precomputed one for this
        attack and setting is used (a tie goes to the larger budget).
    defence_family : str, optional
        Family id (see :func:`defence_families`); default ``"none"``.
    params : dict, optional
        Requested parameter values of the family. The setting whose values
        are nearest is chosen (numeric distances scaled by each parameter's
        spread in the table); parameters not given are free; ties go to table
        order.
    threat : str, default="transfer"
        The threat model of the row (see :func:`for_threat`).

    Returns
    -------
    row : pandas.Series
        The results row (its ``defence_key``, ``eps``, metrics, ...).
    note : str
        Empty when everything requested is precomputed, else e.g.
        ``"ε 5 is not precomputed; showing ε 4 (nearest)"`` (several notes
        joined by ``"; "``).

    Raises
    ------
    ParamError
        Unknown attack, family or parameter; ``eps`` outside [0, 255].
    """
    check_attack(df, attack)
    df = for_threat(df, threat)
    key, notes = _pick_key(df, defence_family or NO_DEFENCE, params)
    used, eps_note = resolve_eps(df, attack, eps, key, threat=threat)
    if eps_note:
        notes.insert(0, eps_note)
    row = find_row(df, attack, used, key, threat=threat)
    assert row is not None  # used comes from this key's rows
    return row, "; ".join(notes)


# --------------------------------------------------------------------------- per-image records


def flipped_images(
    per_image_df: pd.DataFrame,
    *,
    attack: str,
    eps: float,
    defence_key: str,
    classes: Sequence[str] | None = None,
    threat: str = TRANSFER.id,
) -> pd.DataFrame:
    """Images the attack flipped (right when clean, wrong when attacked, no defence).

    Parameters
    ----------
    per_image_df : pandas.DataFrame
        A ``per_image.csv`` table (columns in :mod:`engine.evaluation`).
    attack : str
        Attack id.
    eps : float
        Budget, 0-255 units; mapped to the nearest precomputed one (note in
        ``result.attrs["note"]``).
    defence_key : str
        The defence setting whose effect on the flipped images is reported.
    classes : sequence of str, optional
        Class names (the manifest's ``model.classes``); adds the name columns.
    threat : str, default="transfer"
        The threat model of the attacked and defended records (:func:`for_threat`).

    Returns
    -------
    pandas.DataFrame
        One row per flipped image, ordered by ``image_index``: ``image_index``,
        ``ref``, ``true_label``, ``pred_clean``, ``pred_attacked``,
        ``confidence_attacked`` (probability of the wrong answer),
        ``true_confidence_attacked``, ``pred_defended``,
        ``confidence_defended``, ``restored`` (the defence gives the true class
        back; NaN if the defended row is missing) and, with ``classes``,
        ``true_name``, ``attacked_name``, ``defended_name``.

    Raises
    ------
    ParamError
        Unknown attack or defence key; ``eps`` outside [0, 255].
    """
    check_attack(per_image_df, attack)
    check_defence_key(per_image_df, defence_key)
    used, note = resolve_eps(per_image_df, attack, eps, NO_DEFENCE, threat=threat)
    per_image_df = for_threat(per_image_df, threat)

    def cell(e: float, key: str) -> pd.DataFrame:
        sel = per_image_df[
            (per_image_df["attack"] == attack)
            & (per_image_df["eps"] == e)
            & (per_image_df["defence_key"] == key)
        ]
        return sel.set_index("image_index")

    clean, attacked, defended = (
        cell(0.0, NO_DEFENCE),
        cell(used, NO_DEFENCE),
        cell(used, defence_key),
    )
    right = clean.index[clean["correct"].astype(bool)]
    wrong = attacked.index[~attacked["correct"].astype(bool)]
    flipped = sorted(set(right) & set(wrong))
    out = pd.DataFrame(
        {
            "image_index": flipped,
            "ref": attacked.loc[flipped, "ref"].to_numpy(),
            "true_label": attacked.loc[flipped, "true_label"].to_numpy().astype(int),
            "pred_clean": clean.loc[flipped, "pred"].to_numpy().astype(int),
            "pred_attacked": attacked.loc[flipped, "pred"].to_numpy().astype(int),
            "confidence_attacked": attacked.loc[flipped, "confidence"].to_numpy(dtype=float),
            "true_confidence_attacked": attacked.loc[flipped, "true_confidence"].to_numpy(
                dtype=float
            ),
        }
    )
    d = defended.reindex(flipped)
    out["pred_defended"] = d["pred"].astype("Int64").reset_index(drop=True)
    out["confidence_defended"] = d["confidence"].to_numpy(dtype=float)
    restored = d["correct"].to_numpy(dtype=object)
    out["restored"] = [None if pd.isna(v) else bool(v) for v in restored]
    if classes is not None:

        def name(i: Any) -> Any:
            return None if pd.isna(i) else classes[int(i)]

        out["true_name"] = [name(i) for i in out["true_label"]]
        out["attacked_name"] = [name(i) for i in out["pred_attacked"]]
        out["defended_name"] = [name(i) for i in out["pred_defended"]]
    out.attrs["eps"] = used
    out.attrs["note"] = note
    return out
