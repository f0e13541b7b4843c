"""The two tidy tables of a sweep, ``results.csv`` and ``per_image.csv.gz``: columns, writing,
and reading back exactly.

A finished cell is a :class:`Cell`: its row of ``results.csv`` (less the
columns that name the attack row) and its per-image predictions. The tables
are written from the finished cells in spec order; :func:`read_exact` reads
them back value for value (floats bit for bit, JSON columns decoded), so a
finished table is itself the journal of its cells (:mod:`engine.evaluation.journal`).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine import metrics
from engine.evaluation._io import PER_IMAGE, PER_IMAGE_LEGACY, RESULTS, atomic_write_bytes, to_json
from engine.evaluation.spec import AttackSetting, DefenceSetting, SweepSpec
from engine.evaluation.threats import AdaptiveSetting
from engine.threat import ADAPTIVE, TRANSFER

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
#: Columns that name the row rather than the cell: the clean cell is one cell,
#: repeated as a row for every attack that lists ``eps = 0``.
ROW_COLUMNS = ("dataset", "split", "model", "backbone", "attack", "eps")
#: What a :class:`Cell` holds of its row.
CELL_COLUMNS = tuple(c for c in COLUMNS if c not in ROW_COLUMNS)
#: Text columns of ``results.csv`` (never read as numbers).
TEXT_COLUMNS = tuple(c for c in ID_COLUMNS if c != "eps")

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
    "threat_model",
)
#: Text columns of ``per_image.csv.gz`` (a table without ``threat_model`` is all-transfer).
PER_IMAGE_TEXT_COLUMNS = ("ref", "attack", "defence", "defence_key", "threat_model")

#: One image's record in a cell: predicted class, its probability, the true class's.
Record = tuple[int, float, float]


@dataclass
class Cell:
    """One finished cell ``(group, defence setting)``.

    Attributes
    ----------
    values : dict
        Its row of ``results.csv`` for :data:`CELL_COLUMNS` (JSON columns decoded).
    records : dict
        Image position in the run -> :data:`Record`: every image for a cell of
        the running journal, the per-image subset for a cell read from the tables.
    """

    values: dict[str, Any]
    records: dict[int, Record]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Cell:
        """The cell of one journal record (a cell file's JSON, as the sweep writes it)."""
        values = {
            "attack_params": record["attack_params"] or {"eps": 0.0},
            **{k: record[k] for k in CELL_COLUMNS if k.startswith(("defence", "threat"))},
            **{k: record["metrics"][k] for k in METRIC_COLUMNS},
            **{k: record[k] for k in EXTRA_COLUMNS},
        }
        pi = record["per_image"]
        triples = zip(pi["pred"], pi["confidence"], pi["true_confidence"], strict=True)
        return cls(values, {pos: (p, c, t) for pos, (p, c, t) in enumerate(triples)})


#: Finished cells keyed by ``(group, defence_key)``.
Journal = dict[tuple[str, str], Cell]


def group_name(attack_id: str | None, eps: float, threat: str = TRANSFER.id) -> str:
    """``"clean"`` for ``eps == 0``, else ``"ATTACK@EPS"`` (e.g. ``"fgsm@4"``) for the transfer
    cells and ``"THREAT/ATTACK@EPS"`` for others (``"adaptive/pgd@8"``)."""
    if eps == 0 or attack_id is None:
        return CLEAN_GROUP
    name = f"{attack_id}@{eps:g}"
    return name if threat == TRANSFER.id else f"{threat}/{name}"


#: One row of a spec's table: attack, budget, setting, and the adaptive entry (``None``
#: for a transfer or clean row).
Row = tuple[AttackSetting, float, DefenceSetting, AdaptiveSetting | None]


def spec_rows(spec: SweepSpec) -> Iterator[Row]:
    """The rows of a spec's table, in table order: the transfer and clean rows (attack, then
    budget, then defence), then each ``[[adaptive]]`` entry's (budget, then defence)."""
    for attack in spec.attacks:
        for eps in attack.eps:
            for setting in spec.defences:
                yield attack, eps, setting, None
    for entry in spec.adaptive:
        for eps in entry.eps:
            for key in entry.defences:
                yield entry.attack, eps, spec.defence(key), entry


def row_group(row: Row) -> str:
    """The cell (group) a row of :func:`spec_rows` belongs to."""
    attack, eps, _, entry = row
    return group_name(attack.id, eps, TRANSFER.id if entry is None else ADAPTIVE.id)


def row_params(row: Row) -> dict[str, Any]:
    """The full parameters of a row's attack (an adaptive cell's include its EOT settings)."""
    attack, eps, setting, entry = row
    return attack.params_at(eps) if entry is None else entry.params_at(eps, setting)


def build_tables(
    spec: SweepSpec, journal: Journal, manifest: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results`` and ``per_image`` frames of the finished cells, in spec order (JSON columns
    as Python values)."""
    model, data = manifest["model"], manifest["data"]
    sub = data["per_image"]
    subset = list(zip(sub["positions"], sub["indices"], sub["refs"], sub["labels"], strict=True))
    rows: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    for row in spec_rows(spec):
        attack, eps, setting, _ = row
        cell = journal.get((row_group(row), setting.key))
        if cell is None:
            continue
        v = cell.values
        rows.append(
            {
                "dataset": data["dataset_id"],
                "split": data["split"],
                "model": model["id"],
                "backbone": model["backbone"],
                "attack": attack.id,
                "eps": eps,
                **v,
            }
        )
        for pos, idx, ref, label in subset:
            pred, confidence, true_confidence = cell.records[pos]
            per_image.append(
                {
                    "image_index": idx,
                    "ref": ref,
                    "true_label": label,
                    "attack": attack.id,
                    "eps": eps,
                    "defence": v["defence"],
                    "defence_key": v["defence_key"],
                    "pred": pred,
                    "correct": pred == label,
                    "confidence": confidence,
                    "true_confidence": true_confidence,
                    "threat_model": v["threat_model"],
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS)), pd.DataFrame(
        per_image, columns=list(PER_IMAGE_COLUMNS)
    )


def write_tables(
    out_dir: Path, spec: SweepSpec, journal: Journal, manifest: Mapping[str, Any]
) -> int:
    """Write ``results.csv`` and ``per_image.csv.gz`` of the finished cells, atomically.

    The per-image table is written first, so a ``results.csv`` row always has
    its per-image records. A format-1 ``per_image.csv`` is removed.

    Returns
    -------
    int
        Number of rows of ``results.csv``.
    """
    table, per_image = build_tables(spec, journal, manifest)
    for col in JSON_COLUMNS:
        table[col] = [to_json(v) for v in table[col]]
    atomic_write_bytes(out_dir / PER_IMAGE, gzip.compress(_csv(per_image), mtime=0))
    atomic_write_bytes(out_dir / RESULTS, _csv(table))
    (out_dir / PER_IMAGE_LEGACY).unlink(missing_ok=True)
    return len(table)


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def per_image_file(out_dir: str | Path) -> Path:
    """The per-image table of a results folder: ``per_image.csv.gz``, or a format-1
    folder's ``per_image.csv`` when only that exists."""
    out = Path(out_dir)
    legacy = out / PER_IMAGE_LEGACY
    return legacy if legacy.is_file() and not (out / PER_IMAGE).is_file() else out / PER_IMAGE


_INT = re.compile(r"-?[0-9]+")


def read_exact(path: Path, text_columns: Collection[str]) -> list[dict[str, Any]]:
    """The rows of a table this module wrote, every value as it was before writing.

    ``pandas.read_csv`` is not used for the numbers (its fast float parser may
    differ from the written value in the last bit, depending on the pandas
    version): every cell is read as text and converted with Python's exact
    parsers. :data:`JSON_COLUMNS` are decoded (``null`` -> ``None``), the
    ``text_columns`` kept as text, and every other column is integers, booleans
    or floats (an empty field is NaN), judged by the whole column.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        texts = [str(t) for t in frame[name]]
        if name in JSON_COLUMNS:
            columns[name] = [json.loads(t) if t else None for t in texts]
        elif name in text_columns:
            columns[name] = texts
        elif texts and all(t in ("True", "False") for t in texts):
            columns[name] = [t == "True" for t in texts]
        elif all(_INT.fullmatch(t) for t in texts):
            columns[name] = [int(t) for t in texts]
        else:
            columns[name] = [float(t) if t else math.nan for t in texts]
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def decode_json_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Parse the :data:`JSON_COLUMNS` of a results table read with plain pandas."""
    out = frame.copy()
    for col in JSON_COLUMNS:
        if col in out:
            out[col] = [
                None if (isinstance(v, float) and math.isnan(v)) else json.loads(v)
                for v in out[col]
            ]
    return out


__all__ = [
    "CELL_COLUMNS",
    "CLEAN_GROUP",
    "COLUMNS",
    "JSON_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "TIMING_COLUMNS",
    "Cell",
    "Journal",
    "Row",
    "build_tables",
    "decode_json_columns",
    "group_name",
    "per_image_file",
    "read_exact",
    "row_group",
    "row_params",
    "spec_rows",
    "write_tables",
]
