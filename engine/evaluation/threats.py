"""The threat-model dimension of a sweep: adaptive cells in a spec, and threat models in a table.

A sweep's transfer cells attack each budget once, on the undefended model, and
pass the same adversarial images through every defence setting. An adaptive
attacker knows the defence: its images are crafted *through* each setting
(:func:`engine.attacks.run_attack` with ``defence=``: exact gradients where
the defence is differentiable, BPDA where it is not, EOT over the draws of a
randomised one), so every ``(attack, eps, defence setting)`` is an attack of
its own and nothing is shared across defences. A spec asks for them with
``[[adaptive]]`` entries, each naming an attack of its ``[[attacks]]``::

    [[adaptive]]
    attack = "pgd"              # an [[attacks]] id: its parameters, step rule and seed
    eps = [1, 2, 4, 8, 16, 32]  # optional: some of that attack's budgets (default: all > 0)
    defences = ["jpeg:quality=50", "resize_pad"]  # optional: setting keys (default: all)
    eot_samples = 8             # engine.attacks.adaptive.AdaptiveParams, declared there
    restarts = 1
    eot_seed = 0                # optional: the spec's seed unless set
    params = { steps = 40, early_stop = true }  # optional: the attack's parameters for
                                # these cells, over its [[attacks]] table (step rule kept)
    stand_in = "gaussian"       # optional: engine.attacks.adaptive.StandIn, declared there
    stand_in_sigma = 1.0        # (the BPDA members' backward pass; default the identity)

The transfer cells of the same attack, budgets and settings are the entry's
comparison: they are in the sweep already (every ``[[attacks]]`` budget runs
through every setting). Through no defence the adaptive attack *is* the
transfer attack (the same random start, no defence to see), so the ``none``
setting is not attacked again unless ``restarts > 1`` or ``params`` makes the
adaptive attack another one; :func:`for_threat` reads its transfer rows as
its adaptive ones.

``params`` gives the adaptive cells an attack of their own: more steps, or
PGD's ``early_stop`` (each image's first misclassified iterate, the steps
spent on the images still correct), which suits an attack through a defence
and not a transfer attack (an image that only just fools the undefended
model transfers badly).

Each adaptive cell's attacker draws come from a seed derived from the cell
(:func:`cell_seed`: the entry's ``eot_seed``, the attack, the budget, the
setting's key), recorded in the row's ``attack_params``, so rerunning one
cell reproduces it; PGD's random start is the attack's own seed, the same as
the transfer cell's. The row's ``threat_model`` is
:func:`engine.threat.adaptive_label` of the setting's backward pass and,
for a randomised setting, its EOT samples (e.g. ``"adaptive: crafted through
the defence (bpda-identity)"``).

A results table names each row's threat model in ``threat_model``;
:func:`threat_ids` reads them as ids of :data:`engine.threat.THREAT_MODELS`
(a label this engine does not know, or a table without the column, counts
as transfer: tables made before adaptive cells existed are all-transfer),
:func:`threats` lists the attacked ones a table holds, and :func:`for_threat`
keeps the rows of one threat model plus the clean rows, one row per
``(attack, eps, defence setting)``: what every query and chart reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.attacks import REGISTRY as ATTACKS
from engine.attacks.adaptive import AdaptiveParams, StandIn, check_restarts, threat_label
from engine.errors import ParamError
from engine.evaluation.keys import NO_DEFENCE, format_value
from engine.params import SEED_MAX, as_dict, build, params_of
from engine.threat import ADAPTIVE, CLEAN, THREAT_MODELS, TRANSFER, parse

if TYPE_CHECKING:
    from engine.defences import Defence
    from engine.evaluation.spec import AttackSetting, DefenceSetting

__all__ = [
    "AdaptiveSetting",
    "cell_seed",
    "check_threat",
    "for_threat",
    "parse_adaptive",
    "threat_ids",
    "threat_of",
    "threats",
]

_STAND_IN_KEYS = tuple(p.name for p in params_of(StandIn))
_ENTRY_KEYS = (
    "attack",
    "eps",
    "defences",
    "params",
    *(p.name for p in params_of(AdaptiveParams)),
    *_STAND_IN_KEYS,
)


def cell_seed(base: int, attack_id: str, eps: float, defence_key: str) -> int:
    """The attacker's seed of one adaptive cell, derived from the entry's seed and the cell.

    Stable across runs, machines and Python versions (SHA-256 of the cell's
    names), so a rerun of the cell draws what the sweep drew.
    """
    text = f"{base}|{attack_id}|{format_value(eps)}|{defence_key}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (SEED_MAX + 1)


@dataclass(frozen=True)
class AdaptiveSetting:
    """One ``[[adaptive]]`` entry: an attack crafted through each of some defence settings.

    Attributes
    ----------
    attack : AttackSetting
        The attack of the cells: the ``[[attacks]]`` entry, with the entry's
        ``params`` on top when it has them.
    eps : tuple of float
        Budgets, ascending, each one of the attack's and > 0.
    defences : tuple of str
        Keys of the settings attacked through, in spec order (``"none"`` only
        with ``restarts > 1`` or ``params``: otherwise its transfer cell is
        the answer).
    options : AdaptiveParams
        EOT samples, restarts and the entry's attacker seed.
    overrides : dict
        The entry's ``params`` as given (empty: the ``[[attacks]]`` entry's).
    stand_in : StandIn
        The backward pass of the BPDA members (default: the identity).
    """

    attack: AttackSetting
    eps: tuple[float, ...]
    defences: tuple[str, ...]
    options: AdaptiveParams
    overrides: Mapping[str, Any] = field(default_factory=dict)
    stand_in: StandIn = field(default_factory=StandIn)

    def _stand_in(self) -> dict[str, Any]:
        """The stand-in as cell parameters: nothing for the identity (rows made before the
        option existed keep their parameters)."""
        return {} if self.stand_in.surrogate() is None else as_dict(self.stand_in)

    @property
    def id(self) -> str:
        """The attack's id."""
        return self.attack.id

    def params_at(self, eps: float, setting: DefenceSetting) -> dict[str, Any]:
        """The cell's full parameters: the attack's at ``eps``, the EOT samples (1 through a
        deterministic setting: one draw is the defence itself), restarts and the cell's
        attacker seed (:func:`cell_seed`)."""
        o = self.options
        return {
            **self.attack.params_at(eps),
            "eot_samples": self._eot(setting.defence),
            "restarts": o.restarts,
            "eot_seed": cell_seed(o.eot_seed, self.id, eps, setting.key),
            **self._stand_in(),
        }

    def _eot(self, defence: Defence) -> int:
        return self.options.eot_samples if defence.randomised else 1

    def label(self, defence: Defence) -> str:
        """The stored threat model of a cell through ``defence``."""
        return threat_label(defence, self.options.eot_samples, self.stand_in)

    def record(self) -> dict[str, Any]:
        """The entry as plain data (the manifest's record and the spec's settings)."""
        return {
            "attack": self.id,
            "eps": list(self.eps),
            "defences": list(self.defences),
            **as_dict(self.options),
            **({"params": dict(self.overrides)} if self.overrides else {}),
            **self._stand_in(),
        }


def parse_adaptive(
    entries: Any,
    attacks: Sequence[AttackSetting],
    defences: Sequence[DefenceSetting],
    seed: int,
    where: str,
    overridden: Callable[[str, Any, str], AttackSetting] | None = None,
) -> tuple[AdaptiveSetting, ...]:
    """The ``[[adaptive]]`` entries of a spec, checked against its attacks and settings.

    ``overridden(attack_id, params, owner)`` makes the attack of an entry with
    ``params`` (the spec's parser: the ``[[attacks]]`` table with them on top);
    without it an entry with ``params`` is refused.

    Raises
    ------
    ParamError
        Naming ``where`` and the entry: not a list of tables, an unknown key,
        an attack the spec does not list (or listed twice), a budget that
        attack does not run, a defence key the spec lacks, an adaptive
        parameter out of its declared range, ``params`` the attack does not
        take, or restarts for an attack without a random start.
    """
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ParamError(f"{where}: [[adaptive]] must be a list of tables.")
    by_id = {a.id: a for a in attacks}
    keys = [d.key for d in defences]
    out: list[AdaptiveSetting] = []
    for i, entry in enumerate(entries):
        owner = f"{where}: adaptive[{i}]"
        if not isinstance(entry, dict):
            raise ParamError(f"{owner} must be a table; got {entry!r}.")
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:
            raise ParamError(
                f"{owner}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_ENTRY_KEYS)}."
            )
        attack = by_id.get(entry.get("attack"))  # type: ignore[arg-type]
        if attack is None:
            raise ParamError(
                f"{owner}: 'attack' must name an [[attacks]] entry ({', '.join(by_id)}); "
                f"got {entry.get('attack')!r}."
            )
        owner = f"{owner} ({attack.id})"
        if any(a.id == attack.id for a in out):
            raise ParamError(f"{owner}: attack listed twice; give all its budgets in one entry.")
        attacked = [e for e in attack.eps if e > 0]
        eps = _subset(entry.get("eps", attacked), attacked, "eps", owner, float)
        chosen = _subset(entry.get("defences", keys), keys, "defences", owner, str)
        skip = ("attack", "eps", "defences", "params", *_STAND_IN_KEYS)
        values = {k: v for k, v in entry.items() if k not in skip}
        values.setdefault("eot_seed", seed)
        options = build(AdaptiveParams, values, owner=owner)
        try:
            chosen_in = {k: v for k, v in entry.items() if k in _STAND_IN_KEYS}
            stand_in = build(StandIn, chosen_in, owner=owner)
        except ParamError as exc:
            raise ParamError(f"{owner}: {exc}") from None
        overrides = entry.get("params", {})
        if "params" in entry:
            if overridden is None:
                raise ParamError(f"{owner}: 'params' needs the spec's attack parser.")
            attack = overridden(attack.id, overrides, owner)
        info = ATTACKS[attack.id]
        for e in eps:
            check_restarts(build(info.params_cls, attack.params_at(e)), options.restarts, owner)
        if options.restarts == 1 and not overrides:
            chosen = tuple(k for k in chosen if k != NO_DEFENCE)
        out.append(
            AdaptiveSetting(
                attack, tuple(float(e) for e in eps), chosen, options, dict(overrides), stand_in
            )
        )
    return tuple(out)


def _subset(value: Any, allowed: list[Any], name: str, owner: str, kind: type) -> tuple[Any, ...]:
    """``value``'s items, each one of ``allowed``, in ``allowed``'s order (no repeats)."""
    ok_type = (int, float) if kind is float else (kind,)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, ok_type) and not isinstance(v, bool) for v in value)
    ):
        raise ParamError(f"{owner}: '{name}' must be a non-empty list; got {value!r}.")
    if len(set(value)) != len(value):
        raise ParamError(f"{owner}: '{name}' lists a value twice: {value!r}.")
    missing = [v for v in value if v not in allowed]
    if missing:
        shown = ", ".join(format_value(v) for v in allowed) or "none"
        raise ParamError(
            f"{owner}: '{name}' must be among the spec's ({shown}); got "
            f"{', '.join(format_value(v) for v in missing)}."
        )
    return tuple(v for v in allowed if v in value)


# --------------------------------------------------------------------------- tables


def threat_of(label: Any, eps: float) -> str:
    """The threat-model id of one row: ``"clean"`` at ``eps = 0``, else its label's id
    (a label this engine does not know, or none, is ``"transfer"``)."""
    if eps == 0:
        return CLEAN.id
    try:
        return parse(label).id
    except ParamError:
        return TRANSFER.id


def threat_ids(df: pd.DataFrame) -> pd.Series:
    """The threat-model id of every row (see :func:`threat_of`), indexed like ``df``."""
    eps = pd.to_numeric(df["eps"], errors="coerce").to_numpy(dtype=float)
    if "threat_model" not in df:
        ids = np.where(eps == 0, CLEAN.id, TRANSFER.id)
        return pd.Series(ids, index=df.index, dtype=object)
    labels = df["threat_model"].astype(str)  # a missing label (NaN) reads as "nan": transfer
    by_label = {lab: threat_of(lab, 1.0) for lab in dict.fromkeys(labels)}
    ids = np.where(eps == 0, CLEAN.id, [by_label[lab] for lab in labels])
    return pd.Series(ids, index=df.index, dtype=object)


def threats(df: pd.DataFrame) -> list[str]:
    """The attacked threat models a table holds (ids, e.g. ``["transfer", "adaptive"]``),
    transfer first, then in table order."""
    found = list(dict.fromkeys(t for t in threat_ids(df) if t != CLEAN.id))
    return sorted(found, key=lambda t: t != TRANSFER.id)  # stable: the rest in table order


def check_threat(threat: str) -> str:
    """``threat`` if it is an attacked threat model's id of :data:`engine.threat.THREAT_MODELS`.

    Raises
    ------
    ParamError
        Naming the value and the ids allowed.
    """
    allowed = [t for t in THREAT_MODELS if t != CLEAN.id]
    if threat not in allowed:
        raise ParamError(f"Unknown threat model {threat!r}; use one of: {', '.join(allowed)}.")
    return threat


def for_threat(df: pd.DataFrame, threat: str = TRANSFER.id) -> pd.DataFrame:
    """The rows of one threat model and the clean rows: one row per (attack, eps, setting).

    Parameters
    ----------
    df : pandas.DataFrame
        A results (or per-image) table.
    threat : str, default="transfer"
        A threat-model id (``"transfer"``, ``"adaptive"``, ``"black_box"``).
        For ``"adaptive"``, a cell of the ``"none"`` setting that has no
        adaptive row reads its transfer row (through no defence the adaptive
        attack is the transfer attack).

    Returns
    -------
    pandas.DataFrame
        ``df`` itself when it holds nothing else (a transfer-only table read
        for transfer), else the selected rows in table order (index kept).
    """
    check_threat(threat)
    ids = threat_ids(df)
    keep = ids.isin([CLEAN.id, threat])
    if threat == ADAPTIVE.id and "defence_key" in df:
        none = (df["defence_key"] == NO_DEFENCE) & (ids == TRANSFER.id)
        have = set(_cells(df[keep & (ids == ADAPTIVE.id)]))
        keep |= none & np.array([c not in have for c in _cells(df)], dtype=bool)
    return df if bool(keep.all()) else df[keep]


def _cells(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    cols = [c for c in ("attack", "eps", "defence_key", "image_index") if c in df]
    return list(zip(*(df[c] for c in cols), strict=True))
