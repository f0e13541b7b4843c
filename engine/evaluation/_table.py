"""From finished cells to the two tidy tables, ``results.csv`` and ``per_image.csv``.

Each finished cell is one small JSON file under ``DIR/cells/`` (see
:mod:`engine.evaluation.sweep`); the tables are rebuilt from them, so they can
always be regenerated and never disagree with the cells.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from engine import metrics
from engine.evaluation._io import CELLS, PER_IMAGE, RESULTS, atomic_write_text, read_json, to_json
from engine.evaluation.spec import SweepSpec, parse_spec

log = logging.getLogger(__name__)

CLEAN_GROUP = "clean"

#: Columns before the metrics of :func:`engine.metrics.summarize`.
ID_COLUMNS = (
    "dataset",
    "split",
    "model",
    "backbone",
    "attack",
    "attack_params",
    "eps",
    "defence",
    "defence_key",
    "defence_label",
    "defence_params",
    "threat_model",
)
#: Keys of :func:`engine.metrics.summarize`, in its order.
METRIC_COLUMNS = metrics.SUMMARY_KEYS
#: Image-distance and timing columns after the metrics.
EXTRA_COLUMNS = (
    "pert_l2_mean",
    "pert_l2_max",
    "pert_linf_mean",
    "pert_linf_max",
    "psnr_mean",
    "ssim_mean",
    "seconds",
    "attack_seconds",
)
COLUMNS = ID_COLUMNS + METRIC_COLUMNS + EXTRA_COLUMNS
#: Columns holding JSON text in the CSV (lists, dicts, or ``null``).
JSON_COLUMNS = (
    "attack_params",
    "defence_params",
    "recall_per_class",
    "specificity_per_class",
    "confusion",
    "confusion_binary",
)
#: Columns that vary from run to run (wall-clock times); never compared.
TIMING_COLUMNS = ("seconds", "attack_seconds")

PER_IMAGE_COLUMNS = (
    "image_index",
    "ref",
    "true_label",
    "attack",
    "eps",
    "defence",
    "defence_key",
    "pred",
    "correct",
    "confidence",
    "true_confidence",
)


def group_name(attack_id: str | None, eps: float) -> str:
    """``"clean"`` for ``eps == 0``, else ``"ATTACK@EPS"`` (e.g. ``"fgsm@4"``)."""
    if eps == 0 or attack_id is None:
        return CLEAN_GROUP
    return f"{attack_id}@{eps:g}"


def read_cells(out_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every finished cell under ``out_dir/cells``, keyed by ``(group, defence_key)``."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    folder = out_dir / CELLS
    if not folder.is_dir():
        return cells
    for path in sorted(folder.glob("*.json")):
        cell = read_json(path)
        cells[(cell["group"], cell["defence_key"])] = cell
    return cells


def _rows(
    spec: SweepSpec, cells: dict[tuple[str, str], dict[str, Any]], manifest: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    model = manifest["model"]
    data = manifest["data"]
    sub = data["per_image"]
    rows: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    for attack in spec.attacks:
        for eps in attack.eps:
            group = group_name(attack.id, eps)
            for setting in spec.defences:
                cell = cells.get((group, setting.key))
                if cell is None:
                    continue
                row: dict[str, Any] = {
                    "dataset": data["dataset_id"],
                    "split": data["split"],
                    "model": model["id"],
                    "backbone": model["backbone"],
                    "attack": attack.id,
                    "attack_params": cell["attack_params"] or {"eps": 0.0},
                    "eps": eps,
                    "defence": cell["defence"],
                    "defence_key": cell["defence_key"],
                    "defence_label": cell["defence_label"],
                    "defence_params": cell["defence_params"],
                    "threat_model": cell["threat_model"],
                }
                row.update({k: cell["metrics"][k] for k in METRIC_COLUMNS})
                row.update({k: cell[k] for k in EXTRA_COLUMNS})
                rows.append(row)
                pi = cell["per_image"]
                for pos, idx, ref, label in zip(
                    sub["positions"], sub["indices"], sub["refs"], sub["labels"], strict=True
                ):
                    per_image.append(
                        {
                            "image_index": idx,
                            "ref": ref,
                            "true_label": label,
                            "attack": attack.id,
                            "eps": eps,
                            "defence": cell["defence"],
                            "defence_key": cell["defence_key"],
                            "pred": pi["pred"][pos],
                            "correct": pi["pred"][pos] == label,
                            "confidence": pi["confidence"][pos],
                            "true_confidence": pi["true_confidence"][pos],
                        }
                    )
    return rows, per_image


def write_outputs(out_dir: Path, manifest: dict[str, Any]) -> int:
    """Rebuild ``results.csv`` and ``per_image.csv`` from the cells, atomically.

    Parameters
    ----------
    out_dir : Path
        The sweep's output folder.
    manifest : dict
        The run's manifest (spec text, model and data descriptions).

    Returns
    -------
    int
        Number of rows written to ``results.csv``.
    """
    spec = parse_spec(manifest["spec"]["text"], source=manifest["spec"].get("path") or "<spec>")
    rows, per_image = _rows(spec, read_cells(out_dir), manifest)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in JSON_COLUMNS:
        table[col] = [to_json(v) for v in table[col]]
    atomic_write_text(out_dir / RESULTS, _csv(table))
    atomic_write_text(out_dir / PER_IMAGE, _csv(pd.DataFrame(per_image, columns=PER_IMAGE_COLUMNS)))
    return len(rows)


def _csv(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def decode_json_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Parse the :data:`JSON_COLUMNS` of a results table read with plain pandas."""
    import json

    out = frame.copy()
    for col in JSON_COLUMNS:
        if col in out:
            out[col] = [
                None if (isinstance(v, float) and math.isnan(v)) else json.loads(v)
                for v in out[col]
            ]
    return out


def cell_file(out_dir: Path, group: str, defence_key: str) -> Path:
    """Path of one cell's JSON file (a readable, filesystem-safe, unique name)."""
    import hashlib
    import re

    def safe(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9=.,+_-]", "_", s)[:80]

    digest = hashlib.sha1(f"{group}|{defence_key}".encode()).hexdigest()[:8]
    return out_dir / CELLS / f"{safe(group)}__{safe(defence_key)}-{digest}.json"


__all__ = [
    "CLEAN_GROUP",
    "COLUMNS",
    "JSON_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "TIMING_COLUMNS",
    "cell_file",
    "decode_json_columns",
    "group_name",
    "read_cells",
    "write_outputs",
]
