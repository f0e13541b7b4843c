"""The manifest of a results folder: how a sweep was made, and what must match to reuse it.

``manifest.json`` is the provenance of a sweep (house rule 10; its fields are
listed in :mod:`engine.evaluation`). Two parts of it decide what a later run
may do with the folder:

* the **identity**: what every cell depends on (the model, the data and the
  image subset, the engine version, the attack batch size, and the spec's
  seed and per-image subset). A run with another identity is refused;
* the **spec's settings** (:func:`spec_settings`): what the numbers depend on.
  Comments, layout, the spec's name and its description are not settings, so
  editing them leaves the results fresh (:func:`spec_changes`).

Format 2 (this engine) keeps the finished cells in the tables and the per-image
records in ``per_image.csv.gz``; format 1 also kept a ``cells/`` copy of every
row and an uncompressed ``per_image.csv``. Both are read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import engine
from engine import datasets as ds
from engine.bundle import BUNDLE_MODEL, BundleMeta, file_sha256
from engine.errors import ParamError
from engine.evaluation import _table
from engine.evaluation._io import canonical, git_info, machine_info, portable_path
from engine.evaluation.spec import SweepSpec, parse_spec
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

if TYPE_CHECKING:
    from engine.evaluation.cell import Prepared

__all__ = [
    "FORMAT",
    "build_manifest",
    "differences",
    "identity_of",
    "record_run",
    "recorded_identity",
    "recorded_spec",
    "refreshed",
    "spec_changes",
    "spec_record",
    "spec_settings",
]

#: Manifest format version (1: tables plus a ``cells/`` copy of every row).
FORMAT = 2


def spec_settings(spec: SweepSpec) -> dict[str, Any]:
    """What a spec makes a sweep compute, as plain data: the split, seed, image limit,
    per-image subset, each attack's budgets with its full parameters at each, each
    defence setting's key and parameters, in order, and the ``[[adaptive]]`` entries."""
    return {
        "split": spec.split,
        "seed": spec.seed,
        "limit": spec.limit,
        "per_image": spec.per_image,
        "attacks": [
            {"id": a.id, "eps": list(a.eps), "params": [a.params_at(e) for e in a.eps]}
            for a in spec.attacks
        ],
        "defences": [{"key": d.key, "params": d.spec} for d in spec.defences],
        "adaptive": [entry.record() for entry in spec.adaptive],
    }


def spec_changes(recorded: SweepSpec, current: SweepSpec) -> list[str]:
    """The settings (keys of :func:`spec_settings`) in which two specs differ."""
    old, new = spec_settings(recorded), spec_settings(current)
    return [key for key in old if canonical(old[key]) != canonical(new[key])]


def _spec_base(spec: SweepSpec) -> dict[str, Any]:
    """The spec's part of the identity: settings every cell depends on."""
    return {"seed": spec.seed, "per_image": spec.per_image}


def spec_record(spec: SweepSpec) -> dict[str, Any]:
    """The manifest's ``spec`` entry: name, description, path, SHA-256 and full text."""
    return {
        "name": spec.name,
        "description": spec.description,
        "path": portable_path(spec.path) if spec.path else None,
        "sha256": spec.sha256,
        "text": spec.text,
    }


def recorded_spec(manifest: Mapping[str, Any]) -> SweepSpec:
    """The spec a manifest records, parsed (:class:`ParamError` when it no longer parses)."""
    spec = manifest["spec"]
    return parse_spec(spec["text"], source=spec.get("path") or "<spec>")


def identity_of(
    spec: SweepSpec, meta: BundleMeta, index: ds.SplitIndex, indices: np.ndarray, batch_size: int
) -> dict[str, Any]:
    """What must match for finished cells to be reused: model, data, engine, the spec's seed
    and per-image subset."""
    return {
        "spec": _spec_base(spec),
        "model_sha256": meta.model_sha256,
        "dataset_id": meta.dataset_id,
        "split": spec.split,
        "split_fingerprint": index.fingerprint,
        "indices_sha256": hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest(),
        "engine_version": engine.__version__,
        "attack_batch_size": batch_size,
    }


def recorded_identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a recorded sweep, as :func:`identity_of` gives it (format 1 included:
    its ``spec_sha256`` is replaced by the recorded spec's settings)."""
    identity = dict(manifest.get("identity", {}))
    identity.pop("spec_sha256", None)
    try:
        identity["spec"] = _spec_base(recorded_spec(manifest))
    except (KeyError, ParamError):
        identity["spec"] = None  # differs from any spec that parses
    return identity


_NAMES = {
    "spec": "the spec",
    "model_sha256": "the model",
    "dataset_id": "the dataset",
    "split": "the split",
    "split_fingerprint": "the split's files",
    "indices_sha256": "the image subset (--limit)",
    "engine_version": "the engine version",
    "attack_batch_size": "the attack batch size",
}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why two identities differ, one phrase per part (empty when they match)."""
    out = []
    for key, what in _NAMES.items():
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed = [k for k in b if a.get(k) != b[k]]
            shown = ", ".join(f"{k} {a.get(k)} there, {b[k]} now" for k in changed)
        elif key.endswith(("sha256", "fingerprint")):
            shown = f"{str(a)[:12]} there, {str(b)[:12]} now"
        else:
            shown = f"{a} there, {b} now"
        out.append(f"{what} differs ({shown})")
    return out


def build_manifest(
    prep: Prepared, started: str, previous: Mapping[str, Any] | None, total: int
) -> dict[str, Any]:
    """A new run's manifest (status ``"partial"``), continuing ``previous`` when resuming."""
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
        "spec": spec_record(spec),
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
            "adaptive": {e.id: e.options.eot_seed for e in spec.adaptive},
        },
        "attack_batch_size": prep.identity["attack_batch_size"],
        "threat_models": {
            "clean": THREAT_CLEAN,
            "attacked": THREAT_TRANSFER,
            "adaptive": [
                {
                    **entry.record(),
                    "labels": {k: entry.label(spec.defence(k).defence) for k in entry.defences},
                }
                for entry in spec.adaptive
            ],
        },
        "identity": prep.identity,
        "cells": {"done": 0, "total": total},
        "rows": 0,
        "started": previous.get("started", started) if previous else started,
        "ended": None,
        "elapsed_s": float(previous.get("elapsed_s", 0.0)) if previous else 0.0,
        "runs": list(previous.get("runs", [])) if previous else [],
        "machine": machine_info(),
        "columns": list(_table.COLUMNS),
        "per_image_columns": list(_table.PER_IMAGE_COLUMNS),
    }


def refreshed(
    previous: Mapping[str, Any],
    spec: SweepSpec,
    identity: Mapping[str, Any],
    bundle_path: Path,
    total: int,
) -> dict[str, Any]:
    """The manifest of a finished sweep opened again with nothing to compute: now in this
    format, recording the spec it was opened with and where the model is now (where the
    inputs are is not part of a run's identity)."""
    manifest = dict(previous)
    spec_entry = spec_record(spec)
    if spec_entry["path"] is None:
        spec_entry["path"] = previous.get("spec", {}).get("path")
    manifest.update(
        format=FORMAT,
        spec=spec_entry,
        identity=dict(identity),
        model={**previous.get("model", {}), "path": portable_path(bundle_path)},
        cells={"done": total, "total": total},
        runs=list(previous.get("runs", [])),
    )
    return manifest


def record_run(
    manifest: dict[str, Any],
    *,
    started: str,
    ended: str,
    elapsed: float,
    computed: int,
    complete: bool,
    note: str | None = None,
) -> None:
    """Close a run in ``manifest``: its status, end time, total time and run record."""
    manifest["status"] = "complete" if complete else "partial"
    manifest["ended"] = ended
    manifest["elapsed_s"] = round(float(manifest["elapsed_s"]) + elapsed, 3)
    run: dict[str, Any] = {
        "started": started,
        "ended": ended,
        "elapsed_s": round(elapsed, 3),
        "cells_computed": computed,
        "status": manifest["status"],
    }
    if note:
        run["note"] = note
    manifest["runs"].append(run)
