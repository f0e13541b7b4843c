"""The resume journal of a sweep: its finished cells, in cell files while it runs, in its
tables once it is complete.

While a sweep runs, each finished cell is written at once, atomically, as one JSON
file under ``DIR/cells/`` with every image's prediction, so a run killed at any
moment loses at most the cell in progress. When the sweep completes, the cells
are folded into ``results.csv`` and ``per_image.csv.gz`` and ``cells/`` is
removed: the tables are then the journal. :func:`read_journal` reads the finished
cells back exactly from both, so an interrupted sweep resumes, a finished one
can be extended (a spec with more budgets or defences, same model and data), and
:func:`engine.evaluation.reproduce_cell` compares a recomputed cell with what is
stored.

A format-1 folder (the tables plus a ``cells/`` copy of every row, and an
uncompressed ``per_image.csv``) reads the same; the next sweep that opens it
converts it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.evaluation._io import (
    CELLS,
    MANIFEST,
    PER_IMAGE,
    PER_IMAGE_LEGACY,
    RESULTS,
    atomic_write_text,
    canonical,
    read_json,
    to_json,
)
from engine.evaluation._table import (
    CELL_COLUMNS,
    PER_IMAGE_TEXT_COLUMNS,
    TEXT_COLUMNS,
    Cell,
    Journal,
    Record,
    group_name,
    per_image_file,
    read_exact,
    row_group,
    row_params,
    spec_rows,
)
from engine.evaluation.spec import SweepSpec
from engine.evaluation.threats import threat_of

__all__ = [
    "cell_file",
    "clear",
    "conflicts",
    "has_cell_files",
    "read_journal",
    "remove_cell_files",
    "write_cell",
]


def cell_file(out_dir: Path, group: str, defence_key: str) -> Path:
    """Path of one cell's journal file (a readable, filesystem-safe, unique name)."""

    def safe(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9=.,+_-]", "_", s)[:80]

    digest = hashlib.sha1(f"{group}|{defence_key}".encode()).hexdigest()[:8]
    return out_dir / CELLS / f"{safe(group)}__{safe(defence_key)}-{digest}.json"


def write_cell(out_dir: Path, record: Mapping[str, Any]) -> Cell:
    """Journal one finished cell (atomically) and return it as a :class:`Cell`.

    ``record`` holds ``group``, the cell's row values, ``metrics`` and
    ``per_image`` (every image's ``pred``, ``confidence``, ``true_confidence``).
    """
    atomic_write_text(cell_file(out_dir, record["group"], record["defence_key"]), to_json(record))
    return Cell.from_record(record)


def has_cell_files(out_dir: Path) -> bool:
    """Whether ``out_dir/cells`` holds journal files."""
    folder = out_dir / CELLS
    return folder.is_dir() and any(folder.glob("*.json"))


def read_journal(out_dir: Path, manifest: Mapping[str, Any]) -> Journal:
    """Every finished cell of a results folder, keyed by ``(group, defence_key)`` (the group
    names the threat model of an adaptive cell: ``"adaptive/pgd@8"``).

    Parameters
    ----------
    out_dir : Path
        A results folder, complete (its tables), running or interrupted (its
        tables and ``cells/``), of format 1 or 2.
    manifest : dict
        Its manifest (the per-image subset maps table rows to image positions).

    Returns
    -------
    dict
        A cell of a journal file holds every image's record; a cell of the
        tables the per-image subset's. A table row without all its per-image
        records (a hand-edited folder) counts as not finished.

    Raises
    ------
    EngineError
        ``results.csv`` lacks columns a cell needs.
    """
    journal = _from_tables(out_dir, manifest)
    folder = out_dir / CELLS
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            record = read_json(path)
            journal[(record["group"], record["defence_key"])] = Cell.from_record(record)
    return journal


def _from_tables(out_dir: Path, manifest: Mapping[str, Any]) -> Journal:
    if not (out_dir / RESULTS).is_file():
        return {}
    rows = read_exact(out_dir / RESULTS, TEXT_COLUMNS)
    missing = [c for c in CELL_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise EngineError(f"{out_dir / RESULTS} lacks the column(s) {', '.join(missing)}.")
    sub = manifest["data"]["per_image"]
    position = dict(zip(sub["indices"], sub["positions"], strict=True))
    wanted = set(sub["positions"])
    records: dict[tuple[str, str], dict[int, Record]] = {}
    path = per_image_file(out_dir)
    for r in read_exact(path, PER_IMAGE_TEXT_COLUMNS) if path.is_file() else []:
        pos = position.get(r["image_index"])
        if pos is not None:
            cell_records = records.setdefault(_key(r), {})
            cell_records[pos] = (r["pred"], r["confidence"], r["true_confidence"])
    journal: Journal = {}
    for row in rows:
        key = _key(row)
        found = records.get(key, {})
        if key not in journal and wanted <= set(found):
            journal[key] = Cell({c: row[c] for c in CELL_COLUMNS}, found)
    return journal


def _key(row: Mapping[str, Any]) -> tuple[str, str]:
    """The cell of a table row: its group (with its threat model) and its defence key.

    A row without ``threat_model`` (a per-image table made before adaptive
    cells existed) is a transfer row, or the clean one at ``eps = 0``.
    """
    threat = threat_of(row.get("threat_model"), row["eps"])
    return group_name(row["attack"], row["eps"], threat), row["defence_key"]


def conflicts(spec: SweepSpec, journal: Journal) -> list[str]:
    """Why the finished cells of a folder do not all belong to ``spec`` (empty when they do).

    A spec may add budgets, attacks and defence settings to a finished sweep,
    or list them in another order; a finished cell it no longer lists, or lists
    with other parameters, would be lost or wrong.
    """
    wanted: dict[tuple[str, str], Any] = {}
    for row in spec_rows(spec):
        key = (row_group(row), row[2].key)
        if key not in wanted:
            wanted[key] = canonical([row_params(row), row[2].spec])
    dropped = [k for k in journal if k not in wanted]
    changed = [
        k
        for k, cell in journal.items()
        if k in wanted
        and canonical([cell.values["attack_params"], cell.values["defence_params"]]) != wanted[k]
    ]
    out = []
    for keys, what in ((dropped, "does not list"), (changed, "changes the parameters of")):
        if keys:
            more = ", ..." if len(keys) > 3 else ""
            shown = ", ".join(f"{g} / {d}" for g, d in keys[:3]) + more
            out.append(f"the spec {what} {len(keys)} finished cell(s) ({shown})")
    return out


def remove_cell_files(out_dir: Path) -> None:
    """Remove the journal files (and ``cells/`` when nothing else is in it)."""
    folder = out_dir / CELLS
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_file() and (p.suffix == ".json" or p.name.endswith(".tmp")):
            p.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def clear(out_dir: Path) -> None:
    """Remove the files of a sweep (and only those) from ``out_dir``."""
    remove_cell_files(out_dir)
    for name in (RESULTS, PER_IMAGE, PER_IMAGE_LEGACY, MANIFEST):
        (out_dir / name).unlink(missing_ok=True)
