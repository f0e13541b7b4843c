"""Where datasets live: the data roots, finding a dataset's folder, and listing its files."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from engine.datasets.spec import DatasetSpec
from engine.errors import DatasetError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
)
"""File name endings (lower case) read as images inside dataset folders."""

ENV_VAR = "ROBUSTLENS_DATA"
"""Environment variable naming extra data roots (``os.pathsep``-separated)."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIBLING_DATA = PROJECT_ROOT.parent / "shared" / "data"
"""The project's sibling data folder, searched when it exists."""
CACHE_DIR = Path("~/.cache/robustlens/data")
"""The per-user data folder, always searched last."""


# --------------------------------------------------------------------------- locating data


def data_roots(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for datasets, in order.

    1. ``explicit``, when given;
    2. each folder in the ``ROBUSTLENS_DATA`` environment variable
       (``os.pathsep``-separated);
    3. the project's sibling ``../shared/data``, when it exists;
    4. the per-user cache folder ``~/.cache/robustlens/data``.

    Parameters
    ----------
    explicit : str or os.PathLike, optional
        A data root to search first.

    Returns
    -------
    list of pathlib.Path
        Without duplicates; the folders need not exist.
    """
    roots: list[Path] = []
    if explicit is not None:
        roots.append(Path(explicit).expanduser())
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser())
    if SIBLING_DATA.is_dir():
        roots.append(SIBLING_DATA)
    roots.append(Path(CACHE_DIR).expanduser())
    seen: set[Path] = set()
    unique = []
    for r in roots:
        key = r.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def _candidates(spec: DatasetSpec, root: str | os.PathLike | None) -> list[Path]:
    out: list[Path] = []
    for r in data_roots(root):
        if r.name in spec.folder_names:
            out.append(r)
        out.extend(r / name for name in spec.folder_names)
    unique: list[Path] = []
    for path in out:
        if path.absolute() not in {u.absolute() for u in unique}:
            unique.append(path)
    return unique


def find_dataset_dir(spec: DatasetSpec, root: str | os.PathLike | None = None) -> Path:
    """The folder holding a dataset.

    Parameters
    ----------
    spec : DatasetSpec
        The dataset.
    root : str or os.PathLike, optional
        A data root to search before the others (see :func:`data_roots`). A
        root that is itself named like the dataset's folder is accepted too.

    Returns
    -------
    pathlib.Path
        The first existing candidate folder.

    Raises
    ------
    DatasetError
        When no candidate exists; the message lists every place looked and
        how to get the data.
    """
    if spec.generated:
        raise DatasetError(f"dataset {spec.id} is generated in code; it has no folder")
    looked = _candidates(spec, root)
    for path in looked:
        if path.is_dir():
            return path
    raise DatasetError(missing_message(spec, looked))


def missing_message(spec: DatasetSpec, looked: Sequence[Path]) -> str:
    """The message for a dataset that was not found."""
    places = "\n".join(f"  - {p}" for p in looked)
    return (
        f"Dataset '{spec.id}' ({spec.title}) was not found. Looked for a folder in:\n"
        f"{places}\n"
        f"How to get it:\n{spec.how_to_get}\n"
        f"Then put the folder in one of the places above, or set the {ENV_VAR} "
        f"environment variable to the folder that holds it."
    )


# --------------------------------------------------------------------------- folders


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden files skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


def subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DatasetError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None
    return sorted(
        (
            Path(e.path)
            for e in entries
            if e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX"
        ),
        key=lambda p: p.name,
    )


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of stripped strings, checking the columns.

    Raises
    ------
    DatasetError
        If the file is missing or unreadable, or lacks a required column.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [
                {k: (v or "").strip() for k, v in row.items() if isinstance(v, str | None)}
                for row in reader
            ]
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(
            f"{path.name} lacks the column(s) {', '.join(missing)}; expected at "
            f"least {', '.join(required)} (found: {', '.join(header) or 'no header'})"
        )
    return rows


def image_files(directory: Path, folders: Sequence[str]) -> dict[str, str]:
    """File stem -> ref (path relative to ``directory``) of the images in ``folders``.

    Only the named sub-folders themselves are listed (not recursively); ``"."``
    is ``directory`` itself. The first file found for a stem wins.
    """
    found: dict[str, str] = {}
    base = directory.resolve()
    for name in folders:
        folder = base / name  # pathlib drops a "." component
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            stem, suffix = os.path.splitext(entry.name)
            if entry.is_file() and suffix.lower() in IMAGE_SUFFIXES and stem not in found:
                found[stem] = relative(Path(entry.path), base)
    return found


def relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base``, ``/``-separated (a portable ref)."""
    return path.relative_to(base).as_posix()
