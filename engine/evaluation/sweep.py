"""Run a sweep: attack once per budget, defend with every setting, measure, persist each cell.

See :mod:`engine.evaluation` for the output files and their columns. The order of
work, and why:

1. Validate everything first (the spec, the bundle, the split), so a typo
   fails in a second, not after an hour.
2. Load the images (a seeded stratified subset when ``limit`` is set) and
   predict them once, undefended: these clean predictions are the reference
   of every fooling rate.
3. Evaluate *groups* in order: the clean images (``eps = 0``, shared by every
   attack that lists 0, never attacked), then each ``(attack, eps > 0)``.
   A group's adversarial images are computed **once**, with
   :func:`engine.attacks.run_attack` (which enforces the budget), and reused
   by every defence setting.
4. Each cell ``(group, defence setting)``: defend the batch
   (:func:`engine.defences.apply_batch`, all cores), predict
   (:func:`engine.gradients.predict`), summarise
   (:func:`engine.metrics.summarize`), measure image distances, and write the
   cell's JSON file atomically before the next cell starts.
5. After each group, and at the end, rebuild ``results.csv`` and
   ``per_image.csv`` from the cell files, and update ``manifest.json``.

A run that is interrupted (Ctrl-C, SIGKILL, a crash) loses at most the cell
in progress: run the same command again and it continues. A run whose spec,
model, split or engine version differ from the manifest in the folder is
refused unless ``force=True``, which starts over.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import engine
from engine import attacks as _attacks
from engine import datasets as ds
from engine import defences as dfn
from engine import metrics
from engine.bundle import BUNDLE_MODEL, BundleMeta, file_sha256, read_meta
from engine.errors import DatasetError, ParamError
from engine.evaluation import _table
from engine.evaluation._io import (
    CELLS,
    MANIFEST,
    PER_IMAGE,
    RESULTS,
    atomic_write_text,
    git_info,
    machine_info,
    portable_path,
    read_json,
    split_seed,
    to_json,
)
from engine.evaluation.spec import AttackSetting, DefenceSetting, SweepSpec, load_spec
from engine.gradients import predict
from engine.models import load_bundle
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

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

#: Images per attack call. Part of a run's identity: PGD's random start is drawn
#: per batch, so the batch size changes its numbers.
ATTACK_BATCH = 64
#: Manifest format version.
FORMAT = 1

ProgressFn = Callable[[int, int], None]
StageFn = Callable[[str, int, int], None]


class SweepIdentityError(ParamError):
    """The output folder holds (part of) a different sweep; rerun with ``force``."""


@dataclass
class Prepared:
    """Everything a sweep needs in memory: model, images, clean predictions.

    Built by :func:`prepare`; shared by :func:`run_sweep` and
    :func:`engine.evaluation.reproduce_cell`.
    """

    spec: SweepSpec
    bundle_path: Path
    meta: BundleMeta
    model: Any
    index: ds.SplitIndex
    indices: np.ndarray
    x: np.ndarray
    y: np.ndarray
    probs_clean: np.ndarray
    pred_clean: np.ndarray
    identity: dict[str, Any]

    @property
    def n_classes(self) -> int:
        """Number of classes of the model."""
        return len(self.meta.classes)


# --------------------------------------------------------------------------- preparation

_bundle_lock = threading.Lock()
_bundle_cache: dict[str, tuple[tuple[str, int, int], Any]] = {}


def _load_bundle_cached(path: Path, meta: BundleMeta) -> Any:
    """:func:`engine.models.load_bundle` (hash verified), reusing the last bundle loaded.

    Loading a model builds a new Keras object whose compiled functions must be
    traced again (seconds for a MobileNet); a resumed sweep, a second sweep
    or :func:`engine.evaluation.reproduce_cell` on the same bundle in one process
    reuse it instead. The cached entry is used only while the recorded hash
    and the model file's size and modification time are unchanged. The model
    is never mutated.
    """
    model_file = path / BUNDLE_MODEL
    try:
        st = model_file.stat()
    except OSError:
        return load_bundle(path, verify=True)  # raises a clear ModelError
    key = str(path.resolve())
    stamp = (meta.model_sha256, st.st_size, st.st_mtime_ns)
    with _bundle_lock:
        hit = _bundle_cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    bundle = load_bundle(path, verify=True)
    with _bundle_lock:
        _bundle_cache.clear()  # one model at a time: they can be large
        _bundle_cache[key] = (stamp, bundle)
    return bundle


def select(
    spec: SweepSpec,
    meta: BundleMeta,
    *,
    data_root: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[ds.SplitIndex, np.ndarray]:
    """The split and the image positions a sweep evaluates (no pixels read).

    ``limit`` (else the spec's) keeps a seeded stratified subset
    (:func:`engine.datasets.subset_indices` with the spec's seed).

    Raises
    ------
    DatasetError
        When the split differs from the one the model was evaluated on.
    """
    splits = ds.load_splits(meta.dataset_id, root=data_root, seed=split_seed(meta))
    index = splits[spec.split]
    recorded = meta.data_fingerprints.get(spec.split)
    if recorded and recorded != index.fingerprint:
        raise DatasetError(
            f"The {spec.split} split of {meta.dataset_id} found here (fingerprint "
            f"{index.fingerprint[:12]}) is not the one the model was evaluated on "
            f"({recorded[:12]}): other files, or another split seed. Its images may "
            "overlap the model's training set; point --data-root at the data the model "
            "was trained with."
        )
    lim = limit if limit is not None else spec.limit
    if lim is not None and (isinstance(lim, bool) or not isinstance(lim, int) or lim < 1):
        raise ParamError(f"limit must be a positive integer; got {lim!r}.")
    if lim is not None and lim < len(index):
        indices = ds.subset_indices(index.labels, lim, seed=spec.seed)
    else:
        indices = np.arange(len(index), dtype=np.int64)
    if len(indices) == 0:
        raise DatasetError(f"The {spec.split} split of {meta.dataset_id} is empty.")
    return index, indices


def identity_of(
    spec: SweepSpec, meta: BundleMeta, index: ds.SplitIndex, indices: np.ndarray
) -> dict[str, Any]:
    """What must match for finished cells to be reused: spec, model, data, engine."""
    return {
        "spec_sha256": spec.sha256,
        "model_sha256": meta.model_sha256,
        "dataset_id": meta.dataset_id,
        "split": spec.split,
        "split_fingerprint": index.fingerprint,
        "indices_sha256": hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest(),
        "engine_version": engine.__version__,
        "attack_batch_size": ATTACK_BATCH,
    }


def prepare(
    spec: SweepSpec,
    bundle_path: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    limit: int | None = None,
    stage: StageFn | None = None,
    selected: tuple[ds.SplitIndex, np.ndarray] | None = None,
) -> Prepared:
    """Load the bundle and the images, and predict the clean images once.

    Parameters
    ----------
    spec : SweepSpec
    bundle_path : str or os.PathLike
        A model bundle folder (its hash is verified).
    data_root : str or os.PathLike, optional
        Data folder searched first.
    limit : int, optional
        Overrides the spec's ``limit``.
    stage : callable, optional
        ``stage(name, done, total)`` progress of the loading.
    selected : (SplitIndex, np.ndarray), optional
        The result of :func:`select`, when the caller has it already.

    Returns
    -------
    Prepared
    """
    bundle_path = Path(bundle_path)
    meta = read_meta(bundle_path)
    if selected is None:
        selected = select(spec, meta, data_root=data_root, limit=limit)
    index, indices = selected
    bundle = _load_bundle_cached(bundle_path, meta)
    x, y = ds.load_arrays(
        index,
        meta.input_size,
        indices=indices,
        progress=None if stage is None else (lambda d, t: stage("load images", d, t)),
    )
    probs_clean = predict(bundle.model, x)
    return Prepared(
        spec=spec,
        bundle_path=bundle_path,
        meta=meta,
        model=bundle.model,
        index=index,
        indices=indices,
        x=x,
        y=y,
        probs_clean=probs_clean,
        pred_clean=probs_clean.argmax(axis=1),
        identity=identity_of(spec, meta, index, indices),
    )


# --------------------------------------------------------------------------- one cell


def attack_images(
    prep: Prepared, attack: AttackSetting, eps: float, stage: StageFn | None = None
) -> tuple[np.ndarray, float]:
    """The adversarial images of one ``(attack, eps)`` group and the seconds spent.

    ``eps == 0`` returns the clean images (no attack is run).
    """
    if eps == 0:
        return prep.x, 0.0
    name = f"attack {attack.id} eps={eps:g}"
    t0 = time.perf_counter()
    adv = _attacks.run_attack(
        attack.id,
        prep.model,
        prep.x,
        prep.y,
        attack.params_at(eps),
        batch_size=ATTACK_BATCH,
        progress=None if stage is None else (lambda d, t: stage(name, d, t)),
    )
    return adv, time.perf_counter() - t0


def _defend(
    defence: dfn.Defence, images: np.ndarray, stage: StageFn | None, name: str
) -> np.ndarray:
    if stage is None:
        return dfn.apply_batch(defence, images)
    out = np.empty_like(images)
    chunk = max(64, 8 * (os.cpu_count() or 1))
    n = len(images)
    stage(name, 0, n)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        out[sl] = dfn.apply_batch(defence, images[sl])
        stage(name, sl.stop, n)
    return out


def perturbation(clean: np.ndarray, adv: np.ndarray) -> dict[str, float]:
    """Mean and max per-image L2 and L-inf of ``adv - clean`` (0-255 units)."""
    d = metrics.image_distances(clean, adv, ssim=False)
    return {
        "pert_l2_mean": float(d["l2"].mean()),
        "pert_l2_max": float(d["l2"].max()),
        "pert_linf_mean": float(d["linf"].mean()),
        "pert_linf_max": float(d["linf"].max()),
    }


def _mean_psnr(values: np.ndarray) -> float:
    """Mean PSNR over the images that differ (finite values); ``inf`` when none differs.

    Identical images (PSNR ``inf``) are left out so that one untouched image
    does not make the mean infinite.
    """
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.inf


def evaluate_cell(
    prep: Prepared,
    adv: np.ndarray,
    setting: DefenceSetting,
    *,
    stage: StageFn | None = None,
) -> dict[str, Any]:
    """Defend ``adv``, predict, and measure: the numbers of one cell.

    Parameters
    ----------
    prep : Prepared
        Model, clean images, labels and clean predictions.
    adv : np.ndarray
        The group's images (the clean images for ``eps == 0``).
    setting : DefenceSetting
    stage : callable, optional
        ``stage(name, done, total)`` progress over the defended images.

    Returns
    -------
    dict
        ``metrics`` (:func:`engine.metrics.summarize`, fooling rate relative to
        the clean undefended predictions), ``psnr_mean`` and ``ssim_mean`` of
        the defended images against the clean ones, ``per_image`` predictions,
        and ``seconds``.
    """
    t0 = time.perf_counter()
    defended = _defend(setting.defence, adv, stage, f"defence {setting.key}")
    # Image distances (OpenCV/NumPy) run beside the prediction (TensorFlow):
    # both release the GIL, so neither waits for the other.
    with ThreadPoolExecutor(max_workers=1) as side:
        distances = side.submit(metrics.image_distances, prep.x, defended)
        if np.array_equal(defended, prep.x):
            probs = prep.probs_clean  # the same images: the same numbers, no second pass
        else:
            probs = predict(prep.model, defended)
        dist = distances.result()
    summary = metrics.summarize(
        prep.y,
        probs,
        n_classes=prep.n_classes,
        positive=prep.meta.positive_indices,
        pred_clean=prep.pred_clean,
    )
    rows = np.arange(len(prep.y))
    pred = probs.argmax(axis=1)
    return {
        "metrics": summary,
        "psnr_mean": _mean_psnr(dist["psnr"]),
        "ssim_mean": float(np.mean(dist["ssim"])),
        "per_image": {
            "pred": pred.tolist(),
            "confidence": probs[rows, pred].tolist(),
            "true_confidence": probs[rows, prep.y].tolist(),
        },
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- the sweep


def _groups(spec: SweepSpec) -> list[tuple[AttackSetting | None, float]]:
    """Work units in order: the clean images (if any attack lists 0), then each attack."""
    out: list[tuple[AttackSetting | None, float]] = []
    if any(0.0 in a.eps for a in spec.attacks):
        out.append((None, 0.0))
    out += [(a, e) for a in spec.attacks for e in a.eps if e > 0]
    return out


def _manifest(
    prep: Prepared, spec_path: Path | None, started: str, previous: dict[str, Any] | None
) -> dict[str, Any]:
    spec, meta, index = prep.spec, prep.meta, prep.index
    n = len(prep.indices)
    k = min(spec.per_image, n)
    positions = ds.subset_indices(prep.y, k, seed=spec.seed).tolist() if k else []
    file_hash = file_sha256(prep.bundle_path / BUNDLE_MODEL)
    return {
        "format": FORMAT,
        "status": "partial",
        "engine_version": engine.__version__,
        "git": git_info(),
        "spec": {
            "name": spec.name,
            "description": spec.description,
            "path": portable_path(spec_path) if spec_path else None,
            "sha256": spec.sha256,
            "text": spec.text,
        },
        "model": {
            "id": prep.bundle_path.resolve().name,
            "path": portable_path(prep.bundle_path),
            "backbone": meta.backbone,
            "weights": meta.weights,
            "dataset_id": meta.dataset_id,
            "classes": list(meta.classes),
            "positive": list(meta.positive),
            "input_size": meta.input_size,
            "model_sha256": meta.model_sha256,
            "file_sha256": file_hash,
            "file_matches_meta": file_hash == meta.model_sha256,
        },
        "data": {
            "dataset_id": meta.dataset_id,
            "split": spec.split,
            "fingerprint": index.fingerprint,
            "split_size": len(index),
            "limit": None if n == len(index) else n,
            "n_images": n,
            "indices": prep.indices.tolist(),
            "labels": prep.y.tolist(),
            "clean_accuracy_undefended": float(np.mean(prep.pred_clean == prep.y)),
            "per_image": {
                "positions": positions,
                "indices": [int(prep.indices[p]) for p in positions],
                "refs": [index.refs[int(prep.indices[p])] for p in positions],
                "labels": [int(prep.y[p]) for p in positions],
            },
        },
        "seeds": {
            "spec": spec.seed,
            "image_subset": spec.seed,
            "per_image_subset": spec.seed,
            "attacks": {a.id: a.params["seed"] for a in spec.attacks if "seed" in a.params},
        },
        "attack_batch_size": ATTACK_BATCH,
        "threat_models": {"clean": THREAT_CLEAN, "attacked": THREAT_TRANSFER},
        "identity": prep.identity,
        "cells": {"done": 0, "total": len(_groups(spec)) * len(spec.defences)},
        "rows": 0,
        "started": previous.get("started", started) if previous else started,
        "ended": None,
        "elapsed_s": float(previous.get("elapsed_s", 0.0)) if previous else 0.0,
        "runs": list(previous.get("runs", [])) if previous else [],
        "machine": machine_info(),
        "columns": list(_table.COLUMNS),
        "per_image_columns": list(_table.PER_IMAGE_COLUMNS),
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    names = {
        "spec_sha256": "the spec",
        "model_sha256": "the model",
        "dataset_id": "the dataset",
        "split": "the split",
        "split_fingerprint": "the split's files",
        "indices_sha256": "the image subset (--limit)",
        "engine_version": "the engine version",
        "attack_batch_size": "the attack batch size",
    }
    out = []
    for key, what in names.items():
        a, b = old.get(key), new.get(key)
        if a != b:
            show = (lambda v: str(v)[:12]) if key.endswith(("sha256", "fingerprint")) else str
            out.append(f"{what} differs ({show(a)} there, {show(b)} now)")
    return out


def _clear(out_dir: Path) -> None:
    """Remove the files of a previous sweep (and only those) from ``out_dir``."""
    cells = out_dir / CELLS
    if cells.is_dir():
        for p in cells.iterdir():
            if p.is_file() and (p.suffix == ".json" or p.name.endswith(".tmp")):
                p.unlink()
    for name in (RESULTS, PER_IMAGE, MANIFEST):
        (out_dir / name).unlink(missing_ok=True)


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
    """Run (or continue) a sweep and write its results folder.

    Parameters
    ----------
    spec : SweepSpec or path
        A parsed spec, or the path of a spec file (:func:`load_spec`).
    bundle_path : str or os.PathLike
        The model bundle to evaluate.
    out_dir : str or os.PathLike
        Output folder: ``results.csv``, ``per_image.csv``, ``manifest.json``
        and ``cells/`` (one JSON file per finished cell).
    data_root : str or os.PathLike, optional
        Data folder searched first.
    limit : int, optional
        At most this many images (overrides the spec's ``limit``).
    force : bool, default=False
        Start over even when ``out_dir`` holds a different sweep.
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
        ``out_dir`` holds another sweep (other spec, model, split, image
        subset or engine version) and ``force`` is false.
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
    identity = identity_of(spec, meta, index, indices)
    previous: dict[str, Any] | None = None
    if (out / MANIFEST).is_file():
        previous = read_json(out / MANIFEST)
        reasons = _differences(previous.get("identity", {}), identity)
        if reasons and not force:
            raise SweepIdentityError(
                f"{out} holds results of a different sweep: {'; '.join(reasons)}. "
                "Use --force (force=True) to delete them and start over, or choose "
                "another output folder."
            )
        if reasons or force:
            _clear(out)
            previous = None
    elif (out / CELLS).is_dir() and any((out / CELLS).glob("*.json")):
        if not force:
            raise SweepIdentityError(
                f"{out}/{CELLS} holds cells without a manifest.json; use --force to start over."
            )
        _clear(out)
    (out / CELLS).mkdir(parents=True, exist_ok=True)
    groups = _groups(spec)
    total = len(groups) * len(spec.defences)
    done_before = _table.read_cells(out)
    done = sum(
        1
        for a, e in groups
        for d in spec.defences
        if (_table.group_name(a.id if a else None, e), d.key) in done_before
    )
    if previous is not None and done == total:
        # Nothing to compute: refresh the tables and the status, skip loading.
        log.info("sweep %s: all %d cells are done in %s", spec.name, total, out)
        if progress is not None:
            progress(done, total)
        previous["cells"] = {"done": done, "total": total}
        # Where the inputs are is not part of a run's identity; record where they are now.
        previous.setdefault("model", {})["path"] = portable_path(Path(bundle_path))
        if spec.path is not None:
            previous.setdefault("spec", {})["path"] = portable_path(Path(spec.path))
        _finish(out, previous, done, 0, started, t_start, complete=True)
        return out

    prep = prepare(spec, bundle_path, stage=stage_progress, selected=(index, indices))
    if prep.identity != identity:  # pragma: no cover - the files changed while loading
        raise DatasetError("The data or the model changed while the sweep was starting.")
    manifest = _manifest(prep, spec.path, started, previous)
    computed = 0
    manifest["cells"] = {"done": done, "total": total}
    atomic_write_text(out / MANIFEST, to_json(manifest, indent=1))
    if progress is not None:
        progress(done, total)
    log.info("sweep %s: %d cells (%d already done) in %s", spec.name, total, done, out)

    try:
        for attack, eps in groups:
            group = _table.group_name(attack.id if attack else None, eps)
            todo = [d for d in spec.defences if (group, d.key) not in done_before]
            if not todo:
                continue
            if attack is None:
                adv, attack_seconds = prep.x, 0.0
            else:
                adv, attack_seconds = attack_images(prep, attack, eps, stage_progress)
            pert = perturbation(prep.x, adv)
            for setting in todo:
                result = evaluate_cell(prep, adv, setting, stage=stage_progress)
                cell = {
                    "format": FORMAT,
                    "group": group,
                    "attack": attack.id if attack else None,
                    "eps": eps,
                    "attack_params": attack.params_at(eps) if attack else None,
                    "attack_seconds": attack_seconds,
                    "defence": setting.id,
                    "defence_key": setting.key,
                    "defence_label": setting.label,
                    "defence_params": setting.spec,
                    "threat_model": THREAT_TRANSFER if attack else THREAT_CLEAN,
                    **pert,
                    **result,
                }
                atomic_write_text(_table.cell_file(out, group, setting.key), to_json(cell))
                done += 1
                computed += 1
                if progress is not None:
                    progress(done, total)
            manifest["rows"] = _table.write_outputs(out, manifest)
            manifest["cells"]["done"] = done
            atomic_write_text(out / MANIFEST, to_json(manifest, indent=1))
    except BaseException:
        # Keep what is finished readable (Ctrl-C, or an error in a later cell).
        _finish(out, manifest, done, computed, started, t_start, complete=False)
        raise
    _finish(out, manifest, done, computed, started, t_start, complete=done == total)
    return out


def _finish(
    out: Path,
    manifest: dict[str, Any],
    done: int,
    computed: int,
    started: str,
    t_start: float,
    *,
    complete: bool,
) -> None:
    elapsed = time.perf_counter() - t_start
    ended = _now()
    manifest["rows"] = _table.write_outputs(out, manifest)
    manifest["cells"]["done"] = done
    manifest["status"] = "complete" if complete else "partial"
    manifest["ended"] = ended
    manifest["elapsed_s"] = round(float(manifest["elapsed_s"]) + elapsed, 3)
    manifest["runs"].append(
        {
            "started": started,
            "ended": ended,
            "elapsed_s": round(elapsed, 3),
            "cells_computed": computed,
            "status": manifest["status"],
        }
    )
    atomic_write_text(out / MANIFEST, to_json(manifest, indent=1))
