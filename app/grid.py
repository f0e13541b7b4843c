"""Where a live defence sits on a results table's precomputed grid.

The live pages run defences the sweep may not have precomputed: the lab's
sliders move freely (:func:`setting_for` finds the precomputed setting
nearest to the live one, or says there is none), and the Explorer's live
parameter sweep runs the grid's own settings, with midpoints
(:func:`live_param_settings`). Both read the stored defence specs
(``defence_params``), which hold every parameter, not only those a key
names. Like :mod:`app.views`, this runs on the tables alone (no TensorFlow,
no OpenCV filter), and unknown attacks, families and parameters raise
:class:`~engine.errors.ParamError`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd

from app.labels import family_title
from engine import defences as dfn
from engine.errors import ParamError
from engine.evaluation import query
from engine.evaluation.keys import (
    CHAIN_SEP,
    NO_DEFENCE,
    Member,
    Value,
    flat_params,
    format_value,
    parse_defence_key,
)

__all__ = ["DefenceSpec", "live_param_settings", "setting_for"]

#: A defence in :func:`engine.defences.to_spec` form (``None`` or ``[]``: no defence).
DefenceSpec = dict[str, Any] | list[dict[str, Any]] | None


# --------------------------------------------------------------------------- explorer


def live_param_settings(
    df: pd.DataFrame, *, family: str, param: str, midpoints: bool = False
) -> list[tuple[Value, dict[str, Any]]]:
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
    df = query.for_threat(df)
    query.check_param(df, family, param)
    if CHAIN_SEP in family:
        raise ParamError("Live parameter sweeps take a single defence, not a chain.")
    varying = [k for k, v in query.family_params(df, family).items() if len(v) > 1]
    by_value: dict[Value, dict[str, Any]] = {}
    for key in query.family_keys(df, family):
        spec = query.defence_spec(df, key)
        if not isinstance(spec, dict):
            raise ParamError(f"Defence setting {key!r} stores a chain, not a single defence.")
        by_value.setdefault(parse_defence_key(key)[1][param], spec)
    values = sorted(by_value)
    out = [(v, by_value[v]) for v in values]
    numbers = [v for v in values if isinstance(v, int | float)]
    if midpoints and len(numbers) == len(values):
        integer = all(float(v).is_integer() for v in numbers)
        for lo, hi in itertools.pairwise(numbers):
            mid = (lo + hi) / 2
            mid = round(mid) if integer else round(mid, 3)
            if mid in (lo, hi):
                continue
            base = by_value[lo]
            params = dict(base["params"])
            for name, value in base["params"].items():
                if name == param or (value == lo and name in varying):
                    params[name] = mid
            spec = {"id": base["id"], "params": params}
            try:
                dfn.from_spec(spec)
            except ParamError:
                continue
            out.append((mid, spec))
        out.sort(key=lambda p: p[0])
    return out


# --------------------------------------------------------------------------- live lab


def _flat(defence: dfn.Defence) -> dict[str, Any]:
    """Every parameter of a defence (defaults filled in), named as keys name them."""
    spec = dfn.to_spec(defence)
    members = spec if isinstance(spec, list) else [spec]
    return flat_params(tuple(Member(m["id"], dict(m["params"])) for m in members))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _say(name: str, value: Any) -> str:
    """``"quality 80"``; a switch reads ``"flip on"`` / ``"flip off"``."""
    if isinstance(value, bool):
        return f"{name} {'on' if value else 'off'}"
    return f"{name} {format_value(value)}"


def setting_for(df: pd.DataFrame, spec: DefenceSpec, *, attack: str) -> tuple[str | None, str]:
    """The precomputed defence setting that matches a live defence spec, and a note.

    A live defence (the lab's sliders) can sit off the precomputed grid. It
    is compared with every setting of its family by *all* its parameters,
    read from the stored specs (a key names only the parameters its spec
    set, so WebP + flip's keys never name ``flip``, nor a chain's its
    members' parameters):

    * a parameter that is not a number (a switch such as WebP + flip's
      ``flip``) must match: flip off is another defence, not a nearby one,
      so when no setting has it the answer is ``None``;
    * among the settings left, the nearest by the numbers wins, each
      parameter's distance scaled by its spread in the family (as
      :func:`engine.evaluation.query.nearest_setting` does for the recap's
      sliders); ties go to table order.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    spec : None, dict or list
        A live defence in :func:`engine.defences.to_spec` form (``None`` or
        ``[]`` for no defence); missing parameters take their defaults.
    attack : str
        The attack whose rows are searched.

    Returns
    -------
    key : str or None
        The matching (or nearest) ``defence_key``; ``None`` when the table
        has no setting for this choice (a family it lacks, or a switch set
        to a value none of its settings has).
    note : str
        Empty for an exact match. Otherwise, with a key, what differs in the
        style of the recap's notes (``"quality 80 is not precomputed;
        showing quality 75 (nearest)"``, several joined by ``"; "``); without
        one, why there is none (``"WebP + flip has no precomputed setting with
        flip off (precomputed: flip on)"``).

    Raises
    ------
    ParamError
        ``spec`` is not a valid defence; ``attack`` is not in the table.
    """
    df = query.for_threat(df)
    query.check_attack(df, attack)
    members = [] if spec is None else (list(spec) if isinstance(spec, list) else [spec])
    if not members:
        return NO_DEFENCE, ""
    wanted = dfn.from_spec(members if len(members) > 1 else members[0])
    fam = wanted.ID  # a chain's is its members' ids joined with CHAIN_SEP
    title = family_title(fam)
    if fam not in query.defence_families(df):
        return None, f"{title} is not in the precomputed grid"
    grid = {key: dfn.from_spec(query.defence_spec(df, key)) for key in query.family_keys(df, fam)}
    for key, defence in grid.items():
        if defence == wanted:
            return key, ""
    want = _flat(wanted)
    have = {key: _flat(defence) for key, defence in grid.items()}
    switches = {name: v for name, v in want.items() if not _is_number(v)}
    left = [k for k, p in have.items() if all(p.get(n) == v for n, v in switches.items())]
    if not left:
        absent = [n for n, v in switches.items() if all(p.get(n) != v for p in have.values())]
        names = absent or list(switches)
        there = sorted({_say(n, p.get(n)) for p in have.values() for n in names})
        return None, (
            f"{title} has no precomputed setting with "
            + " and ".join(_say(n, switches[n]) for n in names)
            + f" (precomputed: {', '.join(there)})"
        )
    spreads: dict[str, float] = {}
    for name, value in want.items():
        if _is_number(value):
            nums = [float(p[name]) for p in have.values() if _is_number(p.get(name))]
            spreads[name] = (max(nums) - min(nums)) if len(set(nums)) > 1 else 1.0

    def cost(key: str) -> float:
        p = have[key]
        return sum(
            abs(float(want[n]) - float(p[n])) / s if _is_number(p.get(n)) else math.inf
            for n, s in spreads.items()
        )

    best = min(left, key=cost)  # the first of equals: table order
    notes = [
        f"{_say(n, v)} is not precomputed; showing {_say(n, have[best].get(n))} (nearest)"
        for n, v in want.items()
        if have[best].get(n) != v
    ]
    return best, "; ".join(notes)
