"""The rows of a results table for one cell, budget or attack: the first questions of
:mod:`engine.evaluation.query`, which re-exports them (read their documentation there).

Each function that picks rows takes ``threat=`` and reads that threat model's rows
and the clean rows only (:func:`engine.evaluation.threats.for_threat`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import ParamError
from engine.evaluation.keys import NO_DEFENCE, format_value
from engine.evaluation.threats import for_threat
from engine.threat import TRANSFER

__all__ = [
    "allowed",
    "attacked",
    "attacks",
    "check_attack",
    "check_defence_key",
    "defence_keys",
    "eps_values",
    "find_row",
    "has_patient_view",
    "resolve_eps",
]


def allowed(values: Sequence[Any]) -> str:
    """Values listed for a message: ``"a, b, c"``."""
    return ", ".join(str(v) for v in values)


# --------------------------------------------------------------------------- attacks & budgets


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
        raise ParamError(f"Unknown attack {attack!r}; this table has: {allowed(known)}.")
    return attack


def defence_keys(df: pd.DataFrame) -> list[str]:
    """Defence keys of the table, in table order."""
    return list(dict.fromkeys(df["defence_key"]))


def check_defence_key(df: pd.DataFrame, key: str) -> str:
    """``key`` if the table has rows for that defence setting.

    Raises
    ------
    ParamError
        The table has no row for ``key``; the message lists the keys it has.
    """
    known = defence_keys(df)
    if key not in known:
        raise ParamError(f"Unknown defence setting {key!r}; this table has: {allowed(known)}.")
    return key


def eps_values(
    df: pd.DataFrame, attack: str, defence_key: str | None = None, *, threat: str = TRANSFER.id
) -> list[float]:
    """Budgets precomputed for ``attack`` (and ``defence_key``, when given), ascending, under
    ``threat`` (clean rows included)."""
    check_attack(df, attack)
    rows = for_threat(df, threat)
    rows = rows[rows["attack"] == attack]
    if defence_key is not None:
        check_defence_key(df, defence_key)
        rows = rows[rows["defence_key"] == defence_key]
    return sorted({float(e) for e in rows["eps"]})


def attacked(df: pd.DataFrame, *, threat: str = TRANSFER.id) -> list[str]:
    """The table's attacks that have an attacked (ε > 0) undefended row under ``threat``, in
    table order.

    A partial sweep can hold only the clean (ε = 0) rows of an attack it has just
    started; there is no budget to pick for it yet.
    """
    key = NO_DEFENCE if NO_DEFENCE in set(df["defence_key"]) else None
    return [a for a in attacks(df) if any(e > 0 for e in eps_values(df, a, key, threat=threat))]


def has_patient_view(df: pd.DataFrame) -> bool:
    """Whether the table has patient metrics (the dataset declares "sick" classes)."""
    return bool(np.isfinite(pd.to_numeric(df["sensitivity"], errors="coerce")).any())


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
    df: pd.DataFrame,
    attack: str,
    eps: Any,
    defence_key: str | None = None,
    *,
    threat: str = TRANSFER.id,
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
    threat : str, default="transfer"
        Only budgets with rows of this threat model (see :func:`for_threat`).

    Returns
    -------
    eps : float
        The nearest precomputed budget (a tie goes to the larger one).
    note : str
        ``""`` when ``eps`` is precomputed, else
        ``"ε 5 is not precomputed; showing ε 4 (nearest)"``.
    """
    value = _check_eps(eps)
    available = eps_values(df, attack, defence_key, threat=threat)
    if not available:
        raise ParamError(f"No {attack} rows for defence setting {defence_key!r} in this table.")
    used = _nearest(available, value)
    if used == value:
        return used, ""
    return used, (
        f"ε {format_value(value)} is not precomputed; showing ε {format_value(used)} (nearest)"
    )


def find_row(
    df: pd.DataFrame, attack: str, eps: float, key: str, *, threat: str = TRANSFER.id
) -> pd.Series | None:
    """The row of one cell ``(attack, eps, defence key)`` under ``threat`` (the clean row at
    ``eps = 0``), or ``None`` when it is absent."""
    df = for_threat(df, threat)
    rows = df[(df["attack"] == attack) & (df["eps"] == eps) & (df["defence_key"] == key)]
    return None if rows.empty else rows.iloc[0]
