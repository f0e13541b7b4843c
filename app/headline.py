"""The headline numbers, what each defence costs and recovers, under both threat models.

What Home and the Report lead with (:func:`headline`, :func:`headline_sentences`),
the Recap's trade-off table (:func:`tradeoff_table`) and the per-setting
comparison of the two threat models (:func:`threat_comparison`), computed
from a results table alone (no model, no OpenCV). A table may hold transfer
rows (attack crafted on the undefended model) and adaptive rows (crafted
through the defence; :func:`engine.evaluation.load_results` merges a
results folder's adaptive sweep): the best defence is chosen by the adaptive
number where one exists, and its transfer number is reported beside it. A
gain inside the sampling-noise margin, or one earned by a model collapsed onto
one class, does not "hold" (:func:`engine.evaluation.sanity.gain_margin`,
:func:`engine.evaluation.sanity.collapsed`). :mod:`app.views` re-exports
everything here.

Example
-------
On the shipped synthetic sweep (it has an adaptive companion)::

    from engine.evaluation import load_results
    table, manifest = load_results("assets/results/synthetic__tiny")
    h = headline(table, attack="pgd", eps=8)
    h["best_by"], h["adaptive"]["holds"]   # ('adaptive', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import pandas as pd

from app.labels import setting_label
from engine.attacks import DEFAULT_ATTACK
from engine.errors import ParamError
from engine.evaluation import query, sanity
from engine.evaluation.keys import NO_DEFENCE, parse_defence_key
from engine.threat import ADAPTIVE, TRANSFER, is_adaptive

__all__ = [
    "AdaptiveHeadline",
    "Headline",
    "ThreatModels",
    "headline",
    "headline_sentences",
    "threat_comparison",
    "tradeoff_table",
]


def _acc(row: pd.Series | None) -> float:
    return math.nan if row is None else float(row["accuracy"])


def _undefended_eps(
    df: pd.DataFrame, attack: str, eps: float, threat: str = TRANSFER.id
) -> tuple[float, str]:
    """The budget used for ``eps`` (and its note), checking the table has "none" rows."""
    query.check_attack(df, attack)
    if NO_DEFENCE not in set(df["defence_key"]):
        raise ParamError("This table has no 'none' (no defence) setting to compare with.")
    return query.resolve_eps(df, attack, eps, NO_DEFENCE, threat=threat)


class ThreatModels(TypedDict):
    """Threat-model labels of the clean and the attacked undefended rows."""

    clean: str | None
    attacked: str


class AdaptiveHeadline(TypedDict):
    """The adaptive half of :func:`headline`: the best defence against an attacker who knows it."""

    best_key: str
    best_label: str
    accuracy: float
    undefended_accuracy: float
    recovered: float
    transfer_accuracy: float
    transfer_recovered: float
    n_images: int
    threat_model: str
    collapsed: bool
    no_skill_rate: float
    at_chance: bool
    holds: bool
    transfer_best_accuracy: float
    skill: bool
    highest_label: str
    highest_accuracy: float
    highest_collapsed: bool


class Headline(TypedDict):
    """What :func:`headline` returns (keys described there)."""

    attack: str
    eps: float
    requested_eps: float
    note: str
    clean_accuracy: float
    attacked_accuracy: float
    drop: float
    best_key: str | None
    best_label: str | None
    best_accuracy: float
    best_clean_accuracy: float
    recovered: float
    best_clean_cost: float
    n_images: int
    threat_model: ThreatModels
    best_by: str
    transfer_best_key: str | None
    transfer_best_label: str | None
    transfer_best_accuracy: float
    adaptive: AdaptiveHeadline | None


def _best(table: pd.DataFrame, column: str) -> pd.Series | None:
    """Highest ``column``; ties to the smaller clean cost (NaN last), then order."""
    if table.empty:
        return None
    ranked = table.assign(_cost=table["clean_cost"].fillna(math.inf))
    return ranked.sort_values([column, "_cost"], ascending=[False, True], kind="stable").iloc[0]


def _first(table: pd.DataFrame, key: str | None, column: str) -> float:
    """``column`` of the first row of setting ``key`` (NaN when there is none)."""
    match = table.loc[table["defence_key"] == key, column]
    return math.nan if key is None or match.empty else float(match.iloc[0])


def _adaptive_headline(
    df: pd.DataFrame, attack: str, used: float, transfer: pd.DataFrame, transfer_best: str | None
) -> AdaptiveHeadline | None:
    """The adaptive numbers at ``used``, or ``None`` when the table has no adaptive rows there."""
    if used == 0 or ADAPTIVE.id not in query.threats(df):
        return None
    # At ε > 0 its rows are exactly the settings with an adaptive row ("none" is left out).
    table = tradeoff_table(df, attack=attack, eps=used, threat=ADAPTIVE.id)
    rows = query.for_threat(df, ADAPTIVE.id)
    rows = rows[(rows["attack"] == attack) & (rows["eps"] == used)]
    confusion = dict(zip(rows["defence_key"], rows["confusion"], strict=True))
    # No skill: one answer for nearly every image, or no better than the commonest answer.
    clean = query.find_row(df, attack, 0.0, NO_DEFENCE)
    rate = sanity.no_skill_rate(None if clean is None else clean.get("confusion"))
    flat, chance = [], []
    for _, r in table.iterrows():
        flat.append(sanity.collapsed(confusion.get(r["defence_key"])))
        acc_r, n_r = float(r["attacked_accuracy"]), float(r["n_images"])
        chance.append(
            rate is not None and acc_r - rate <= sanity.gain_margin(acc_r, n_r, rate, math.inf)
        )
    skill = [not (f or c) for f, c in zip(flat, chance, strict=True)]
    highest = _best(table, "attacked_accuracy")
    top = _best(table.loc[skill], "attacked_accuracy") if any(skill) else highest
    if top is None or highest is None:
        return None
    keys = list(table["defence_key"])
    if not any(skill) and transfer_best in keys:  # show what becomes of the transfer best
        top = table.iloc[keys.index(transfer_best)]
    key, h = str(top["defence_key"]), keys.index(str(highest["defence_key"]))
    i = keys.index(key)
    t_acc = _first(transfer, key, "attacked_accuracy")
    t_rec = _first(transfer, key, "recovered")
    acc, base = float(top["attacked_accuracy"]), float(top["undefended_attacked_accuracy"])
    n = int(top["n_images"])
    is_collapsed, at_chance = flat[i], chance[i]
    return {
        "best_key": key,
        "best_label": setting_label(key),
        "accuracy": acc,
        "undefended_accuracy": base,
        "recovered": acc - base,
        "transfer_accuracy": t_acc,
        "transfer_recovered": t_rec,
        "n_images": n,
        "threat_model": str(top["threat_model"]),
        "collapsed": is_collapsed,
        "no_skill_rate": math.nan if rate is None else rate,
        "at_chance": at_chance,
        "holds": not (is_collapsed or at_chance)
        and acc - base > sanity.gain_margin(acc, n, base, n),
        "transfer_best_accuracy": _first(table, transfer_best, "attacked_accuracy"),
        "skill": any(skill),
        "highest_label": setting_label(str(highest["defence_key"])),
        "highest_accuracy": float(highest["attacked_accuracy"]),
        "highest_collapsed": flat[h],
    }


def headline(df: pd.DataFrame, *, attack: str = DEFAULT_ATTACK, eps: float) -> Headline:
    """The numbers of the overview's headline for one attack and budget.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table.
    attack : str, default=DEFAULT_ATTACK ("fgsm")
        Attack id.
    eps : float
        Budget, 0-255 units; mapped to the nearest precomputed one (``note``).

    Returns
    -------
    Headline
        A dict: ``attack``, ``eps`` (the budget used), ``requested_eps``, ``note``;
        ``clean_accuracy`` (eps 0, no defence), ``attacked_accuracy`` (at
        ``eps``, no defence), ``drop`` (clean - attacked); ``best_key``,
        ``best_label``, ``best_accuracy`` (the best defence setting at ``eps``
        and its accuracy against the transfer attack; the best is the setting
        with the highest accuracy against the *adaptive* attack where the table
        has adaptive rows at ``eps``, else against the transfer attack; ties
        to the smaller clean cost then table order; ``None``/NaN when the
        table has no defence),
        ``best_clean_accuracy`` (that setting on clean images), ``recovered``
        (best - attacked) and ``best_clean_cost`` (clean undefended - clean
        with that setting); ``n_images``; ``threat_model``, a dict with the
        ``"clean"`` and ``"attacked"`` labels of the rows used; ``best_by``
        (``"adaptive"`` or ``"transfer"``: which threat model chose the best);
        ``transfer_best_key``, ``transfer_best_label``, ``transfer_best_accuracy``
        (the best against the transfer attack alone); ``adaptive``
        (:class:`AdaptiveHeadline`, ``None`` without adaptive rows at ``eps``):
        the best setting against the adaptive attack (``best_key``,
        ``best_label``), its ``accuracy`` and the adaptive attack's through no
        defence on the same images (``undefended_accuracy``), ``recovered``,
        the same setting's ``transfer_accuracy`` and ``transfer_recovered``,
        ``n_images``, ``threat_model`` (the stored label), ``collapsed`` (its
        confusion matrix puts nearly every image in the majority class:
        :func:`engine.evaluation.sanity.collapsed`), ``no_skill_rate`` (the
        majority-class rate of the clean undefended row, NaN without a confusion
        matrix) and ``at_chance`` (its accuracy does not exceed that rate by the
        noise margin); ``skill`` (some setting is neither collapsed nor at
        chance): without it the "best" is the transfer attack's best setting
        (what becomes of it is the news), or the highest scorer when that has
        no adaptive row, and ``highest_label``, ``highest_accuracy`` and
        ``highest_collapsed`` name the highest scorer; ``holds`` (the gain
        exceeds the sampling-noise margin of
        :func:`engine.evaluation.sanity.gain_margin` and is not a collapse)
        and ``transfer_best_accuracy`` (the adaptive accuracy of the transfer
        attack's best setting, NaN where it has no adaptive row).

    Raises
    ------
    ParamError
        Unknown attack; no undefended row; ``eps`` outside [0, 255].
    """
    full = df
    df = query.for_threat(df)
    used, note = _undefended_eps(df, attack, eps)
    clean = query.find_row(df, attack, 0.0, NO_DEFENCE)
    attacked = query.find_row(df, attack, used, NO_DEFENCE)
    assert attacked is not None
    clean_acc, attacked_acc = _acc(clean), _acc(attacked)

    top = _best(table := tradeoff_table(df, attack=attack, eps=used), "attacked_accuracy")
    transfer_key = None if top is None else str(top["defence_key"])
    adaptive = _adaptive_headline(full, attack, used, table, transfer_key)
    best_key = adaptive["best_key"] if adaptive is not None else transfer_key
    best_acc = best_clean = math.nan
    match = table[table["defence_key"] == best_key]
    if best_key is not None and len(match):
        row = match.iloc[0]
        best_acc, best_clean = float(row["attacked_accuracy"]), float(row["clean_accuracy"])
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
        "best_by": TRANSFER.id if adaptive is None else ADAPTIVE.id,
        "transfer_best_key": transfer_key,
        "transfer_best_label": None if transfer_key is None else setting_label(transfer_key),
        "transfer_best_accuracy": math.nan if top is None else float(top["attacked_accuracy"]),
        "adaptive": adaptive,
    }


def _points(x: float) -> str:
    return f"{100 * x:.1f} points"


def headline_sentences(h: Headline, attack_title: str) -> list[str]:
    """The headline in words (Markdown bold), for Home and the Report: what the best
    defence wins back against an attacker who does not know it and one who does.

    Empty when the table has no defence. Without adaptive rows the last sentence says
    that the number stands against an unaware attacker only.
    """
    if h["best_key"] is None:
        return []
    name, a = h["best_label"], h["adaptive"]
    if a is None:
        return [
            f"**{name}** wins back **{_points(h['recovered'])}** against an attacker who does "
            "not know the defence. No attack crafted through the defence has been run for "
            "this model: one who knows it usually does better, so this is an upper bound."
        ]
    if not a["skill"]:
        # No skill left anywhere: no sentence may open with what one "wins back".
        why = (
            "comes from the model giving nearly every image the same answer, the most common class"
            if a["highest_collapsed"]
            else f"is no better than always giving the most common answer "
            f"({a['no_skill_rate']:.1%} of the test images)"
        )
        out = [
            f"Against an attacker who knows the defence, **no defence keeps any skill** under "
            f"{attack_title} at ε = {h['eps']:g}: the highest score, {a['highest_accuracy']:.1%} "
            f"for **{a['highest_label']}** on the {a['n_images']} images of the adaptive "
            f"sweep, {why}."
        ]
    else:
        gain = a["recovered"]
        against = (
            f"**{_points(gain)}** against one who does"
            if gain >= 0
            else f"and **loses {_points(-gain)}** against one who does"
        )
        out = [
            f"**{name}** wins back **{_points(h['recovered'])}** against an attacker who does "
            f"not know the defence; {against} ({a['accuracy']:.1%} with it, "
            f"{a['undefended_accuracy']:.1%} without, on the {a['n_images']} images of the "
            "adaptive sweep)."
            if math.isfinite(h["recovered"])
            else f"**{name}** wins back {against.removeprefix('and ')} ({a['accuracy']:.1%} "
            f"with it, {a['undefended_accuracy']:.1%} without, on {a['n_images']} images)."
        ]
        if not a["holds"]:
            out.append(
                f"Against an attacker who knows the defence, no defence keeps a gain above the "
                f"sampling noise under {attack_title} at ε = {h['eps']:g}."
            )
    t_key = h["transfer_best_key"]
    shown = t_key != a["best_key"] or not a["skill"]
    if t_key is not None and shown and math.isfinite(a["transfer_best_accuracy"]):
        out.append(
            f"The best against the unaware attacker, **{h['transfer_best_label']}** "
            f"({h['transfer_best_accuracy']:.1%}), falls to **{a['transfer_best_accuracy']:.1%}** "
            "when the attacker knows it."
        )
    return out


def tradeoff_table(
    df: pd.DataFrame, *, attack: str, eps: float, threat: str = TRANSFER.id
) -> pd.DataFrame:
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
    threat : str, default="transfer"
        Threat-model id of the attacked rows (:func:`engine.evaluation.query.for_threat`);
        the clean rows are the same for every threat model. For ``"adaptive"`` the
        undefended attacked accuracy is the adaptive sweep's own "none" row where it
        has one (the same images as its adaptive rows), and at ``eps > 0`` the rows
        are exactly the settings that have an adaptive row.

    Returns
    -------
    pandas.DataFrame
        One row per defence setting other than "none" that has a row at
        ``eps`` (under ``threat``), sorted by ``recovered`` (largest first). Columns
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
        Unknown attack, no undefended row, ``eps`` outside [0, 255], unknown threat.
    """
    used, note = _undefended_eps(df, attack, eps, threat)
    df = query.for_threat(df, threat)  # this threat model's rows: found without re-selecting
    base_clean = _acc(query.find_row(df, attack, 0.0, NO_DEFENCE, threat=threat))
    base_attacked = _acc(query.find_row(df, attack, used, NO_DEFENCE, threat=threat))
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


def threat_comparison(df: pd.DataFrame, *, attack: str, eps: Sequence[float]) -> pd.DataFrame:
    """Accuracy of every setting with adaptive rows under both threat models, at each budget.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table with adaptive rows (:func:`engine.evaluation.load_results`
        merges a companion adaptive sweep).
    attack : str
        Attack id.
    eps : sequence of float
        Precomputed budgets (each must have rows of both threat models).

    Returns
    -------
    pandas.DataFrame
        One row per (setting, budget): ``defence_key``, ``label``, ``eps``,
        ``transfer`` and ``adaptive`` accuracy, ``drop`` (transfer - adaptive),
        ``n_transfer`` and ``n_adaptive`` (images behind each), ``adaptive_label``
        (the stored threat-model label). Settings in table order, "none" first;
        empty when the table has no adaptive rows of ``attack``.

    Raises
    ------
    ParamError
        Unknown attack; a budget that is not precomputed.
    """
    query.check_attack(df, attack)
    rows = []
    for e in eps:
        e = float(e)
        if e not in query.eps_values(df, attack):
            raise ParamError(f"ε {e:g} is not precomputed for {attack}.")
        for key in query.defence_keys(df):
            a = query.find_row(df, attack, e, key, threat=ADAPTIVE.id)
            t = query.find_row(df, attack, e, key)
            if a is None or t is None or not is_adaptive(str(a["threat_model"])):
                continue
            rows.append(
                {
                    "defence_key": key,
                    "label": setting_label(key),
                    "eps": e,
                    "transfer": float(t["accuracy"]),
                    "adaptive": float(a["accuracy"]),
                    "drop": float(t["accuracy"]) - float(a["accuracy"]),
                    "n_transfer": int(t["n_images"]),
                    "n_adaptive": int(a["n_images"]),
                    "adaptive_label": str(a["threat_model"]),
                }
            )
    columns = ["defence_key", "label", "eps", "transfer", "adaptive", "drop"]
    columns += ["n_transfer", "n_adaptive", "adaptive_label"]
    return pd.DataFrame(rows, columns=columns)
