"""Reading a sweep's results folder: tables, staleness, and exact reproduction of one cell."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import engine
from engine import datasets as ds
from engine.bundle import BUNDLE_MODEL, file_sha256, read_meta
from engine.errors import DatasetError, EngineError, ModelError, ParamError
from engine.evaluation import _table
from engine.evaluation._io import (
    MANIFEST,
    RESULTS,
    max_abs_diff,
    read_json,
    resolve_recorded,
    split_seed,
)
from engine.evaluation._table import group_name, per_image_file
from engine.evaluation.journal import read_journal
from engine.evaluation.keys import NO_DEFENCE
from engine.evaluation.manifest import recorded_spec, spec_changes
from engine.evaluation.spec import load_spec
from engine.evaluation.threats import check_threat
from engine.threat import ADAPTIVE, THREAT_TRANSFER, TRANSFER, adaptive_label, is_adaptive

__all__ = [
    "ADAPTIVE_DIR",
    "check_stale",
    "companion_dir",
    "load_manifest",
    "load_results",
    "per_image_file",
    "reproduce_cell",
]


def load_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``manifest.json`` of a results folder.

    Raises
    ------
    EngineError
        When the folder has no readable manifest.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise EngineError(f"{out_dir} holds no sweep results ({MANIFEST} is missing).")
    try:
        return read_json(path)
    except ValueError as exc:
        raise EngineError(f"{path} is damaged: {exc}.") from None


ADAPTIVE_DIR = "adaptive"
"""Sub-folder of a results folder holding its adaptive companion sweep.

Adaptive images are crafted per defence setting, so an adaptive sweep costs
far more per cell than a transfer one and runs on a seeded stratified subset
(``assets/specs/adaptive.toml``: 200 test images). Its folder sits inside the
transfer sweep's folder it accompanies (``assets/results/<model>/adaptive``),
and :func:`load_results` appends its adaptive rows to the main table.
"""


def companion_dir(out_dir: str | os.PathLike) -> Path | None:
    """The adaptive companion sweep of a results folder (:data:`ADAPTIVE_DIR`), if any."""
    path = Path(out_dir) / ADAPTIVE_DIR
    return path if (path / MANIFEST).is_file() else None


def _read_table(out_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    manifest = load_manifest(out_dir)
    path = Path(out_dir) / RESULTS
    if not path.is_file():
        raise EngineError(f"{out_dir} has a manifest but no {RESULTS}.")
    return _table.decode_json_columns(pd.read_csv(path)), manifest


def _same_experiment(main: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Why a companion sweep does not describe the same model and test split."""
    reasons = []
    m_model, o_model = main.get("model", {}), other.get("model", {})
    if m_model.get("model_sha256") != o_model.get("model_sha256"):
        reasons.append("it was made with another model")
    m_data, o_data = main.get("data", {}), other.get("data", {})
    for key in ("dataset_id", "split", "fingerprint"):
        if m_data.get(key) != o_data.get(key):
            reasons.append(f"its data {key} differs ({o_data.get(key)!r}, not {m_data.get(key)!r})")
    return reasons


def load_results(
    out_dir: str | os.PathLike, *, companion: bool = True
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The results table (JSON columns decoded) and the manifest of a sweep.

    Parameters
    ----------
    out_dir : str or os.PathLike
        A folder written by :func:`engine.evaluation.run_sweep`.
    companion : bool, default=True
        Also read the folder's adaptive companion sweep (:data:`ADAPTIVE_DIR`)
        when there is one: its adaptive rows (crafted through each defence, on
        its own image subset, ``n_images`` says how many) are appended to the
        table, with its undefended rows as the adaptive attack through no
        defence and its rows of settings the main sweep lacks (see
        :func:`_companion_rows`); its manifest is ``manifest["adaptive_sweep"]``.
        Its other transfer and clean rows are not appended: the main table has
        those, on all its images. A companion made with another model or split
        is an error.

    Returns
    -------
    results : pandas.DataFrame
        One row per cell and threat model, columns as documented in
        :mod:`engine.evaluation`; ``attack_params``, ``defence_params`` are
        dicts (a list of member dicts for a chain), ``recall_per_class``,
        ``specificity_per_class`` lists, ``confusion``/``confusion_binary``
        lists of lists (``None`` without a patient view).
    manifest : dict
        The parsed ``manifest.json``.

    Raises
    ------
    EngineError
        No manifest or table; a companion that does not match the main sweep.
    """
    table, manifest = _read_table(out_dir)
    extra = companion_dir(out_dir) if companion else None
    if extra is None:
        return table, manifest
    rows, extra_manifest = _read_table(extra)
    wrong = _same_experiment(manifest, extra_manifest)
    if wrong:
        raise EngineError(
            f"The adaptive sweep in {extra} does not accompany {out_dir}: {'; '.join(wrong)}. "
            f"Run it again for this model (assets/specs/adaptive.toml) or remove {extra}."
        )
    return pd.concat([table, _companion_rows(table, rows)], ignore_index=True), {
        **manifest,
        "adaptive_sweep": extra_manifest,
    }


def _companion_rows(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of an adaptive companion sweep that the main table lacks.

    Its adaptive rows; its attacked "none" rows where it has no adaptive one,
    labelled adaptive with an exact backward pass (through no defence the
    adaptive attack *is* the transfer attack, bit for bit, unless it restarts or
    stops early, and then the sweep attacks "none" adaptively), so that an
    adaptive accuracy is compared with the undefended one on the same images;
    and every row (clean and transfer too) of a defence setting the main sweep
    does not have.
    """
    adaptive = rows["threat_model"].map(lambda t: is_adaptive(str(t)))
    none = (rows["defence_key"] == NO_DEFENCE) & (rows["eps"] > 0) & ~adaptive
    none &= rows["threat_model"] == THREAT_TRANSFER
    # A sweep whose adaptive attack differs from its transfer one (restarts, early
    # stopping) attacks "none" adaptively too: its own rows answer those cells.
    mine = rows[adaptive & (rows["defence_key"] == NO_DEFENCE)]
    attacked = set(zip(mine["attack"], mine["eps"], strict=True))
    cells = zip(rows["attack"], rows["eps"], strict=True)
    none &= np.array([c not in attacked for c in cells], dtype=bool)
    own = ~rows["defence_key"].isin(set(table["defence_key"]))
    out = rows.copy()
    out.loc[none, "threat_model"] = adaptive_label("exact")
    return out[adaptive | none | own]


def check_stale(
    out_dir: str | os.PathLike,
    bundle_path: str | os.PathLike | None = None,
    *,
    companion: bool = True,
) -> list[str]:
    """Reasons why a results folder no longer describes the current model and code.

    Parameters
    ----------
    out_dir : str or os.PathLike
        A folder written by :func:`engine.evaluation.run_sweep`.
    bundle_path : str or os.PathLike, optional
        The bundle the results should describe; default the one recorded in
        the manifest (when it still exists).

    Returns
    -------
    list of str
        Human-readable reasons; empty when the results are fresh. Checked: the
        manifest and tables exist, the run is complete, the engine version,
        the model hash (recorded in the bundle's metadata and of its file),
        and the spec file (when it still exists at its recorded path).
    """
    out = Path(out_dir)
    try:
        manifest = load_manifest(out)
    except EngineError as exc:
        return [str(exc)]
    reasons: list[str] = []
    if not (out / RESULTS).is_file():
        reasons.append(f"{RESULTS} is missing.")
    if manifest.get("status") != "complete":
        cells = manifest.get("cells", {})
        reasons.append(
            f"The sweep is partial: {cells.get('done', '?')} of {cells.get('total', '?')} cells "
            "are done; run the same command again to finish it."
        )
    if manifest.get("engine_version") != engine.__version__:
        reasons.append(
            f"Made with engine {manifest.get('engine_version')}; this is engine "
            f"{engine.__version__}."
        )
    model = manifest.get("model", {})
    recorded = model.get("model_sha256")
    path = Path(bundle_path) if bundle_path is not None else None
    if path is None and model.get("path") and resolve_recorded(model["path"]).is_dir():
        path = resolve_recorded(model["path"])
    if path is not None:
        try:
            meta = read_meta(path)
        except ModelError as exc:
            reasons.append(f"Cannot read the model bundle: {exc}")
        else:
            if meta.model_sha256 != recorded:
                reasons.append(
                    f"The model differs: {path} has hash {meta.model_sha256[:12]}, the results "
                    f"were made with {str(recorded)[:12]}."
                )
            elif (path / BUNDLE_MODEL).is_file() and file_sha256(path / BUNDLE_MODEL) != recorded:
                reasons.append(
                    f"{path / BUNDLE_MODEL} was changed after its bundle was saved (its hash no "
                    "longer matches its meta.json)."
                )
    reasons += _spec_staleness(manifest)
    extra = companion_dir(out) if companion else None
    if extra is not None:
        own = check_stale(extra, bundle_path, companion=False)
        try:
            own += _same_experiment(manifest, load_manifest(extra))
        except EngineError as exc:
            own.append(str(exc))
        reasons += [f"Adaptive sweep ({ADAPTIVE_DIR}/): {r}" for r in own]
    return reasons


def _spec_staleness(manifest: dict[str, Any]) -> list[str]:
    """Whether the spec file, read again, asks for other numbers than the recorded spec.

    The parsed settings are compared (:func:`engine.evaluation.manifest.spec_changes`),
    not the file's bytes: a comment, the layout, the name or the description
    does not make results stale.
    """
    recorded = manifest.get("spec", {})
    path = resolve_recorded(recorded["path"]) if recorded.get("path") else None
    if path is None or not path.is_file():
        return []
    try:
        current = load_spec(path)
    except ParamError as exc:
        return [f"The spec file {path} no longer parses: {exc}"]
    try:
        changed = spec_changes(recorded_spec(manifest), current)
    except ParamError as exc:  # this engine no longer reads the recorded spec
        return [f"The spec recorded in {MANIFEST} no longer parses: {exc}"]
    if not changed:
        return []
    return [
        f"The spec file {path} changed since the sweep ran (settings that differ: "
        f"{', '.join(changed)}); run the sweep again to bring the results up to date."
    ]


def reproduce_cell(
    out_dir: str | os.PathLike,
    bundle_path: str | os.PathLike,
    attack: str,
    eps: float,
    defence: str,
    *,
    data_root: str | os.PathLike | None = None,
    limit: int | None = None,
    threat: str = TRANSFER.id,
) -> dict[str, Any]:
    """Recompute one stored cell in memory and compare it with the stored numbers.

    Parameters
    ----------
    out_dir : str or os.PathLike
        A results folder, finished (its tables) or running (its tables and its
        journal ``cells/``), of format 1 or 2.
    bundle_path : str or os.PathLike
        The model bundle; its hash must equal the manifest's.
    attack : str
        Attack id of the cell.
    eps : float
        Its budget (0 for the clean cell).
    defence : str
        The defence setting's key (e.g. ``"jpeg:quality=75"``), or its id
        when only one setting has it.
    data_root : str or os.PathLike, optional
        Data folder searched first.
    limit : int, optional
        Recompute only the first ``limit`` images of the run, rounded up to
        whole attack batches (attacked in the same batches as the run, so the
        numbers are the same), and compare the stored per-image predictions
        and confidences among them; without it the whole cell is recomputed and
        every metric is compared too. A finished sweep stores the per-image
        records of its per-image subset (``per_image.csv.gz``), a running one
        every image's (its journal).
    threat : {"transfer", "adaptive"}, default="transfer"
        The cell's threat model: ``"adaptive"`` recomputes an adaptive cell
        (crafted through its setting, with the seed the sweep derived for it).

    Returns
    -------
    dict
        ``attack``, ``eps``, ``defence_key``, ``threat``, ``n_images`` (asked for),
        ``max_abs_diff`` (metric -> largest absolute difference; per-image
        ``confidence`` and ``true_confidence`` included), ``per_image_checked``
        (stored per-image records compared), ``pred_mismatches`` (of those, the
        images whose predicted class differs) and ``identical`` (all zero).

    Raises
    ------
    EngineError
        The cell is not stored, the model or data differ from the run's, no
        per-image record is stored among the images ``limit`` recomputes, ...
    """
    from engine.evaluation import sweep  # TensorFlow loads here, not on import

    out = Path(out_dir)
    manifest = load_manifest(out)
    spec = recorded_spec(manifest)
    setting = spec.defence(defence)
    attack_setting = spec.attack(attack)
    eps = float(eps)
    if eps not in attack_setting.eps:
        raise ParamError(
            f"Attack {attack} was run at eps {', '.join(f'{e:g}' for e in attack_setting.eps)} "
            f"in this sweep; got {eps:g}."
        )
    through = None
    if check_threat(threat) == ADAPTIVE.id:
        entry = spec.adaptive_for(attack)
        if eps not in entry.eps or setting.key not in entry.defences:
            raise ParamError(
                f"The sweep has no adaptive cell {attack}:{eps:g}:{setting.key}; its adaptive "
                f"{attack} cells are at eps {', '.join(f'{e:g}' for e in entry.eps)} through "
                f"{', '.join(entry.defences) or 'no setting'}."
            )
        through = (entry, setting)
    elif threat != TRANSFER.id:
        raise ParamError(f"A sweep computes transfer and adaptive cells only; got {threat!r}.")
    cell = f"{attack}:{eps:g}:{setting.key} ({threat})"
    stored = read_journal(out, manifest).get((group_name(attack, eps, threat), setting.key))
    if stored is None:
        raise EngineError(f"Cell {cell} is not stored in {out}.")

    meta = read_meta(bundle_path)
    if meta.model_sha256 != manifest["model"]["model_sha256"]:
        raise ModelError(
            f"{bundle_path} is not the model of this sweep (hash {meta.model_sha256[:12]}, "
            f"the sweep used {manifest['model']['model_sha256'][:12]})."
        )
    splits = ds.load_splits(meta.dataset_id, root=data_root, seed=split_seed(meta))
    index = splits[spec.split]
    if index.fingerprint != manifest["data"]["fingerprint"]:
        raise DatasetError(
            f"The {spec.split} split found here differs from the sweep's (fingerprint "
            f"{index.fingerprint[:12]} vs {manifest['data']['fingerprint'][:12]})."
        )
    indices = np.asarray(manifest["data"]["indices"], dtype=np.int64)
    n_all = len(indices)
    n = n_all
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ParamError(f"limit must be a positive integer; got {limit!r}.")
        n = min(limit, n_all)
        # Whole attack batches, so a batch-seeded attack (PGD) sees what the run saw.
        indices = indices[: min(n_all, math.ceil(n / sweep.ATTACK_BATCH) * sweep.ATTACK_BATCH)]
    # Every stored per-image record among the recomputed images: all images for a
    # cell of a running sweep's journal, the per-image subset for a finished one.
    checked = sorted(p for p in stored.records if p < len(indices))
    whole = limit is None or n == n_all
    if not checked and not whole:
        raise EngineError(
            f"No per-image record of cell {cell} is stored for the "
            f"first {len(indices)} images; check it without --limit (limit=None)."
        )
    prep = sweep.prepare(spec, bundle_path, data_root=data_root, selected=(index, indices))
    crafted = attack_setting if through is None else through[0].attack
    adv, _ = sweep.attack_images(prep, crafted, eps, through=through)
    result = sweep.evaluate_cell(prep, adv, setting)
    pert = sweep.perturbation(prep.x, adv)

    new_pi = result["per_image"]
    old = [stored.records[p] for p in checked]
    diffs: dict[str, float] = {
        "confidence": max_abs_diff([new_pi["confidence"][p] for p in checked], [r[1] for r in old]),
        "true_confidence": max_abs_diff(
            [new_pi["true_confidence"][p] for p in checked], [r[2] for r in old]
        ),
    }
    mismatches = sum(new_pi["pred"][p] != r[0] for p, r in zip(checked, old, strict=True))
    if whole:
        images = {"psnr_mean": result["psnr_mean"], "ssim_mean": result["ssim_mean"], **pert}
        for key, value in {**result["metrics"], **images}.items():
            diffs[key] = max_abs_diff(value, stored.values[key])
    return {
        "attack": attack,
        "eps": eps,
        "defence_key": setting.key,
        "threat": threat,
        "n_images": n,
        "max_abs_diff": diffs,
        "per_image_checked": len(checked),
        "pred_mismatches": mismatches,
        "identical": mismatches == 0 and all(v == 0 for v in diffs.values()),
    }
