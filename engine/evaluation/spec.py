"""Sweep specifications: which attacks, budgets and defence settings a recap evaluates.

A spec is a TOML file (read with the standard library's :mod:`tomllib`)::

    name = "smoke"          # free text, recorded with the results
    seed = 0                # seeds the image subset, the per-image subset and PGD's start
    split = "test"          # train, val or test (default test)
    limit = 40              # optional: at most this many images (seeded, stratified)
    per_image = 16          # size of the fixed seeded subset with per-image records

    [[attacks]]
    id = "fgsm"             # a key of engine.attacks.REGISTRY
    eps = [0, 4, 8]         # budgets in 0-255 units; 0 means the clean images

    [[attacks]]
    id = "pgd"
    eps = [0, 4, 8]
    steps = 10              # any other key is a parameter of the attack
    step_size = { factor = 2.5, min = 0.5 }   # a rule: max(min, factor * eps / steps)

    [[defences]]            # single defences, one entry per defence id
    id = "none"

    [[defences]]
    id = "bilateral"
    grid = { d = [5, 9] }                                   # cartesian product ...
    zip = { sigma_color = [25, 75], sigma_space = [25, 75] }  # ... times lists varied together
    params = {}                                             # fixed values for every setting

    [[chains]]              # defences applied in order, each member {id, params}
    members = [{ id = "nlm" }, { id = "bilateral" }, { id = "guided" }]

Attack parameters
-----------------
Each attack entry's extra keys are the attack's own parameters, validated by
its parameter dataclass (:data:`engine.attacks.REGISTRY` ``params_cls``) at
every budget of the entry; nothing is re-declared here. Two conveniences:

* ``step_size`` may be a rule ``{factor = F, min = M}`` instead of a number,
  giving ``step_size = max(M, F * eps / steps)`` at each budget (attacks with
  ``step_size`` and ``steps`` only). ``F = 2.5`` is the rule of Madry et al.
  (2018): with ``steps`` steps the iterates can travel ``2.5 * eps``, enough to
  cross the ball from a random start; ``M`` keeps tiny budgets from taking
  steps that rounding to uint8 would erase.
* An attack with a ``seed`` parameter (PGD's random start) takes the spec's
  ``seed`` unless the entry sets one.

``eps = 0`` is never attacked: it stands for the clean images, evaluated once
and shared by every attack that lists 0.

Defence settings
----------------
Each ``[[defences]]`` entry expands to ``product(grid) x zip`` settings (one
setting when it has neither), each merged with ``params``; every setting is
built with :func:`engine.defences.make_defence`, which validates it. A chain's
``members`` go through :func:`engine.defences.from_spec`. Every setting gets a
*key* naming its id and the parameters the spec sets, e.g. ``"none"``,
``"jpeg:quality=75"``, ``"bilateral:d=5,sigma_color=25,sigma_space=25"``,
``"nlm+bilateral+guided"``; keys must be unique within a spec.

Adaptive cells
--------------
``[[adaptive]]`` entries ask for attacks crafted *through* each defence
setting (BPDA, EOT) next to the transfer cells; their format and rules are
in :mod:`engine.evaluation.threats`.

Every mistake raises :class:`~engine.errors.ParamError` naming the spec file
and the entry, before any work starts.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import defences as dfn
from engine.attacks import REGISTRY as ATTACKS
from engine.attacks.pgd import relative_step
from engine.datasets import SPLITS
from engine.errors import ParamError
from engine.evaluation.keys import format_key, format_member, format_value
from engine.evaluation.threats import AdaptiveSetting, parse_adaptive
from engine.params import (
    Param,
    as_dict,
    build,
    check_values,
    declaration,
    declared,
    defaults,
    format_number,
    param,
    params_of,
    seed_param,
)

__all__ = [
    "AttackSetting",
    "DefenceSetting",
    "SweepOptions",
    "SweepSpec",
    "load_spec",
    "parse_spec",
]

_TOP_KEYS = (
    *("name", "description", "seed", "split", "limit", "per_image"),
    *("attacks", "defences", "chains", "adaptive"),
)
_DEFENCE_KEYS = ("id", "params", "grid", "zip")
_RULE_KEYS = ("factor", "min")


@declared
@dataclass(frozen=True, kw_only=True)
class SweepOptions:
    """The spec's top-level numbers, declared once (the CLI's ``--limit`` reads them too).

    The spec's values are checked against these declarations by
    :func:`parse_spec` and end up on :class:`SweepSpec`.
    """

    seed: int = seed_param("seeds the image subset, the per-image subset and PGD's random start")
    limit: int | None = param(None, 1, 10**9, 1, "use at most N images", widget="number")
    per_image: int = param(
        64, 0, 10**6, 1, "size of the fixed seeded subset with per-image records", widget="number"
    )


@dataclass(frozen=True)
class AttackSetting:
    """One attack of a sweep and the budgets it is run at.

    Attributes
    ----------
    id : str
        Key of :data:`engine.attacks.REGISTRY`.
    eps : tuple of float
        Budgets in 0-255 units, ascending, distinct; 0 means "clean".
    params : dict
        The attack's other parameters as given (``eps`` excluded), plus the
        spec's seed for attacks that take one.
    step_rule : tuple of (float, float) or None
        ``(factor, min)`` of a relative step-size rule, or ``None``.
    """

    id: str
    eps: tuple[float, ...]
    params: Mapping[str, Any]
    step_rule: tuple[float, float] | None = None

    @property
    def title(self) -> str:
        """The attack's display name."""
        return ATTACKS[self.id].title

    def params_at(self, eps: float) -> dict[str, Any]:
        """The attack's full, validated parameters at budget ``eps`` (a plain dict).

        ``eps = 0`` gives ``{"eps": 0.0}``: the clean images are not attacked.
        """
        if eps == 0:
            return {"eps": 0.0}
        info = ATTACKS[self.id]
        values = dict(self.params)
        values["eps"] = eps
        if self.step_rule is not None:
            factor, low = self.step_rule
            steps = values.get("steps", defaults(info.params_cls)["steps"])
            if isinstance(steps, int) and steps > 0:  # else the attack's check names it
                values["step_size"] = relative_step(eps, steps, factor, low)
        return as_dict(build(info.params_cls, values, owner=info.title))


@dataclass(frozen=True)
class DefenceSetting:
    """One defence setting of a sweep.

    Attributes
    ----------
    key : str
        Unique name within the spec, e.g. ``"jpeg:quality=75"``.
    defence : engine.defences.Defence
        The validated defence (or chain).
    """

    key: str
    defence: dfn.Defence = field(compare=False)

    @property
    def id(self) -> str:
        """Registry id, ``"+"``-joined for a chain (e.g. ``"nlm+bilateral+guided"``)."""
        return self.defence.ID

    @property
    def label(self) -> str:
        """:func:`engine.defences.describe` of the defence."""
        return dfn.describe(self.defence)

    @property
    def spec(self) -> dict[str, Any] | list[dict[str, Any]]:
        """:func:`engine.defences.to_spec` of the defence (JSON-able)."""
        return dfn.to_spec(self.defence)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, fully validated sweep specification (see the module docstring).

    Attributes
    ----------
    name : str
    seed : int
        Seeds the ``limit`` subset, the per-image subset and PGD's random start.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    limit : int or None
        At most this many images (seeded stratified subset), or all.
    per_image : int
        Size of the fixed subset with per-image records (0: none).
    attacks : tuple of AttackSetting
    defences : tuple of DefenceSetting
        Single defences first, then chains, in file order.
    text : str
        The spec file's text, verbatim.
    sha256 : str
        SHA-256 of ``text`` (UTF-8).
    path : Path or None
        Where it was read from.
    description : str
    adaptive : tuple of AdaptiveSetting
        The ``[[adaptive]]`` entries (:mod:`engine.evaluation.threats`).
    """

    name: str
    seed: int
    split: str
    limit: int | None
    per_image: int
    attacks: tuple[AttackSetting, ...]
    defences: tuple[DefenceSetting, ...]
    text: str
    sha256: str
    path: Path | None = None
    description: str = ""
    adaptive: tuple[AdaptiveSetting, ...] = ()

    def attack(self, attack_id: str) -> AttackSetting:
        """The attack entry with this id (:class:`ParamError` if absent)."""
        for a in self.attacks:
            if a.id == attack_id:
                return a
        known = ", ".join(a.id for a in self.attacks)
        raise ParamError(f"Spec {self.name!r} has no attack {attack_id!r}; it has: {known}.")

    def adaptive_for(self, attack_id: str) -> AdaptiveSetting:
        """The ``[[adaptive]]`` entry of this attack (:class:`ParamError` if absent)."""
        for a in self.adaptive:
            if a.id == attack_id:
                return a
        known = ", ".join(a.id for a in self.adaptive) or "none"
        raise ParamError(
            f"Spec {self.name!r} has no adaptive cells for {attack_id!r}; it has them for: {known}."
        )

    def defence(self, key: str) -> DefenceSetting:
        """The defence setting with this key, or with this id when only one has it."""
        for d in self.defences:
            if d.key == key:
                return d
        same_id = [d for d in self.defences if d.id == key]
        if len(same_id) == 1:
            return same_id[0]
        keys = ", ".join(d.key for d in (same_id or self.defences))
        what = "several settings" if same_id else "no setting"
        raise ParamError(f"Spec {self.name!r} has {what} {key!r}; use one of: {keys}.")


# --------------------------------------------------------------------------- loading


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep spec file.

    Parameters
    ----------
    path : str or os.PathLike
        A TOML file (see the module docstring for its schema).

    Returns
    -------
    SweepSpec

    Raises
    ------
    ParamError
        Missing file, invalid TOML, an unknown attack or defence, or a
        parameter outside its declared range; the message names the file and
        the entry.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamError(f"Sweep spec {p} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamError(f"Sweep spec {p} cannot be read: {exc}.") from None
    return parse_spec(text, source=p)


def parse_spec(text: str, *, source: str | os.PathLike = "<spec>") -> SweepSpec:
    """Validate a sweep spec given as TOML text.

    Parameters
    ----------
    text : str
        TOML text (see the module docstring).
    source : str or os.PathLike, default="<spec>"
        Named in error messages and recorded as :attr:`SweepSpec.path` when it
        is a path.

    Returns
    -------
    SweepSpec

    Raises
    ------
    ParamError
        For any mistake, naming ``source`` and the entry.
    """
    where = str(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamError(f"{where}: not valid TOML: {exc}.") from None
    _no_unknown(data, _TOP_KEYS, where)
    name = data.get("name", Path(where).stem)
    if not isinstance(name, str) or not name:
        raise ParamError(f"{where}: 'name' must be a non-empty string; got {name!r}.")
    numbers = check_values(SweepOptions, data, where)
    split = data.get("split", "test")
    if split not in SPLITS:
        raise ParamError(f"{where}: 'split' must be one of {', '.join(SPLITS)}; got {split!r}.")
    attacks = _attacks(data.get("attacks"), numbers["seed"], where)
    defences = _defences(data.get("defences", []), data.get("chains", []), where)
    adaptive = parse_adaptive(
        data.get("adaptive"),
        attacks,
        defences,
        numbers["seed"],
        where,
        _overridden(data["attacks"], numbers["seed"]),
    )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ParamError(f"{where}: 'description' must be a string.")
    return SweepSpec(
        name=name,
        seed=numbers["seed"],
        split=split,
        limit=numbers["limit"],
        per_image=numbers["per_image"],
        attacks=attacks,
        defences=defences,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        path=Path(source) if isinstance(source, os.PathLike) else None,
        description=description,
        adaptive=adaptive,
    )


# --------------------------------------------------------------------------- attacks


def _attacks(entries: Any, seed: int, where: str) -> tuple[AttackSetting, ...]:
    if not isinstance(entries, list) or not entries:
        raise ParamError(f"{where}: needs at least one [[attacks]] entry.")
    out: list[AttackSetting] = []
    for i, entry in enumerate(entries):
        setting = _attack(entry, seed, f"{where}: attacks[{i}]")
        if any(a.id == setting.id for a in out):
            raise ParamError(
                f"{where}: attacks[{i}] ({setting.id}): attack listed twice; "
                "give all its budgets in one entry."
            )
        out.append(setting)
    return tuple(out)


def _attack(entry: Any, seed: int, owner: str) -> AttackSetting:
    """One ``[[attacks]]`` table as an :class:`AttackSetting`, checked at every budget."""
    if not isinstance(entry, dict):
        raise ParamError(f"{owner} must be a table; got {entry!r}.")
    attack_id = entry.get("id")
    if not isinstance(attack_id, str) or attack_id not in ATTACKS:
        raise ParamError(f"{owner}: unknown attack {attack_id!r}; known: {', '.join(ATTACKS)}.")
    info = ATTACKS[attack_id]
    owner = f"{owner} ({attack_id})"
    eps = _eps_list(entry.get("eps"), declaration(info.params_cls, "eps"), owner)
    params = {k: v for k, v in entry.items() if k not in ("id", "eps", "step_size")}
    rule = None
    step = entry.get("step_size")
    fields = {p.name for p in params_of(info.params_cls)}
    if isinstance(step, dict):
        if not {"step_size", "steps"} <= fields:
            raise ParamError(f"{owner}: a step_size rule needs an attack with steps.")
        _no_unknown(step, _RULE_KEYS, f"{owner} step_size")
        factor = _num(step.get("factor"), "step_size.factor", owner, low=0.0, open_low=True)
        low = _num(step.get("min", 0.0), "step_size.min", owner, low=0.0)
        rule = (factor, low)
    elif step is not None:
        params["step_size"] = step
    if "seed" in fields and "seed" not in params:
        params["seed"] = seed
    setting = AttackSetting(attack_id, eps, params, rule)
    for e in eps:
        try:
            setting.params_at(e)
        except ParamError as exc:
            raise ParamError(f"{owner}, eps={format_value(e)}: {exc}") from None
    return setting


def _overridden(entries: Any, seed: int) -> Callable[[str, Any, str], AttackSetting]:
    """How ``[[adaptive]]``'s ``params`` make an attack of its own: the ``[[attacks]]``
    table of ``attack_id`` with ``overrides`` on top, parsed as one (step rule included)."""
    raw = {e.get("id"): e for e in entries if isinstance(e, dict)}

    def make(attack_id: str, overrides: Any, owner: str) -> AttackSetting:
        if not isinstance(overrides, dict) or not overrides:
            raise ParamError(f"{owner}: 'params' must be a non-empty table; got {overrides!r}.")
        fixed = sorted(set(overrides) & {"id", "eps"})
        if fixed:
            raise ParamError(
                f"{owner}: 'params' cannot set {', '.join(fixed)}: the adaptive cells keep "
                "the attack's id, and their budgets are the entry's 'eps'."
            )
        return _attack({**raw[attack_id], **overrides}, seed, f"{owner} params")

    return make


def _eps_list(value: Any, declared_eps: Param, owner: str) -> tuple[float, ...]:
    """The entry's budgets, each checked against the attack's ``eps`` declaration."""
    if not isinstance(value, list) or not value:
        raise ParamError(f"{owner}: 'eps' must be a non-empty list of budgets; got {value!r}.")
    out = []
    for v in value:
        try:
            out.append(float(declared_eps.check(v, owner)))
        except ParamError:
            number = isinstance(v, int | float) and not isinstance(v, bool)
            raise ParamError(
                f"{owner}: 'eps' values must be numbers in {declared_eps.interval()}; "
                f"got {format_number(v) if number else repr(v)}."
            ) from None
    if len(set(out)) != len(out):
        raise ParamError(f"{owner}: 'eps' lists a budget twice: {value!r}.")
    return tuple(sorted(out))


# --------------------------------------------------------------------------- defences


def _defences(singles: Any, chains: Any, where: str) -> tuple[DefenceSetting, ...]:
    if not isinstance(singles, list) or not isinstance(chains, list):
        raise ParamError(f"{where}: [[defences]] and [[chains]] must be lists of tables.")
    out: list[DefenceSetting] = []
    for i, entry in enumerate(singles):
        owner = f"{where}: defences[{i}]"
        if not isinstance(entry, dict):
            raise ParamError(f"{owner} must be a table; got {entry!r}.")
        defence_id = entry.get("id")
        owner = f"{owner} ({defence_id})"
        _no_unknown(entry, _DEFENCE_KEYS, owner)
        if not isinstance(defence_id, str) or defence_id not in dfn.REGISTRY:
            raise ParamError(
                f"{owner}: unknown defence {defence_id!r}; known: {', '.join(dfn.REGISTRY)} "
                "(chains go in [[chains]])."
            )
        for values in _expand(entry, owner):
            try:
                defence = dfn.make_defence(defence_id, values)
            except ParamError as exc:
                raise ParamError(f"{owner}, {format_member(defence_id, values)}: {exc}") from None
            out.append(DefenceSetting(format_member(defence_id, values), defence))
    for i, entry in enumerate(chains):
        owner = f"{where}: chains[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"members"}:
            raise ParamError(f"{owner} must be a table with only 'members'; got {entry!r}.")
        members = entry["members"]
        if not isinstance(members, list) or not members:
            raise ParamError(f"{owner}: 'members' must be a non-empty list of {{id, params}}.")
        for j, m in enumerate(members):
            if not isinstance(m, dict) or "id" not in m:
                raise ParamError(f"{owner}: member {j} must be a table {{id, params}}; got {m!r}.")
        try:
            chain = dfn.from_spec(members)
        except ParamError as exc:
            raise ParamError(f"{owner}: {exc}") from None
        key = format_key((m["id"], m.get("params") or {}) for m in members)
        out.append(DefenceSetting(key, chain))
    if not out:
        raise ParamError(f"{where}: needs at least one [[defences]] or [[chains]] entry.")
    seen: set[str] = set()
    for d in out:
        if d.key in seen:
            raise ParamError(f"{where}: defence setting {d.key!r} is listed twice.")
        seen.add(d.key)
    return tuple(out)


def _expand(entry: dict[str, Any], owner: str) -> list[dict[str, Any]]:
    """The parameter dicts of one [[defences]] entry: params x product(grid) x zip."""
    fixed = entry.get("params", {})
    grid = entry.get("grid", {})
    zipped = entry.get("zip", {})
    for name, table in (("params", fixed), ("grid", grid), ("zip", zipped)):
        if not isinstance(table, dict):
            raise ParamError(f"{owner}: '{name}' must be a table; got {table!r}.")
    for name, table in (("grid", grid), ("zip", zipped)):
        for k, v in table.items():
            if not isinstance(v, list) or not v:
                raise ParamError(f"{owner}: {name}.{k} must be a non-empty list; got {v!r}.")
    clash = (set(fixed) & set(grid)) | (set(fixed) & set(zipped)) | (set(grid) & set(zipped))
    if clash:
        raise ParamError(f"{owner}: {', '.join(sorted(clash))} set in more than one table.")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ParamError(f"{owner}: the lists in 'zip' must have the same length.")
    combos = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
    rows = [dict(zip(zipped, r, strict=True)) for r in zip(*zipped.values(), strict=True)]
    return [{**fixed, **c, **r} for c in combos for r in (rows or [{}])]


# --------------------------------------------------------------------------- helpers


def _no_unknown(table: Mapping[str, Any], known: tuple[str, ...], owner: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ParamError(
            f"{owner}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}."
        )


def _num(value: Any, name: str, owner: str, *, low: float, open_low: bool = False) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > low if open_low else value >= low)
    )
    if not ok:
        rel = ">" if open_low else ">="
        raise ParamError(
            f"{owner}: '{name}' must be a number {rel} {format_value(low)}; got {value!r}."
        )
    return float(value)
