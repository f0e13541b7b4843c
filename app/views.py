"""What the dashboard's recap pages need from a results table, as plain pandas.

The recap pages (seed 001, section 5.1: metrics against attack strength, for
the model and for the patient) read a sweep's ``results.csv`` and
``per_image.csv`` (columns documented in :mod:`engine.evaluation`) and ask
questions of them: which defence settings exist, which one is nearest to the
slider's value, what the headline numbers are, what a defence costs on clean
images and recovers under attack, and which images an attack flipped. This
module answers them; :mod:`app.charts` draws the answers. Neither draws on
TensorFlow, the models or OpenCV's filters: both run on the tables alone.

Every function takes the table (as returned by
:func:`engine.evaluation.load_results`, or read with plain pandas) as an argument
and never changes it. Unknown metrics, attacks and defence keys raise
:class:`~engine.errors.ParamError` naming the value and the allowed ones.

Defence keys
------------
A results row names its defence setting with a *key* (see
:mod:`engine.evaluation.spec`): ``"none"``, ``"jpeg:quality=75"``,
``"bilateral:d=5,sigma_color=25,sigma_space=25"``, or a chain of member keys
joined by ``+`` (``"nlm+bilateral+guided"``, ``"nlm:h=5+median:kernel=3"``).
The part before ``:`` is the defence *family* (its registry id, or the ``+``
joined ids of a chain); the rest are the parameters the sweep varied or set,
the others being at their declared defaults.

Example
-------
On the shipped chest X-ray sweep::

    from engine.evaluation import load_results
    table, manifest = load_results("assets/results/chest_xray__mobilenet_v3_large")
    h = headline(table, attack="fgsm", eps=5)
    h["note"]               # 'ε 5 is not precomputed; showing ε 4 (nearest)'
    h["attacked_accuracy"]  # 0.0 (from 0.819 on clean images)
    h["best_key"]           # 'webp_flip:quality=90', 0.792 under attack
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from engine import defences as dfn
from engine.defences import REGISTRY as DEFENCES
from engine.errors import ParamError

__all__ = [
    "ATTACK_TITLES",
    "EPS_AXIS",
    "METRICS",
    "MODEL_PANEL",
    "NO_DEFENCE",
    "PATIENT_PANEL",
    "DefenceFamily",
    "MetricInfo",
    "attack_title",
    "attacks",
    "check_attack",
    "check_defence_key",
    "check_metric",
    "defence_families",
    "defence_options",
    "eps_values",
    "family_params",
    "family_title",
    "find_row",
    "flipped_images",
    "format_metric",
    "format_value",
    "has_patient_view",
    "headline",
    "nearest_setting",
    "parse_defence_key",
    "resolve_eps",
    "setting_label",
    "settings_table",
    "tradeoff_table",
]

#: Key and family of the "no defence" setting.
NO_DEFENCE = "none"

#: Axis title for attack budgets (the engine's one pixel convention, see :mod:`engine`).
EPS_AXIS = "ε (L∞, 0–255 pixel levels)"


class MetricInfo(NamedTuple):
    """How to show one metric column of ``results.csv``.

    Attributes
    ----------
    label : str
        Display name.
    higher_is_better : bool
        Whether a defender wants it high.
    patient : bool
        Whether it belongs to the patient (sick vs healthy) view; ``NaN`` for
        datasets without "sick" classes.
    help : str
        One or two sentences for a non-expert.
    unit : str
        ``"share"`` (a fraction in [0, 1], shown as a percentage), ``"dB"``,
        ``"levels"`` (0-255 pixel units) or ``"index"`` (unitless).
    """

    label: str
    higher_is_better: bool
    patient: bool
    help: str
    unit: str = "share"


#: Metric id (a column of ``results.csv``) -> how to show it, in display order.
METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo(
        "Accuracy", True, False, "Share of images whose class the model got right."
    ),
    "macro_recall": MetricInfo(
        "Macro recall",
        True,
        False,
        "For each class, the share of its images the model recognised, averaged over classes: "
        "a rare class counts as much as a common one.",
    ),
    "macro_specificity": MetricInfo(
        "Macro specificity",
        True,
        False,
        "For each class, the share of the other images the model correctly kept out of it, "
        "averaged over classes.",
    ),
    "fooling_rate": MetricInfo(
        "Fooling rate",
        False,
        False,
        "Of the images the undefended model got right on clean inputs, the share whose answer "
        "is now wrong.",
    ),
    "mean_confidence": MetricInfo(
        "Mean confidence",
        True,
        False,
        "Average probability the model gives its own answer. High confidence is not "
        "correctness: attacked models are often confidently wrong.",
    ),
    "true_class_confidence": MetricInfo(
        "Confidence in the true class",
        True,
        False,
        "Average probability the model gives the correct class; it falls when an attack makes "
        "the model confidently wrong.",
    ),
    "patient_accuracy": MetricInfo(
        "Patient accuracy",
        True,
        True,
        "Share of patients correctly called sick or healthy (classes collapsed to sick vs "
        "healthy).",
    ),
    "sensitivity": MetricInfo(
        "Sensitivity", True, True, "Share of sick patients the model flags as sick."
    ),
    "specificity": MetricInfo(
        "Specificity", True, True, "Share of healthy patients the model clears as healthy."
    ),
    "npv": MetricInfo(
        "NPV",
        True,
        True,
        "Negative predictive value: when the model says “healthy”, how often the patient really "
        "is healthy.",
    ),
    "ppv": MetricInfo(
        "PPV",
        True,
        True,
        "Positive predictive value: when the model says “sick”, how often the patient really is "
        "sick.",
    ),
    "fnr": MetricInfo(
        "False-negative rate",
        False,
        True,
        "Share of sick patients the model calls healthy: missed diagnoses.",
    ),
    "psnr_mean": MetricInfo(
        "PSNR",
        True,
        False,
        "How close the defended image is to the clean one, in decibels (higher is closer; "
        "infinite when identical).",
        "dB",
    ),
    "ssim_mean": MetricInfo(
        "SSIM",
        True,
        False,
        "Structural similarity of the defended image to the clean one (1 = identical).",
        "index",
    ),
    "pert_linf_mean": MetricInfo(
        "Perturbation L∞",
        False,
        False,
        "Largest change the attack made to any pixel, in 0–255 levels (before the defence), "
        "averaged over images.",
        "levels",
    ),
    "pert_l2_mean": MetricInfo(
        "Perturbation L2",
        False,
        False,
        "Overall size of the attack's change (square root of the summed squared pixel changes), "
        "in 0–255 levels, averaged over images.",
        "levels",
    ),
}

#: Seed 001's "model performance" panel.
MODEL_PANEL: tuple[str, ...] = ("accuracy", "macro_recall", "macro_specificity", "fooling_rate")
#: Seed 001's "impact on health" (patient) panel.
PATIENT_PANEL: tuple[str, ...] = ("patient_accuracy", "sensitivity", "npv", "fnr")

#: Attack id -> display name. Kept here because :mod:`engine.attacks` loads TensorFlow;
#: unknown ids are shown upper-cased.
ATTACK_TITLES: dict[str, str] = {
    "fgsm": "FGSM",
    "pgd": "PGD",
    "targeted_l2": "Targeted L2",
}

_CHAIN_SPLIT = re.compile(r"\+(?=[A-Za-z_])")  # not the "+" of "1e+06"
_INT = re.compile(r"[+-]?\d+")


# --------------------------------------------------------------------------- validation


def _allowed(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def check_metric(metric: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``metric``.

    Raises
    ------
    ParamError
        ``metric`` is not a key of :data:`METRICS`.
    """
    info = METRICS.get(metric) if isinstance(metric, str) else None
    if info is None:
        raise ParamError(f"Unknown metric {metric!r}; known: {_allowed(list(METRICS))}.")
    return info


def attacks(df: pd.DataFrame) -> list[str]:
    """Attack ids of the table, in table order."""
    return list(dict.fromkeys(df["attack"]))


def check_attack(df: pd.DataFrame, attack: str) -> str:
    """``attack`` if the table has rows for it.

    Raises
    ------
    ParamError
        The table has no row for ``attack``; the message lists those it has.
    """
    known = attacks(df)
    if attack not in known:
        raise ParamError(f"Unknown attack {attack!r}; this table has: {_allowed(known)}.")
    return attack


def check_defence_key(df: pd.DataFrame, key: str) -> str:
    """``key`` if the table has rows for that defence setting.

    Raises
    ------
    ParamError
        The table has no row for ``key``; the message lists the keys it has.
    """
    known = list(dict.fromkeys(df["defence_key"]))
    if key not in known:
        raise ParamError(f"Unknown defence setting {key!r}; this table has: {_allowed(known)}.")
    return key


def eps_values(df: pd.DataFrame, attack: str, defence_key: str | None = None) -> list[float]:
    """Budgets precomputed for ``attack`` (and ``defence_key``, when given), ascending."""
    check_attack(df, attack)
    rows = df[df["attack"] == attack]
    if defence_key is not None:
        check_defence_key(df, defence_key)
        rows = rows[rows["defence_key"] == defence_key]
    return sorted({float(e) for e in rows["eps"]})


def attacked(df: pd.DataFrame) -> list[str]:
    """The table's attacks that have an attacked (ε > 0) undefended row, in table order.

    A partial sweep can hold only the clean (ε = 0) rows of an attack it has just
    started; there is no budget to pick for it yet.
    """
    key = NO_DEFENCE if NO_DEFENCE in set(df["defence_key"]) else None
    return [a for a in attacks(df) if any(e > 0 for e in eps_values(df, a, key))]


def attack_title(attack: str) -> str:
    """Display name of an attack id (``"fgsm"`` -> ``"FGSM"``)."""
    return ATTACK_TITLES.get(attack, str(attack).upper())


def has_patient_view(df: pd.DataFrame) -> bool:
    """Whether the table has patient metrics (the dataset declares "sick" classes)."""
    return bool(np.isfinite(pd.to_numeric(df["sensitivity"], errors="coerce")).any())


# --------------------------------------------------------------------------- formatting


def format_value(value: Any) -> str:
    """A parameter value as the spec writes it: ``5``, ``0.5``, ``on``/``off``."""
    if isinstance(value, bool | np.bool_):
        return "on" if value else "off"
    if isinstance(value, float | np.floating):
        value = float(value)
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def format_metric(metric: str, value: Any, *, digits: int = 1) -> str:
    """A metric value for display: ``"81.9 %"``, ``"29.8 dB"``, ``"n/a"`` for NaN.

    Parameters
    ----------
    metric : str
        A key of :data:`METRICS`.
    value : float
        The value as stored (shares as fractions in [0, 1]).
    digits : int, default=1
        Digits after the decimal point.
    """
    unit = check_metric(metric).unit
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞ dB (identical)" if unit == "dB" else "∞"
    if unit == "share":
        return f"{100 * v:.{digits}f} %"
    if unit == "dB":
        return f"{v:.{digits}f} dB"
    if unit == "levels":
        return f"{v:.{digits}f} levels"
    return f"{v:.{max(digits, 3)}f}"


# --------------------------------------------------------------------------- defence keys


def _parse_value(text: str) -> Any:
    if text in ("true", "on"):
        return True
    if text in ("false", "off"):
        return False
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _parse_single(key: str) -> tuple[str, dict[str, Any]]:
    family, sep, rest = key.partition(":")
    params: dict[str, Any] = {}
    if sep:
        for part in rest.split(","):
            name, eq, text = part.partition("=")
            if not eq or not name:
                raise ParamError(
                    f"Defence key {key!r} is malformed: expected id:name=value,...; "
                    f"got the part {part!r}."
                )
            params[name.strip()] = _parse_value(text.strip())
    if not family:
        raise ParamError(f"Defence key {key!r} is malformed: it names no defence.")
    return family, params


def parse_defence_key(key: str) -> tuple[str, dict[str, Any]]:
    """Split a defence key into its family and the parameters it names.

    Parameters
    ----------
    key : str
        A ``defence_key`` of a results table.

    Returns
    -------
    family : str
        Registry id (``"nlm"``), ``"none"``, or ``+``-joined member ids for a
        chain (``"nlm+bilateral+guided"``).
    params : dict
        Parameter name -> value (``int``, ``float``, ``bool`` or ``str``) as
        written in the key. Chain parameters are prefixed with their member's
        id (``"nlm.h"``; ``"median#2.kernel"`` for a second member of the same
        id).

    Raises
    ------
    ParamError
        ``key`` is not a string or a part of it is not ``name=value``.

    Examples
    --------
    >>> parse_defence_key("nlm:h=5,h_color=5")
    ('nlm', {'h': 5, 'h_color': 5})
    >>> parse_defence_key("nlm+bilateral:d=9")
    ('nlm+bilateral', {'bilateral.d': 9})
    """
    if not isinstance(key, str) or not key:
        raise ParamError(f"A defence key must be a non-empty string; got {key!r}.")
    members = _CHAIN_SPLIT.split(key)
    if len(members) == 1:
        return _parse_single(key)
    ids: list[str] = []
    params: dict[str, Any] = {}
    for member in members:
        member_id, member_params = _parse_single(member)
        ids.append(member_id)
        count = ids.count(member_id)
        prefix = member_id if count == 1 else f"{member_id}#{count}"
        params.update({f"{prefix}.{k}": v for k, v in member_params.items()})
    return "+".join(ids), params


def family_title(family: str) -> str:
    """Display name of a family: ``"Non-local means"``, ``"NLM → Bilateral → Guided"``."""
    if family in DEFENCES:
        return DEFENCES[family].TITLE
    ids = family.split("+")
    if len(ids) > 1:
        return " → ".join(DEFENCES[i].LABEL if i in DEFENCES else i for i in ids)
    return family


def setting_label(key: str) -> str:
    """Short display name of a setting: ``"No defence"``, ``"NLM h=5, h_color=5"``.

    Chains join their members' short names with arrows.
    """
    members = _CHAIN_SPLIT.split(key) if isinstance(key, str) else [key]
    parts = []
    for member in members:
        family, params = _parse_single(str(member))
        if family == NO_DEFENCE and len(members) == 1:
            return "No defence"
        name = DEFENCES[family].LABEL if family in DEFENCES else family
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        parts.append(f"{name} {inner}" if inner else name)
    return " → ".join(parts)


def _param_help(family: str, name: str) -> str:
    member, _, pname = name.rpartition(".")
    fam = member.split("#")[0] if member else family
    cls = DEFENCES.get(fam)
    for p in getattr(cls, "PARAMS", ()):
        if p.name == pname:
            return p.help
    return ""


def settings_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per defence setting of the table, in table order.

    Returns
    -------
    pandas.DataFrame
        Columns ``defence_key``, ``family``, ``family_title``, ``label`` (short,
        :func:`setting_label`), ``description`` (the full ``defence_label``;
        "No defence" for none) and ``params`` (dict from
        :func:`parse_defence_key`).
    """
    first = df.drop_duplicates("defence_key")
    rows = []
    for key, full in zip(first["defence_key"], first["defence_label"], strict=True):
        family, params = parse_defence_key(key)
        if not isinstance(full, str) or not full or full == "None":
            full = "No defence" if family == NO_DEFENCE else setting_label(key)
        rows.append(
            {
                "defence_key": key,
                "family": family,
                "family_title": family_title(family),
                "label": setting_label(key),
                "description": full,
                "params": params,
            }
        )
    return pd.DataFrame(
        rows, columns=["defence_key", "family", "family_title", "label", "description", "params"]
    )


def defence_families(df: pd.DataFrame) -> list[str]:
    """Families of the table in table order (``"none"`` first when present)."""
    fams = list(dict.fromkeys(settings_table(df)["family"]))
    if NO_DEFENCE in fams:
        fams.remove(NO_DEFENCE)
        fams.insert(0, NO_DEFENCE)
    return fams


def _sort_values(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def family_params(df: pd.DataFrame, family: str) -> dict[str, list[Any]]:
    """Parameters named in a family's keys and the values the table has, sorted.

    Raises
    ------
    ParamError
        The table has no setting of ``family``.
    """
    table = settings_table(df)
    sub = table[table["family"] == family]
    if sub.empty:
        known = defence_families(df)
        raise ParamError(f"Unknown defence family {family!r}; this table has: {_allowed(known)}.")
    values: dict[str, set[Any]] = {}
    for params in sub["params"]:
        for k, v in params.items():
            values.setdefault(k, set()).add(v)
    return {k: _sort_values(v) for k, v in values.items()}


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
    and finds the setting with :func:`nearest_setting`.
    """
    table = settings_table(df)
    out: dict[str, DefenceFamily] = {}
    for family in defence_families(df):
        sub = table[table["family"] == family]
        params = family_params(df, family)
        out[family] = DefenceFamily(
            family=family,
            title=family_title(family),
            keys=tuple(sub["defence_key"]),
            labels=dict(zip(sub["defence_key"], sub["label"], strict=True)),
            params={k: tuple(v) for k, v in params.items()},
            varying=tuple(k for k, v in params.items() if len(v) > 1),
            help={k: _param_help(family, k) for k in params},
        )
    return out


# --------------------------------------------------------------------------- lookups


def _nearest(values: Sequence[float], target: float) -> float:
    """The value nearest ``target``; a tie goes to the larger (the stronger attack)."""
    return min(values, key=lambda v: (abs(v - target), -v))


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.number):
        raise ParamError(f"eps must be a number in [0, 255]; got {eps!r}.")
    value = float(eps)
    if not math.isfinite(value) or not 0 <= value <= 255:
        raise ParamError(f"eps must be a number in [0, 255]; got {eps!r}.")
    return value


def resolve_eps(
    df: pd.DataFrame, attack: str, eps: Any, defence_key: str | None = None
) -> tuple[float, str]:
    """The precomputed budget nearest ``eps`` and a note when it differs.

    Parameters
    ----------
    df : pandas.DataFrame
        A results (or per-image) table.
    attack : str
        Attack id.
    eps : float
        Requested budget in [0, 255].
    defence_key : str, optional
        Only budgets this setting has rows for (partial sweeps lack some).

    Returns
    -------
    eps : float
        The nearest precomputed budget (a tie goes to the larger one).
    note : str
        ``""`` when ``eps`` is precomputed, else
        ``"ε 5 is not precomputed; showing ε 4 (nearest)"``.
    """
    value = _check_eps(eps)
    available = eps_values(df, attack, defence_key)
    if not available:
        raise ParamError(f"No {attack} rows for defence setting {defence_key!r} in this table.")
    used = _nearest(available, value)
    if used == value:
        return used, ""
    return used, (
        f"ε {format_value(value)} is not precomputed; showing ε {format_value(used)} (nearest)"
    )


def find_row(df: pd.DataFrame, attack: str, eps: float, key: str) -> pd.Series | None:
    """The row of one cell ``(attack, eps, defence key)``, or ``None`` when it is absent."""
    rows = df[(df["attack"] == attack) & (df["eps"] == eps) & (df["defence_key"] == key)]
    return None if rows.empty else rows.iloc[0]


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
    df: pd.DataFrame, family: str, params: Mapping[str, Any] | None
) -> tuple[str, list[str]]:
    opts = defence_options(df)
    if family not in opts:
        raise ParamError(
            f"Unknown defence family {family!r}; this table has: {_allowed(list(opts))}."
        )
    fam = opts[family]
    params = dict(params or {})
    unknown = [k for k in params if k not in fam.params]
    if unknown:
        names = _allowed(list(fam.params)) or "none"
        raise ParamError(
            f"{fam.title} has no parameter {unknown[0]!r} in this table; its parameters: {names}."
        )
    spreads = {}
    for name, values in fam.params.items():
        nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        spreads[name] = (max(nums) - min(nums)) if len(nums) > 1 else 1.0
    best_key, best_cost = fam.keys[0], math.inf
    for key in fam.keys:  # table order breaks ties
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
        Family id (see :func:`defence_options`); default ``"none"``.
    params : dict, optional
        Requested parameter values of the family. The setting whose values
        are nearest is chosen (numeric distances scaled by each parameter's
        spread in the table); parameters not given are free; ties go to table
        order.

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
    key, notes = _pick_key(df, defence_family or NO_DEFENCE, params)
    used, eps_note = resolve_eps(df, attack, eps, key)
    if eps_note:
        notes.insert(0, eps_note)
    row = find_row(df, attack, used, key)
    assert row is not None  # used comes from this key's rows
    return row, "; ".join(notes)


def _acc(row: pd.Series | None) -> float:
    return math.nan if row is None else float(row["accuracy"])


def headline(df: pd.DataFrame, *, attack: str = "fgsm", eps: float) -> dict[str, Any]:
    """The numbers of the overview's headline for one attack and budget.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    attack : str, default="fgsm"
        Attack id.
    eps : float
        Budget, 0-255 units; mapped to the nearest precomputed one (``note``).

    Returns
    -------
    dict
        ``attack``, ``eps`` (the budget used), ``requested_eps``, ``note``;
        ``clean_accuracy`` (eps 0, no defence), ``attacked_accuracy`` (at
        ``eps``, no defence), ``drop`` (clean - attacked); ``best_key``,
        ``best_label``, ``best_accuracy`` (the defence setting with the
        highest accuracy at ``eps``, ties to the smaller clean cost then table
        order; ``None``/NaN when the table has no defence),
        ``best_clean_accuracy`` (that setting on clean images), ``recovered``
        (best - attacked) and ``best_clean_cost`` (clean undefended - clean
        with that setting); ``n_images``; ``threat_model``, a dict with the
        ``"clean"`` and ``"attacked"`` labels of the rows used.

    Raises
    ------
    ParamError
        Unknown attack; no undefended row; ``eps`` outside [0, 255].
    """
    check_attack(df, attack)
    if NO_DEFENCE not in set(df["defence_key"]):
        raise ParamError("This table has no 'none' (no defence) setting to compare with.")
    used, note = resolve_eps(df, attack, eps, NO_DEFENCE)
    clean = find_row(df, attack, 0.0, NO_DEFENCE)
    attacked = find_row(df, attack, used, NO_DEFENCE)
    assert attacked is not None
    clean_acc, attacked_acc = _acc(clean), _acc(attacked)

    table = tradeoff_table(df, attack=attack, eps=used)
    best_key: str | None = None
    best_acc = best_clean = math.nan
    if not table.empty:
        # Highest accuracy under attack; ties to the smaller clean cost (NaN last), then order.
        ranked = table.assign(_cost=table["clean_cost"].fillna(math.inf))
        top = ranked.sort_values(["attacked_accuracy", "_cost"], ascending=[False, True]).iloc[0]
        best_key = str(top["defence_key"])
        best_acc = float(top["attacked_accuracy"])
        best_clean = float(top["clean_accuracy"])
    return {
        "attack": attack,
        "eps": used,
        "requested_eps": float(eps),
        "note": note,
        "clean_accuracy": clean_acc,
        "attacked_accuracy": attacked_acc,
        "drop": clean_acc - attacked_acc,
        "best_key": best_key,
        "best_label": None if best_key is None else setting_label(best_key),
        "best_accuracy": best_acc,
        "best_clean_accuracy": best_clean,
        "recovered": best_acc - attacked_acc,
        "best_clean_cost": clean_acc - best_clean,
        "n_images": int(attacked["n_images"]),
        "threat_model": {
            "clean": None if clean is None else str(clean["threat_model"]),
            "attacked": str(attacked["threat_model"]),
        },
    }


def tradeoff_table(df: pd.DataFrame, *, attack: str, eps: float) -> pd.DataFrame:
    """What each defence setting costs on clean images and recovers under attack.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    attack : str
        Attack id.
    eps : float
        Budget, 0-255 units; mapped to the nearest precomputed one (the note
        is in ``result.attrs["note"]``, the budget used in
        ``result.attrs["eps"]``).

    Returns
    -------
    pandas.DataFrame
        One row per defence setting other than "none" that has a row at
        ``eps``, sorted by ``recovered`` (largest first). Columns
        ``defence_key``, ``family``, ``label``, ``clean_accuracy`` and
        ``attacked_accuracy`` (with the defence), ``undefended_clean_accuracy``
        and ``undefended_attacked_accuracy`` (the same for every row),
        ``clean_cost`` (undefended clean - defended clean: accuracy the defence
        costs when nobody attacks; NaN if its clean row is missing),
        ``recovered`` (defended attacked - undefended attacked: accuracy it
        wins back), ``n_images``, ``threat_model``.

    Raises
    ------
    ParamError
        Unknown attack, no undefended row, ``eps`` outside [0, 255].
    """
    check_attack(df, attack)
    if NO_DEFENCE not in set(df["defence_key"]):
        raise ParamError("This table has no 'none' (no defence) setting to compare with.")
    used, note = resolve_eps(df, attack, eps, NO_DEFENCE)
    base_clean = _acc(find_row(df, attack, 0.0, NO_DEFENCE))
    base_attacked = _acc(find_row(df, attack, used, NO_DEFENCE))
    clean_rows = df[(df["attack"] == attack) & (df["eps"] == 0)]
    clean_by_key = dict(zip(clean_rows["defence_key"], clean_rows["accuracy"], strict=True))
    cells = df[(df["attack"] == attack) & (df["eps"] == used) & (df["defence_key"] != NO_DEFENCE)]
    rows = []
    for _, r in cells.iterrows():
        key = str(r["defence_key"])
        clean_acc = float(clean_by_key.get(key, math.nan))
        rows.append(
            {
                "defence_key": key,
                "family": parse_defence_key(key)[0],
                "label": setting_label(key),
                "clean_accuracy": clean_acc,
                "attacked_accuracy": float(r["accuracy"]),
                "undefended_clean_accuracy": base_clean,
                "undefended_attacked_accuracy": base_attacked,
                "clean_cost": base_clean - clean_acc,
                "recovered": float(r["accuracy"]) - base_attacked,
                "n_images": int(r["n_images"]),
                "threat_model": str(r["threat_model"]),
            }
        )
    columns = [
        "defence_key",
        "family",
        "label",
        "clean_accuracy",
        "attacked_accuracy",
        "undefended_clean_accuracy",
        "undefended_attacked_accuracy",
        "clean_cost",
        "recovered",
        "n_images",
        "threat_model",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out = out.sort_values("recovered", ascending=False, kind="stable").reset_index(drop=True)
    out.attrs["eps"] = used
    out.attrs["note"] = note
    out.attrs["attack"] = attack
    return out


def flipped_images(
    per_image_df: pd.DataFrame,
    *,
    attack: str,
    eps: float,
    defence_key: str,
    classes: Sequence[str] | None = None,
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
    used, note = resolve_eps(per_image_df, attack, eps, NO_DEFENCE)

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


# --------------------------------------------------------------------------- explorer


def live_param_settings(
    df: pd.DataFrame, *, family: str, param: str, midpoints: bool = False
) -> list[tuple[Any, Any]]:
    """Defence specs for a live sweep of one parameter, aligned with the precomputed curve.

    Each precomputed value of ``param`` uses that setting's exact parameters
    (the first such setting in table order). With ``midpoints``, a value
    halfway between two neighbours is added (rounded for integer
    parameters), built from the lower neighbour's setting with ``param``,
    and any parameter tied to it (equal to it there, as NLM's ``h`` and
    ``h_color``), replaced; values the defence's declaration rejects (an even
    kernel size) are dropped.

    Returns
    -------
    list of (value, spec)
        Sorted by value; ``spec`` is what :func:`engine.defences.from_spec` takes.
    """
    options = defence_options(df)
    if family not in options:
        raise ParamError(f"Unknown defence family {family!r}; known: {_allowed(list(options))}.")
    info = options[family]
    if param not in info.params:
        raise ParamError(
            f"{info.title} has no parameter {param!r} in this table; "
            f"known: {_allowed(list(info.params))}."
        )
    if "+" in family:
        raise ParamError("Live parameter sweeps take a single defence, not a chain.")
    rows = df.drop_duplicates("defence_key").set_index("defence_key")
    by_value: dict[Any, dict[str, Any]] = {}
    for key in info.keys:
        _, params = parse_defence_key(key)
        spec = rows.loc[key, "defence_params"]
        if isinstance(spec, str):
            spec = json.loads(spec)
        by_value.setdefault(params[param], spec)
    values = sorted(by_value)
    out: list[tuple[Any, Any]] = [(v, by_value[v]) for v in values]
    if midpoints and all(isinstance(v, int | float) for v in values):
        integer = all(float(v).is_integer() for v in values)
        for lo, hi in itertools.pairwise(values):
            mid = (lo + hi) / 2
            mid = round(mid) if integer else round(mid, 3)
            if mid in (lo, hi):
                continue
            base = by_value[lo]
            params = dict(base["params"])
            for name, value in base["params"].items():
                if name == param or (name != param and value == lo and name in info.varying):
                    params[name] = mid
            spec = {"id": base["id"], "params": params}
            try:
                dfn.from_spec(spec)
            except ParamError:
                continue
            out.append((mid, spec))
        out.sort(key=lambda p: p[0])
    return out


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
    defence_spec: Any
    restored: list[int] = field(default_factory=list)


def demo_case(
    df: pd.DataFrame,
    per_image_df: pd.DataFrame | None,
    *,
    attack: str = "fgsm",
    eps: float = 8.0,
) -> DemoCase | None:
    """The best defence at ``eps`` and the images it restores, or ``None`` without defences."""
    h = headline(df, attack=attack, eps=eps)
    if h["best_key"] is None:
        return None
    row = find_row(df, attack, h["eps"], h["best_key"])
    spec = None if row is None else row["defence_params"]
    if isinstance(spec, str):
        spec = json.loads(spec)
    restored: list[int] = []
    if per_image_df is not None and h["best_key"] in set(per_image_df["defence_key"]):
        flips = flipped_images(per_image_df, attack=attack, eps=h["eps"], defence_key=h["best_key"])
        restored = [int(i) for i in flips.loc[flips["restored"].eq(True), "image_index"]]
    return DemoCase(attack, h["eps"], h["best_key"], str(h["best_label"]), spec, restored)


def setting_for(df: pd.DataFrame, spec: Any, *, attack: str) -> tuple[str | None, str]:
    """The precomputed defence setting that matches a live defence spec, and a note.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    spec : None, dict or list
        A live defence in :func:`engine.defences.to_spec` form (``None`` or
        ``[]`` for no defence).
    attack : str
        The attack whose rows are searched.

    Returns
    -------
    key : str or None
        The matching (or nearest) ``defence_key``; ``None`` when the grid has
        nothing of this kind.
    note : str
        Empty for an exact match, else what differs.
    """
    members = [] if spec is None else (list(spec) if isinstance(spec, list) else [spec])
    if not members:
        return NO_DEFENCE, ""
    family = "+".join(str(m.get("id")) for m in members)
    options = defence_options(df)
    if family not in options:
        return None, f"{family_title(family)} is not in the precomputed grid"
    wanted = dfn.from_spec(members if len(members) > 1 else members[0])
    rows = df.drop_duplicates("defence_key").set_index("defence_key")["defence_params"]
    for key in options[family].keys:
        have = rows[key]
        if isinstance(have, str):
            have = json.loads(have)
        if dfn.from_spec(have) == wanted:
            return key, ""
    if len(members) == 1:
        row, note = nearest_setting(
            df, attack=attack, eps=0, defence_family=family, params=members[0].get("params")
        )
        return str(row["defence_key"]), note
    key = options[family].keys[0]
    return (
        key,
        f"the precomputed {family_title(family)} uses other parameters ({setting_label(key)})",
    )
