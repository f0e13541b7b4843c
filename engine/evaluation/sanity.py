"""Sanity checks of a results table: is each robustness number one to trust?

The basic sanity tests of Carlini et al. 2019 (*On Evaluating Adversarial
Robustness*, §5) and the gradient-masking test of ART's ``SecurityCurve``,
run on any results table (:func:`engine.evaluation.load_results`, or a
``results.csv`` read with plain pandas). :func:`check` returns a list of
:class:`Finding`, each naming its check (:data:`CHECKS`), the cells involved,
a message for researchers, a plain-language explanation for stakeholders and
the chart it concerns, so that a page or a report shows it beside that chart.

The checks, on the ``accuracy`` column (their words are in ``_sanity_text``):

``monotone``
    For one attack, defence setting and threat model, accuracy must not rise
    with ε (a larger budget contains every smaller one); else the attack
    failed (a single step overshoots or leaks the label: use PGD).
``iterative``
    PGD must be at least as strong as FGSM under the same threat model,
    defence setting and ε.
``adaptive``
    An adaptive attack must be at least as strong as the transfer attack.
``chance``
    At the largest ε (from :attr:`SanityParams.large_eps`), accuracy must fall
    to the no-skill rate (majority class); else possible gradient masking.
``majority``
    The majority-class rate of the split, from the confusion matrices (rows
    are true classes): 62.5 % on the Kermany chest X-ray test set.
``collapse``
    A cell whose predictions (nearly) all fall in the majority class scores
    that rate without skill.

A gap counts only beyond :attr:`SanityParams.tolerance` and beyond ``z``
standard errors of binomial sampling noise (from ``n_images``), so that a few
images' luck is not reported as a flaw. Nothing here draws, nor imports plotly
or streamlit; the dashboard passes its display names (``setting_name``,
``attack_name``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from engine.errors import ParamError
from engine.evaluation import _sanity_text as text
from engine.evaluation._sanity_text import pct
from engine.evaluation.keys import NO_DEFENCE
from engine.params import build, declared, param, validate
from engine.threat import ADAPTIVE, CLEAN, TRANSFER, parse, parse_adaptive

__all__ = [
    "CHART_CONFUSION",
    "CHART_EPS",
    "CHECKS",
    "ITERATIVE_VS_SINGLE_STEP",
    "Check",
    "Finding",
    "SanityParams",
    "check",
    "collapsed",
    "findings_table",
    "gain_margin",
    "no_skill_rate",
]

#: The accuracy-against-ε chart (the Recap's "Metric vs ε", the Report's accuracy part).
CHART_EPS = "accuracy_vs_eps"
#: The confusion matrices of a cell.
CHART_CONFUSION = "confusion"

#: (iterative attack, the single-step attack it must beat), by registry id.
ITERATIVE_VS_SINGLE_STEP: tuple[tuple[str, str], ...] = (("pgd", "fgsm"),)
_SINGLE_STEP = {single for _, single in ITERATIVE_VS_SINGLE_STEP}

Severity = Literal["warning", "info"]


@dataclass(frozen=True)
class Check:
    """One sanity check: its id, what it asks, the chart it concerns, where it comes from,
    and other charts its findings are worth a note beside (``also``)."""

    id: str
    title: str
    chart: str
    reference: str
    also: tuple[str, ...] = ()


_CARLINI = "Carlini et al. 2019, §5 (basic sanity tests)"
_SKILL = "the score of a model without skill"

#: Every check, by id, in the order :func:`check` reports them.
CHECKS: dict[str, Check] = {
    c.id: c
    for c in (
        Check("monotone", "Accuracy does not rise with attack strength", CHART_EPS, _CARLINI),
        Check("iterative", "Iterative attacks beat a single step", CHART_EPS, _CARLINI),
        Check(
            "adaptive",
            "The adaptive attack beats the transfer attack",
            CHART_EPS,
            "Athalye, Carlini & Wagner 2018; Carlini et al. 2019",
        ),
        Check("chance", "Very strong attacks reach chance", CHART_EPS, _CARLINI + "; ART"),
        Check("majority", "The majority-class baseline", CHART_EPS, _SKILL),
        Check(
            "collapse",
            "Accuracy without skill: one predicted class",
            CHART_CONFUSION,
            _SKILL,
            also=(CHART_EPS,),  # where the flattering number is drawn
        ),
    )
}


@declared
@dataclass(frozen=True, kw_only=True)
class SanityParams:
    """Thresholds of :func:`check`.

    Parameters
    ----------
    tolerance : float, default=0.02
        Smallest gap in accuracy (a share: 0.02 = 2 points) a check reports.
    z : float, default=2.0
        A gap must also exceed this many standard errors of the two accuracies'
        binomial sampling noise (0 turns the noise margin off).
    large_eps : float, default=16.0
        Budget in 0-255 levels from which an attack must reach the no-skill rate.
    collapse_share : float, default=0.98
        Share of the predictions in one class that makes a collapsed confusion matrix.
    """

    tolerance: float = param(0.02, 0.0, 0.5, 0.005, "Smallest accuracy gap reported (share)")
    z: float = param(2.0, 0.0, 5.0, 0.1, "Standard errors of sampling noise a gap must exceed")
    large_eps: float = param(16.0, 1.0, 255.0, 1.0, "Budget (0-255) that must reach chance")
    collapse_share: float = param(0.98, 0.5, 1.0, 0.01, "Share of one class that is a collapse")

    def __post_init__(self) -> None:
        validate(self, "Sanity checks")


@dataclass(frozen=True)
class Finding:
    """One thing a sanity check found in a results table.

    Attributes
    ----------
    check : str
        A key of :data:`CHECKS`.
    severity : {"warning", "info"}
        ``"warning"``: a number not to trust as it stands; ``"info"``: a baseline or
        an effect the threat model explains.
    attack : str
        The attack the finding is about (``""``: every attack).
    defence_key : str
        The defence setting (``""``: the whole table).
    threat_model : str
        The stored threat-model label of the cells (:mod:`engine.threat`).
    eps : tuple of float
        The budgets involved (0-255 levels).
    message : str
        For researchers: the cells, the exact numbers, the likely cause and the remedy.
    explanation : str
        For stakeholders: the same in plain language, with the exact numbers.
    other_attack : str, default=""
        The attack compared with, for the ``iterative`` check.
    chart : str, default=""
        The chart it concerns (:data:`CHART_EPS`, :data:`CHART_CONFUSION`); the
        check's (:attr:`Check.chart`) when not given.
    """

    check: str
    severity: Severity
    attack: str
    defence_key: str
    threat_model: str
    eps: tuple[float, ...]
    message: str
    explanation: str
    other_attack: str = ""
    chart: str = ""

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ParamError(f"Unknown sanity check {self.check!r}; known: {', '.join(CHECKS)}.")
        if not self.chart:
            object.__setattr__(self, "chart", CHECKS[self.check].chart)

    def concerns(
        self,
        chart: str,
        *,
        attack: str | None = None,
        defence_keys: Iterable[str] | None = None,
        eps: float | None = None,
    ) -> bool:
        """Whether the finding belongs beside ``chart`` showing ``attack``, ``defence_keys``
        and (for a chart of one cell) the budget ``eps``; ``None`` matches anything.

        Findings about the whole table (or every attack) concern every attack and setting.
        """
        if chart != self.chart and chart not in CHECKS[self.check].also:
            return False
        if eps is not None and self.eps and float(eps) not in self.eps:
            return False
        if attack is not None and self.attack and attack not in (self.attack, self.other_attack):
            return False
        return defence_keys is None or not self.defence_key or self.defence_key in defence_keys


def findings_table(findings: Sequence[Finding]) -> pd.DataFrame:
    """The findings as a table: check, severity, attack, setting, threat model, ε, message."""
    columns = ["check", "severity", "attack", "defence_key", "threat_model", "eps", "message"]
    rows = [[CHECKS[f.check].title, f.severity, f.attack, f.defence_key] for f in findings]
    for row, f in zip(rows, findings, strict=True):
        row += [f.threat_model, text.eps_list(f.eps), f.message]
    return pd.DataFrame(rows, columns=columns)


def _matrix(value: object) -> np.ndarray | None:
    """A square confusion matrix from a decoded or JSON cell (``None`` when absent)."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    m = np.asarray(value, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2 or m.sum() <= 0:
        return None
    return m


class _Checker:
    """The table, normalised once, and the checks that read it."""

    def __init__(
        self,
        df: pd.DataFrame,
        params: SanityParams,
        classes: Sequence[str] | None,
        setting_name: Callable[[str], str],
        attack_name: Callable[[str], str],
    ) -> None:
        missing = {"attack", "eps", "defence_key", "threat_model", "accuracy"} - set(df.columns)
        if missing:
            raise ParamError(
                f"Sanity checks need the column(s) {', '.join(sorted(missing))} of results.csv."
            )
        src = df.loc[df["accuracy"].notna()]
        t = pd.DataFrame(
            {
                "attack": src["attack"].astype(str),
                "eps": src["eps"].astype(float),
                "defence_key": src["defence_key"].astype(str),
                "threat_model": src["threat_model"].astype(str),
                "accuracy": src["accuracy"].astype(float),
                "n": src["n_images"].astype(float) if "n_images" in src else math.nan,
            }
        ).reset_index(drop=True)
        t["threat"] = [parse(label).id for label in t["threat_model"]]
        cells = src["confusion"] if "confusion" in src else [None] * len(src)
        t["matrix"] = pd.Series([_matrix(v) for v in cells], index=t.index, dtype=object)
        # Through no defence the adaptive attack is the transfer one: an adaptive sweep's
        # undefended rows (on its subset of images) repeat what the transfer rows say.
        plain = t[(t["defence_key"] == NO_DEFENCE) & (t["threat"] == TRANSFER.id)]
        seen = set(zip(plain["attack"], plain["eps"], strict=True))
        again = (t["defence_key"] == NO_DEFENCE) & (t["threat"] == ADAPTIVE.id)
        again &= np.array(
            [(a, e) in seen for a, e in zip(t["attack"], t["eps"], strict=True)], bool
        )
        t = t[~again].reset_index(drop=True)
        self.split = f"{src['split'].iloc[0]} " if "split" in src and len(src) else ""
        self.t, self.p, self.classes = t, params, list(classes or [])
        self.setting, self.attack = setting_name, attack_name
        self.attacked = t[(t["threat"] != CLEAN.id) & (t["eps"] > 0)]
        self.curves = list(self._curves())

    def margin(self, p: float, n: float, q: float, m: float = math.inf) -> float:
        """The gap from which accuracies ``p`` (of ``n`` images) and ``q`` (of ``m``) differ."""
        return self.margin_of(self.p, p, n, q, m)

    @staticmethod
    def margin_of(params: SanityParams, p: float, n: float, q: float, m: float) -> float:
        var = sum(a * (1 - a) / k for a, k in ((p, n), (q, m)) if k > 0 and math.isfinite(k))
        return max(params.tolerance, params.z * math.sqrt(var))

    def class_name(self, i: int) -> str:
        return self.classes[i] if i < len(self.classes) else f"class {i}"

    def _curves(self) -> Iterable[tuple[tuple[str, str, str], pd.DataFrame]]:
        """``((attack, defence_key, label), rows by ε)`` per attacked curve, clean point first."""
        clean = self.t[self.t["threat"] == CLEAN.id].drop_duplicates(["attack", "defence_key"])
        pairs = zip(clean["attack"], clean["defence_key"], strict=True)
        start = dict(zip(pairs, clean.index, strict=True))
        for (attack, key, label), rows in self.attacked.groupby(
            ["attack", "defence_key", "threat_model"], sort=False
        ):
            first = start.get((attack, key))
            index = ([] if first is None else [first]) + list(rows.sort_values("eps").index)
            yield (str(attack), str(key), str(label)), self.t.loc[index].drop_duplicates("eps")

    @staticmethod
    def no_skill(m: object) -> tuple[float, int, int] | None:
        """``(majority-class rate, its class, number of classes)`` of a confusion matrix."""
        if not isinstance(m, np.ndarray):
            return None
        true = m.sum(axis=1)
        return float(true.max() / true.sum()), int(true.argmax()), len(true)

    def baseline(self) -> np.ndarray | None:
        """The matrix of the table's no-skill rate: the clean undefended row's, else the first."""
        rows = self.t[np.array([isinstance(m, np.ndarray) for m in self.t["matrix"]], bool)]
        first = rows[(rows["threat"] == CLEAN.id) & (rows["defence_key"] == NO_DEFENCE)]
        pick = first if len(first) else rows
        return pick["matrix"].iloc[0] if len(pick) else None

    # ------------------------------------------------------------------ the checks
    def monotone(self) -> Iterable[Finding]:
        for (attack, key, label), curve in self.curves:
            acc, eps, n = (curve[c].to_numpy(dtype=float) for c in ("accuracy", "eps", "n"))
            low = np.minimum.accumulate(acc)
            j = int(np.argmax(acc - low))  # the point furthest above an earlier minimum
            i = int(np.flatnonzero(acc[: j + 1] == low[j])[0])
            if j == 0 or acc[j] - acc[i] <= self.margin(acc[i], n[i], acc[j], n[j]):
                continue
            words = text.monotone_text(
                self.attack(attack),
                self.setting(key),
                parse(label).title.lower(),
                (eps[i], acc[i]),
                (eps[j], acc[j]),
                attack in _SINGLE_STEP,
            )
            pair = (float(eps[i]), float(eps[j]))
            yield Finding("monotone", "warning", attack, key, label, pair, *words)

    def iterative(self) -> Iterable[Finding]:
        t = self.attacked
        for strong, single in ITERATIVE_VS_SINGLE_STEP:
            pairs = pd.merge(
                t[t["attack"] == strong],
                t[t["attack"] == single],
                on=["threat_model", "defence_key", "eps"],
                suffixes=("", "_1"),
            )
            yield from self._weaker(pairs, strong, single)

    def adaptive(self) -> Iterable[Finding]:
        t = self.attacked
        pairs = pd.merge(
            t[t["threat"] == ADAPTIVE.id],
            t[t["threat"] == TRANSFER.id],
            on=["attack", "defence_key", "eps"],
            suffixes=("", "_1"),
        )
        for attack in dict.fromkeys(pairs["attack"]):
            yield from self._weaker(pairs[pairs["attack"] == attack], attack, "")

    def _weaker(self, pairs: pd.DataFrame, strong: str, single: str) -> Iterable[Finding]:
        """Cells where the attack that must be stronger (``accuracy``) is weaker (``_1``):
        ``single`` names the single-step attack, ``""`` for adaptive against transfer."""
        cols = [pairs[c].to_numpy(dtype=float) for c in ("accuracy", "n", "accuracy_1", "n_1")]
        margin = np.array([self.margin(*values) for values in zip(*cols, strict=True)])
        worse = pairs[(cols[0] - cols[2]) > margin] if len(pairs) else pairs
        for (label, key), rows in worse.groupby(["threat_model", "defence_key"], sort=False):
            label, key = str(label), str(key)
            w = rows.iloc[int(np.argmax((rows["accuracy"] - rows["accuracy_1"]).to_numpy()))]
            a, s = self.attack(strong), self.setting(key)
            eps = tuple(float(x) for x in sorted(rows["eps"]))
            worst = (text.eps_list([w["eps"]]), pct(w["accuracy"]), pct(w["accuracy_1"]))
            cells = f"at ε = {text.eps_list(eps)} (most at ε = {worst[0]}: {worst[1]} correct "
            cells += f"against {worst[2]})"
            expected = bool(single) and parse(label) is TRANSFER and key != NO_DEFENCE
            if single:
                tm = parse(label).title.lower()
                words = text.iterative_text(a, self.attack(single), s, tm, cells, worst, expected)
            else:
                attacker = parse_adaptive(label)
                backward = attacker.backward if attacker and attacker.backward else "BPDA"
                words = text.adaptive_text(a, s, backward, cells, worst)
            yield Finding(
                "iterative" if single else "adaptive",
                "info" if expected else "warning",
                strong,
                key,
                label,
                eps,
                *words,
                other_attack=single,
            )

    def chance(self) -> Iterable[Finding]:
        if self.attacked.empty:
            return
        top = float(self.attacked["eps"].max())
        if top < self.p.large_eps:
            words = text.no_large_eps_text(top, self.p.large_eps)
            yield Finding("chance", "info", "", "", "", (top,), *words)
            return
        fallback = self.no_skill(self.baseline())
        for (attack, key, label), curve in self.curves:
            last = curve.iloc[-1]
            base = self.no_skill(last["matrix"]) or fallback
            e, acc = float(last["eps"]), float(last["accuracy"])
            if e < self.p.large_eps or base is None:
                continue
            if acc <= base[0] + self.margin(acc, float(last["n"]), base[0]):
                continue
            why = ["possible gradient masking"]
            if parse(label) is TRANSFER and key != NO_DEFENCE:
                why.append(
                    "or the transfer gap: the attack never saw the defence; run the adaptive attack"
                )
            if attack in _SINGLE_STEP:
                why.append("a single step proves little: check with PGD")
            a, s, tm = self.attack(attack), self.setting(key), parse(label).title.lower()
            words = text.chance_text(a, s, tm, e, acc, (base[0], base[2]), why)
            yield Finding("chance", "warning", attack, key, label, (e,), *words)

    def majority(self) -> Iterable[Finding]:
        m = self.baseline()
        base = self.no_skill(m)
        if m is None or base is None:
            return
        _, cls, k = base
        count, n = int(m.sum(axis=1)[cls]), int(m.sum())
        words = text.majority_text(f"{self.split}images", self.class_name(cls), count, n, k)
        yield Finding("majority", "info", "", "", "", (), *words)

    def collapse(self) -> Iterable[Finding]:
        hits: dict[int, tuple[float, float, int]] = {}
        for i, m in enumerate(self.t["matrix"]):
            base = self.no_skill(m)
            if base is None:
                continue
            share = _said_majority(m)
            if share >= self.p.collapse_share:
                hits[i] = (share, base[0], base[1])
        if not hits:
            return
        t = self.t.iloc[list(hits)]
        t = t.assign(
            **{c: [h[j] for h in hits.values()] for j, c in enumerate(("share", "rate", "cls"))}
        )
        t["group"] = np.where(t["threat"] == CLEAN.id, "", t["attack"])
        t = t.drop_duplicates(["group", "defence_key", "threat_model", "eps"])
        for (attack, key, label), rows in t.groupby(
            ["group", "defence_key", "threat_model"], sort=False
        ):
            attack, key, label = str(attack), str(key), str(label)
            w = rows.iloc[int(np.argmax(rows["share"].to_numpy()))]
            eps = tuple(float(e) for e in sorted(rows["eps"]))
            words = text.collapse_text(
                self.setting(key),
                self.class_name(int(w["cls"])),
                (self.attack(attack), parse(label).title.lower(), eps) if attack else None,
                (float(w["share"]), float(w["accuracy"]), float(w["rate"])),
                key == NO_DEFENCE,
            )
            yield Finding("collapse", "warning", attack, key, label, eps, *words)


def gain_margin(
    p: float, n: float, q: float, m: float = math.inf, params: SanityParams | None = None
) -> float:
    """The smallest gap between accuracies ``p`` (of ``n`` images) and ``q`` (of ``m``) to report.

    The larger of ``params.tolerance`` and ``params.z`` standard errors of the two
    accuracies' binomial sampling noise (the checks' own margin); declared defaults
    when ``params`` is omitted.
    """
    return _Checker.margin_of(params or SanityParams(), p, n, q, m)


def _said_majority(m: np.ndarray) -> float:
    """Share of a confusion matrix's predictions on its majority true class when that is
    the class predicted most (0 otherwise)."""
    said = m.sum(axis=0) / m.sum()
    majority = int(m.sum(axis=1).argmax())
    return float(said[majority]) if int(said.argmax()) == majority else 0.0


def collapsed(confusion: object, params: SanityParams | None = None) -> bool:
    """Whether a confusion matrix puts ``params.collapse_share`` of its predictions on the
    majority true class: an accuracy near the majority-class rate earned without skill
    (the ``collapse`` check's test, for one matrix).

    ``confusion`` is a decoded or JSON ``confusion`` cell; ``False`` when absent.
    """
    m = _matrix(confusion)
    return m is not None and _said_majority(m) >= (params or SanityParams()).collapse_share


def no_skill_rate(confusion: object) -> float | None:
    """The majority-class rate of a confusion matrix's true classes: the accuracy of a
    model that gives every image the most common answer (``None`` when absent)."""
    found = _Checker.no_skill(_matrix(confusion))
    return None if found is None else found[0]


def check(
    df: pd.DataFrame,
    params: SanityParams | dict[str, float] | None = None,
    *,
    classes: Sequence[str] | None = None,
    setting_name: Callable[[str], str] = text.setting_name,
    attack_name: Callable[[str], str] = text.attack_name,
) -> list[Finding]:
    """Run every check of :data:`CHECKS` on a results table.

    Parameters
    ----------
    df : pandas.DataFrame
        A results table: at least ``attack``, ``eps``, ``defence_key``,
        ``threat_model`` and ``accuracy``; ``n_images`` (for the noise margin) and
        ``confusion`` (for the majority-class checks) where present. Not changed.
    params : SanityParams or dict, optional
        Thresholds (declared defaults when omitted).
    classes : sequence of str, optional
        Class names, in the confusion matrices' order (``"class 1"`` otherwise).
    setting_name, attack_name : callable, optional
        Display names of a defence key and an attack id in the texts.

    Returns
    -------
    list of Finding
        In the order of :data:`CHECKS`, then of the table's rows; empty for a table
        that passes.

    Raises
    ------
    ParamError
        When a column is missing, a threat-model label is unknown or a threshold is
        out of range.
    """
    p = params if isinstance(params, SanityParams) else build(SanityParams, params)
    checker = _Checker(df, p, classes, setting_name, attack_name)
    runs: dict[str, Callable[[], Iterable[Finding]]] = {
        "monotone": checker.monotone,
        "iterative": checker.iterative,
        "adaptive": checker.adaptive,
        "chance": checker.chance,
        "majority": checker.majority,
        "collapse": checker.collapse,
    }
    return [f for check_id in CHECKS for f in runs[check_id]()]
