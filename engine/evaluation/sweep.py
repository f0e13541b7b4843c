"""Run a sweep: attack once per budget, defend with every setting, measure, journal each cell.

See :mod:`engine.evaluation` for the output files and their columns. The order of
work, and why:

1. Validate everything first (the spec, the bundle, the split, and whether the
   output folder holds this sweep), so a typo fails in a second, not after an hour.
2. Load the images (a seeded stratified subset when ``limit`` is set) and
   predict them once, undefended: these clean predictions are the reference
   of every fooling rate.
3. Evaluate *groups* in order: the clean images (``eps = 0``, shared by every
   attack that lists 0, never attacked), then each ``(attack, eps > 0)``.
   A group's adversarial images are computed **once**, with
   :func:`engine.attacks.run_attack` (which enforces the budget), and reused
   by every defence setting (the transfer cells). Then each adaptive cell of
   the spec's ``[[adaptive]]`` entries: its images are crafted through its
   own defence setting, never reused (:mod:`engine.evaluation.threats`).
4. Each cell ``(group, defence setting)``: defend the batch
   (:func:`engine.defences.apply_batch`, all cores), predict
   (:func:`engine.gradients.predict`), summarise
   (:func:`engine.metrics.summarize`), measure image distances, and journal
   the cell (:func:`engine.evaluation.journal.write_cell`, one JSON file,
   atomically) before the next cell starts.
5. After each group, and at the end, rewrite ``results.csv`` and
   ``per_image.csv.gz`` from the finished cells and update ``manifest.json``.
   When the last cell is done the journal files are removed: the tables hold
   every finished cell (:mod:`engine.evaluation.journal`).

A run that is interrupted (Ctrl-C, SIGKILL, a crash) loses at most the cell
in progress: run the same command again and it continues. A finished sweep
opened with a spec that adds budgets, attacks or defence settings is
extended: only the new cells are computed. A run whose model, data, image
subset, seed, per-image subset or engine version differ from the manifest in
the folder, or whose spec drops or changes finished cells, is refused unless
``force=True``, which starts over.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from engine.bundle import read_meta
from engine.errors import DatasetError, ParamError
from engine.evaluation import _table
from engine.evaluation._io import CELLS, MANIFEST, atomic_write_text, read_json, to_json
from engine.evaluation._table import group_name
from engine.evaluation.cell import (
    ATTACK_BATCH,
    Prepared,
    StageFn,
    attack_images,
    evaluate_cell,
    perturbation,
    prepare,
    select,
)
from engine.evaluation.journal import (
    clear,
    conflicts,
    has_cell_files,
    read_journal,
    remove_cell_files,
    write_cell,
)
from engine.evaluation.manifest import (
    FORMAT,
    build_manifest,
    differences,
    identity_of,
    record_run,
    recorded_identity,
    refreshed,
)
from engine.evaluation.spec import AttackSetting, DefenceSetting, SweepSpec, load_spec
from engine.evaluation.threats import AdaptiveSetting
from engine.threat import ADAPTIVE, THREAT_CLEAN, THREAT_TRANSFER

log = logging.getLogger(__name__)

__all__ = [
    "ATTACK_BATCH",
    "THREAT_CLEAN",
    "THREAT_TRANSFER",
    "Prepared",
    "SweepIdentityError",
    "attack_images",
    "evaluate_cell",
    "perturbation",
    "prepare",
    "run_sweep",
    "select",
]

ProgressFn = Callable[[int, int], None]


class SweepIdentityError(ParamError):
    """The output folder holds (part of) a different sweep; rerun with ``force``."""


class _Unit(NamedTuple):
    """One attack's images and the cells that share them."""

    group: str
    attack: AttackSetting | None  # None: the clean images
    eps: float
    settings: tuple[DefenceSetting, ...]
    entry: AdaptiveSetting | None = None  # the [[adaptive]] entry of an adaptive cell


def _units(spec: SweepSpec) -> list[_Unit]:
    """Work in order: the clean images (if any attack lists 0), each attack's transfer group
    (every setting), then each adaptive cell (one setting: its images are its own)."""
    out: list[_Unit] = []
    if any(0.0 in a.eps for a in spec.attacks):
        out.append(_Unit(group_name(None, 0.0), None, 0.0, spec.defences))
    out += [
        _Unit(group_name(a.id, e), a, e, spec.defences)
        for a in spec.attacks
        for e in a.eps
        if e > 0
    ]
    for entry in spec.adaptive:
        group = {e: group_name(entry.id, e, ADAPTIVE.id) for e in entry.eps}
        out += [
            _Unit(group[e], entry.attack, e, (spec.defence(k),), entry)
            for e in entry.eps
            for k in entry.defences
        ]
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_sweep(
    spec: SweepSpec | str | os.PathLike,
    bundle_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    stage_progress: StageFn | None = None,
) -> Path:
    """Run, continue or extend a sweep and write its results folder.

    Parameters
    ----------
    spec : SweepSpec or path
        A parsed spec, or the path of a spec file (:func:`load_spec`).
    bundle_path : str or os.PathLike
        The model bundle to evaluate.
    out_dir : str or os.PathLike
        Output folder: ``results.csv``, ``per_image.csv.gz`` and
        ``manifest.json``, and while the sweep runs its journal ``cells/`` (one
        JSON file per finished cell, folded into the tables and removed when the
        sweep completes). A folder of the same sweep is continued; one of a
        smaller spec for the same model and data is extended.
    data_root : str or os.PathLike, optional
        Data folder searched first.
    limit : int, optional
        At most this many images (overrides the spec's ``limit``).
    force : bool, default=False
        Start over, deleting what ``out_dir`` holds.
    progress : callable, optional
        ``progress(done, total)`` in cells, after each cell (finished cells of
        an earlier run count as done).
    stage_progress : callable, optional
        ``stage_progress(stage, done, total)`` in images, for the stage in
        progress (``"load images"``, ``"attack pgd eps=8"``,
        ``"defence jpeg:quality=75"``).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    SweepIdentityError
        ``out_dir`` holds another sweep (other model, split, image subset, seed,
        per-image subset or engine version, or finished cells the spec no
        longer lists or lists with other parameters) and ``force`` is false.
    EngineError
        Any user error: bad spec, missing bundle or data, ...
    """
    t_start = time.perf_counter()
    started = _now()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    out = Path(out_dir)
    bundle_path = Path(bundle_path)

    # Cheap checks first: a refused run must not spend minutes loading.
    meta = read_meta(bundle_path)
    index, indices = select(spec, meta, data_root=data_root, limit=limit)
    identity = identity_of(spec, meta, index, indices, ATTACK_BATCH)
    previous, done_before = _open(out, spec, identity, force=force)
    units = _units(spec)
    total = sum(len(u.settings) for u in units)
    journal = dict(done_before)  # only cells of this spec: _open refuses others
    done = len(journal)
    if previous is not None and done == total:
        # Nothing to compute: refresh the tables and the manifest, skip loading.
        log.info("sweep %s: all %d cells are done in %s", spec.name, total, out)
        if progress is not None:
            progress(done, total)
        manifest = refreshed(previous, spec, identity, bundle_path, total)
        old = previous.get("format", 1)
        note = f"format {old} -> {FORMAT}: cells/ folded into the tables" if old < FORMAT else None
        _finish(out, spec, journal, manifest, (started, t_start, 0), complete=True, note=note)
        return out

    prep = prepare(spec, bundle_path, stage=stage_progress, selected=(index, indices))
    if prep.identity != identity:  # pragma: no cover - the files changed while loading
        raise DatasetError("The data or the model changed while the sweep was starting.")
    manifest = build_manifest(prep, started, previous, total)
    computed = 0
    manifest["cells"] = {"done": done, "total": total}
    atomic_write_text(out / MANIFEST, to_json(manifest, indent=1))
    if progress is not None:
        progress(done, total)
    log.info("sweep %s: %d cells (%d already done) in %s", spec.name, total, done, out)

    try:
        for group, attack, eps, settings, entry in units:
            todo = [d for d in settings if (group, d.key) not in journal]
            if not todo:
                continue
            if attack is None:
                adv, attack_seconds = prep.x, 0.0
            else:
                through = None if entry is None else (entry, todo[0])
                adv, attack_seconds = attack_images(
                    prep, attack, eps, stage_progress, through=through
                )
            pert = perturbation(prep.x, adv)
            for setting in todo:
                result = evaluate_cell(prep, adv, setting, stage=stage_progress)
                if attack is None:
                    params, threat = None, THREAT_CLEAN
                elif entry is None:
                    params, threat = attack.params_at(eps), THREAT_TRANSFER
                else:
                    params, threat = entry.params_at(eps, setting), entry.label(setting.defence)
                record = {
                    "format": FORMAT,
                    "group": group,
                    "attack": attack.id if attack else None,
                    "eps": eps,
                    "attack_params": params,
                    "attack_seconds": attack_seconds,
                    "defence": setting.id,
                    "defence_key": setting.key,
                    "defence_label": setting.label,
                    "defence_params": setting.spec,
                    "threat_model": threat,
                    **pert,
                    **result,
                }
                journal[(group, setting.key)] = write_cell(out, record)
                done += 1
                computed += 1
                if progress is not None:
                    progress(done, total)
            manifest["rows"] = _table.write_tables(out, spec, journal, manifest)
            manifest["cells"]["done"] = done
            atomic_write_text(out / MANIFEST, to_json(manifest, indent=1))
    except BaseException:
        # Keep what is finished readable (Ctrl-C, or an error in a later cell).
        _finish(out, spec, journal, manifest, (started, t_start, computed), complete=False)
        raise
    _finish(out, spec, journal, manifest, (started, t_start, computed), complete=done == total)
    return out


def _open(
    out: Path, spec: SweepSpec, identity: dict[str, Any], *, force: bool
) -> tuple[dict[str, Any] | None, _table.Journal]:
    """The manifest and the finished cells of ``out`` that this sweep continues.

    ``(None, {})`` for a new folder, or after deleting what it held when
    ``force`` is set (without reading it: a damaged folder can be started over).
    """
    if force:
        clear(out)
        return None, {}
    if (out / MANIFEST).is_file():
        previous = read_json(out / MANIFEST)
        reasons = differences(recorded_identity(previous), identity)
        finished = {} if reasons else read_journal(out, previous)
        reasons += conflicts(spec, finished)
        if reasons:
            raise SweepIdentityError(
                f"{out} holds results of a different sweep: {'; '.join(reasons)}. "
                "Use --force (force=True) to delete them and start over, or choose "
                "another output folder."
            )
        return previous, finished
    if has_cell_files(out):
        raise SweepIdentityError(
            f"{out}/{CELLS} holds cells without a {MANIFEST}; use --force to start over."
        )
    return None, {}


def _finish(
    out: Path,
    spec: SweepSpec,
    journal: _table.Journal,
    manifest: dict[str, Any],
    run: tuple[str, float, int],
    *,
    complete: bool,
    note: str | None = None,
) -> None:
    """Write the tables and close the run in the manifest; a complete sweep's journal files
    are then folded into the tables, so they are removed (after the manifest says so)."""
    started, t_start, computed = run
    manifest["rows"] = _table.write_tables(out, spec, journal, manifest)
    manifest["cells"]["done"] = len(journal)  # the spec's cells only (see _open)
    record_run(
        manifest,
        started=started,
        ended=_now(),
        elapsed=time.perf_counter() - t_start,
        computed=computed,
        complete=complete,
        note=note,
    )
    atomic_write_text(out / MANIFEST, to_json(manifest, indent=1))
    if complete:
        remove_cell_files(out)
