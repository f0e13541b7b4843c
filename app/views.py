"""What the dashboard's pages show from a results table, beyond plain queries.

The recap pages (seed 001, section 5.1: metrics against attack strength, for
the model and for the patient) read a sweep's ``results.csv`` and
``per_image.csv`` (columns documented in :mod:`engine.evaluation`). The plain
table questions (which attacks, budgets and settings exist, which row is
nearest to a slider) are :mod:`engine.evaluation.query`; names and formats are
:mod:`app.labels`. This module composes them into what a page shows: the
defence picker's options and the ready-made demo case. The headline numbers,
what each defence costs on clean images and recovers under attack, under both
threat models, are :mod:`app.headline`; where a live defence sits on the
precomputed grid (the live lab's setting, the Explorer's live sweep) is
:mod:`app.grid`; both are re-exported here.
:mod:`app.charts` draws the answers. Nothing here draws on TensorFlow, the
models or OpenCV's filters: it runs on the tables alone.

Every function takes the table (as returned by
:func:`engine.evaluation.load_results`, or read with plain pandas) as an
argument and never changes it. Unknown metrics, attacks and defence keys raise
:class:`~engine.errors.ParamError` naming the value and the allowed ones.

Example
-------
On the shipped chest X-ray sweep::

    from engine.evaluation import load_results
    table, manifest = load_results("assets/results/chest_xray__mobilenet_v3_large")
    h = headline(table, attack="fgsm", eps=5)
    h["note"]               # 'ε 5 is not precomputed; showing ε 4 (nearest)'
    h["attacked_accuracy"]  # 0.0 (from 0.819 on clean images)
    h["transfer_best_key"]  # 'webp_flip:quality=90', 0.792 under the transfer attack
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from app.grid import DefenceSpec, live_param_settings, setting_for
from app.headline import (
    AdaptiveHeadline,
    Headline,
    headline,
    headline_sentences,
    threat_comparison,
    tradeoff_table,
)
from app.labels import family_title, param_help, setting_label
from engine.attacks import DEFAULT_ATTACK
from engine.evaluation import query
from engine.evaluation.keys import NO_DEFENCE, parse_defence_key

__all__ = [
    "AdaptiveHeadline",
    "DefenceFamily",
    "DemoCase",
    "Headline",
    "defence_options",
    "demo_case",
    "headline",
    "headline_sentences",
    "live_param_settings",
    "setting_for",
    "settings_table",
    "threat_comparison",
    "tradeoff_table",
]

# --------------------------------------------------------------------------- defence settings


def settings_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per defence setting of the table, in table order.

    Returns
    -------
    pandas.DataFrame
        Columns ``defence_key``, ``family``, ``family_title``, ``label`` (short,
        :func:`setting_label`), ``description`` (the full ``defence_label``;
        "No defence" for none) and ``params`` (dict from
        :func:`engine.evaluation.keys.parse_defence_key`).
    """
    df = query.for_threat(df)
    first = df.drop_duplicates("defence_key")
    rows = []
    for key, full in zip(first["defence_key"], first["defence_label"], strict=True):
        fam, params = parse_defence_key(key)
        if not isinstance(full, str) or not full or full == "None":
            full = "No defence" if fam == NO_DEFENCE else setting_label(key)
        rows.append(
            {
                "defence_key": key,
                "family": fam,
                "family_title": family_title(fam),
                "label": setting_label(key),
                "description": full,
                "params": params,
            }
        )
    return pd.DataFrame(
        rows, columns=["defence_key", "family", "family_title", "label", "description", "params"]
    )


@dataclass(frozen=True)
class DefenceFamily:
    """What a defence picker needs about one family.

    Attributes
    ----------
    family : str
        Registry id, ``"none"``, or ``+``-joined ids of a chain.
    title : str
        Display name (:func:`family_title`).
    keys : tuple of str
        Its settings' keys, in table order.
    labels : dict
        Key -> short label (:func:`setting_label`).
    params : dict
        Parameter -> the values the table has (sorted tuple).
    varying : tuple of str
        The parameters that take more than one value (the ones worth a slider).
    help : dict
        Parameter -> its one-line help from the defence's declaration.
    """

    family: str
    title: str
    keys: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    params: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    varying: tuple[str, ...] = ()
    help: dict[str, str] = field(default_factory=dict)


def defence_options(df: pd.DataFrame) -> dict[str, DefenceFamily]:
    """Family id -> :class:`DefenceFamily`, ``"none"`` first, then in table order.

    A picker lists the families by ``title``, then offers a select slider
    for each of the family's ``varying`` parameters (values from ``params``),
    and finds the setting with :func:`engine.evaluation.query.nearest_setting`.
    """
    df = query.for_threat(df)
    out: dict[str, DefenceFamily] = {}
    for fam in query.defence_families(df):
        fam_keys = query.family_keys(df, fam)
        params = query.family_params(df, fam)
        out[fam] = DefenceFamily(
            family=fam,
            title=family_title(fam),
            keys=tuple(fam_keys),
            labels={k: setting_label(k) for k in fam_keys},
            params={k: tuple(v) for k, v in params.items()},
            varying=tuple(k for k, v in params.items() if len(v) > 1),
            help={k: param_help(fam, k) for k in params},
        )
    return out


# --------------------------------------------------------------------------- demo case


@dataclass(frozen=True)
class DemoCase:
    """A ready-made live example: the recap's best defence and images it restores.

    Attributes
    ----------
    attack, eps : str, float
        The attack and the precomputed budget used.
    defence_key, defence_label : str
        The best defence setting at that budget (:func:`headline`).
    defence_spec : dict or list
        Its :func:`engine.defences.to_spec` form, for the live lab.
    restored : list of int
        Test-split positions (from the per-image records) that the attack
        flips and this defence restores; empty without per-image records.
    """

    attack: str
    eps: float
    defence_key: str
    defence_label: str
    defence_spec: DefenceSpec
    restored: list[int] = field(default_factory=list)


def demo_case(
    df: pd.DataFrame,
    per_image_df: pd.DataFrame | None,
    *,
    attack: str = DEFAULT_ATTACK,
    eps: float = 8.0,
) -> DemoCase | None:
    """The best defence at ``eps`` and the images it restores, or ``None`` without defences."""
    h = headline(df, attack=attack, eps=eps)
    if h["best_key"] is None:
        return None
    spec = query.defence_spec(df, h["best_key"])
    restored: list[int] = []
    if per_image_df is not None and h["best_key"] in set(per_image_df["defence_key"]):
        flips = query.flipped_images(
            per_image_df, attack=attack, eps=h["eps"], defence_key=h["best_key"]
        )
        restored = [int(i) for i in flips.loc[flips["restored"].eq(True), "image_index"]]
    return DemoCase(attack, h["eps"], h["best_key"], str(h["best_label"]), spec, restored)
