"""Dataset specs, split indexes, data roots and the loaders' shared machinery.

A dataset is described by a :class:`DatasetSpec` (what it is, where to look for
it, how to get it, and a plain loader function). Loading it gives three
:class:`SplitIndex` objects, ``train``, ``val`` and ``test``: lists of item
references and integer labels, cheap to build, with a fingerprint that changes
whenever the list of items or any label changes. Pixels are only read by
:func:`load_arrays` (or :meth:`SplitIndex.image`), always as RGB uint8.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.errors import DatasetError, ImageError, ParamError
from engine.images import _check_size, decode_image, resize_image

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The three splits every dataset provides, in this order."""

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


class Reader(Protocol):
    """Turns one item reference of a split into an RGB uint8 image."""

    def __call__(self, ref: str) -> np.ndarray: ...


Loader = Callable[["DatasetSpec", "Path | None", int, Mapping[str, Path]], dict[str, "SplitIndex"]]
"""``loader(spec, directory, seed, part_dirs) -> {"train": ..., "val": ..., "test": ...}``."""


CHECKSUM_ALGORITHMS: dict[str, int] = {"md5": 32, "sha256": 64}
"""Checksum algorithms a :class:`RemoteFile` may name, with their hex digest lengths."""


@dataclass(frozen=True)
class RemoteFile:
    """A stable public file that holds a whole dataset, and its published checksum.

    Parameters
    ----------
    url : str
        Direct ``http(s)://`` link to the file.
    checksum : str
        ``"md5:<32 hex digits>"`` or ``"sha256:<64 hex digits>"``, exactly as the
        publisher gives it.
    filename : str
        Name of the file inside the dataset folder (where the loader reads it).
    page : str, default=""
        Human-readable landing page (record, DOI) to fetch the file by hand.
    """

    url: str
    checksum: str
    filename: str
    page: str = ""

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise ParamError(
                f"a download url must start with https:// or http://; got {self.url!r}"
            )
        algorithm, _, digest = self.checksum.partition(":")
        size = CHECKSUM_ALGORITHMS.get(algorithm)
        if size is None or len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
            raise ParamError(
                "a download checksum must be 'md5:<32 hex digits>' or 'sha256:<64 hex digits>' "
                f"(lower case); got {self.checksum!r}"
            )
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ParamError(
                f"a download filename must be a plain file name; got {self.filename!r}"
            )

    @property
    def algorithm(self) -> str:
        """``"md5"`` or ``"sha256"``."""
        return self.checksum.partition(":")[0]

    @property
    def digest(self) -> str:
        """The published hex digest (lower case)."""
        return self.checksum.partition(":")[2]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about a dataset before it is loaded.

    Parameters
    ----------
    id : str
        Registry key, e.g. ``"chest_xray"``.
    title : str
        Human-readable name.
    classes : tuple of str
        Class ids in label order; empty for folder datasets whose classes are
        discovered when loaded.
    loader : callable
        ``loader(spec, directory, seed, part_dirs)`` returning the three
        :class:`SplitIndex` objects. ``directory`` is ``None`` for generated
        datasets; ``part_dirs`` maps the ids of :attr:`parts` to their folders.
    positive : tuple of str, default=()
        The "sick" classes for patient-level metrics (sensitivity, NPV...);
        empty when the dataset is not medical.
    licence, attribution, description : str
        Shown wherever results computed from the dataset appear.
    caveat : str, default=""
        A known trap (shown prominently), or empty.
    folder_names : tuple of str, default=()
        Candidate folder names under a data root (absolute paths allowed).
    how_to_get : str
        Exact manual steps to obtain the data (source page, what to download,
        where to unpack it).
    class_titles : mapping, default={}
        Human-readable names for terse class ids (e.g. ``mel`` -> Melanoma).
    parts : tuple of DatasetSpec, default=()
        Other datasets whose folders this one is assembled from.
    seed : int, default=0
        Split seed used when :func:`load_splits` is given ``seed=None``.
    generated : bool, default=False
        True when the data is generated in code and needs no files.
    mirror_ok : bool, default=True
        Whether a left-right mirrored image is still a plausible sample (training
        augmentation). False for chest X-rays: the heart sits on the left.
    layout : str, default=""
        The folder layout the loader expects, as an indented tree (shown with
        the manual steps).
    download : RemoteFile, optional
        The stable public file that :func:`engine.datasets.download.download`
        fetches; ``None`` when the data can only be obtained by hand.
    """

    id: str
    title: str
    classes: tuple[str, ...]
    loader: Loader = field(repr=False, compare=False)
    positive: tuple[str, ...] = ()
    licence: str = ""
    attribution: str = ""
    description: str = ""
    caveat: str = ""
    folder_names: tuple[str, ...] = ()
    how_to_get: str = ""
    class_titles: Mapping[str, str] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )
    parts: tuple[DatasetSpec, ...] = ()
    seed: int = 0
    generated: bool = False
    mirror_ok: bool = True
    layout: str = ""
    download: RemoteFile | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ParamError("a dataset needs a non-empty id")
        if self.classes:
            unknown = [c for c in self.positive if c not in self.classes]
            if unknown:
                raise ParamError(
                    f"dataset {self.id}: positive class(es) {', '.join(unknown)} "
                    f"are not among its classes {', '.join(self.classes)}"
                )
        if not self.generated and not self.folder_names:
            raise ParamError(f"dataset {self.id}: give folder_names or set generated=True")
        if self.download is not None and self.generated:
            raise ParamError(f"dataset {self.id}: a generated dataset has nothing to download")

    @property
    def downloadable(self) -> bool:
        """True when ``python -m engine.datasets download`` can fetch the data itself."""
        return self.download is not None

    @property
    def medical(self) -> bool:
        """True when the dataset has "sick" classes (patient-level metrics apply)."""
        return bool(self.positive)

    def class_title(self, class_id: str) -> str:
        """Human-readable name of a class (the id itself when none is known)."""
        return self.class_titles.get(class_id, class_id)


@dataclass(frozen=True)
class FileReader:
    """Reads items stored as image files.

    Parameters
    ----------
    roots : tuple of (str, Path)
        ``(("", folder),)`` when refs are paths relative to one folder, or
        ``((prefix, folder), ...)`` when a ref's first path segment names the
        folder it lives in (for datasets assembled from several folders).
    """

    roots: tuple[tuple[str, Path], ...]

    def path(self, ref: str) -> Path:
        """Absolute path of the file behind ``ref``."""
        if len(self.roots) == 1 and self.roots[0][0] == "":
            return self.roots[0][1] / ref
        prefix, _, rest = ref.partition("/")
        for name, folder in self.roots:
            if name == prefix:
                return folder / rest
        raise DatasetError(f"reference {ref!r} names no known folder")

    def __call__(self, ref: str) -> np.ndarray:
        return decode_image(self.path(ref))


@dataclass(frozen=True, eq=False)
class SplitIndex:
    """One split of a dataset: item references and labels, no pixels.

    Build with :func:`make_index` (which computes the fingerprint). Picklable.

    Attributes
    ----------
    dataset_id, split : str
        Which dataset and split (``train``, ``val`` or ``test``).
    classes : tuple of str
        Class ids; ``labels`` index into it.
    refs : tuple of str
        One reference per item: a file path relative to the dataset folder
        (``/``-separated) or an id like ``"train:12"`` for array/generated data.
    labels : numpy.ndarray
        int64, read-only, one per item.
    fingerprint : str
        First 16 hex digits of a SHA-256 over the dataset id, the split, and
        the sorted ``"ref\\tclass"`` lines (plus, for array data, the archive's
        hash; for generated data, the generator version and seed). It changes
        when an item is added, removed, renamed or relabelled. (Replacing a
        file's content under the same name is not detected.)
    reader : Reader
        Turns a ref into an RGB uint8 image.
    groups : tuple of str or None
        Patient / lesion id per item where the data has one, else ``None``.
    """

    dataset_id: str
    split: str
    classes: tuple[str, ...]
    refs: tuple[str, ...]
    labels: np.ndarray
    fingerprint: str
    reader: Reader = field(repr=False)
    groups: tuple[str, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.refs)

    def __repr__(self) -> str:
        return (
            f"SplitIndex({self.dataset_id}/{self.split}: {len(self)} items, "
            f"{len(self.classes)} classes, fingerprint {self.fingerprint})"
        )

    def image(self, i: int) -> np.ndarray:
        """The ``i``-th item at full size, ``(H, W, 3)`` RGB uint8."""
        return self.read(self.refs[i])

    def read(self, ref: str) -> np.ndarray:
        """The item behind ``ref`` at full size, ``(H, W, 3)`` RGB uint8."""
        return self.reader(ref)

    def path(self, i: int) -> Path | None:
        """File path of the ``i``-th item, or ``None`` for array/generated data."""
        if isinstance(self.reader, FileReader):
            return self.reader.path(self.refs[i])
        return None

    def class_name(self, i: int) -> str:
        """Class id of the ``i``-th item."""
        return self.classes[int(self.labels[i])]


def fingerprint(
    dataset_id: str,
    split: str,
    refs: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    salt: str = "",
) -> str:
    """Short content hash of a split (see :class:`SplitIndex`)."""
    h = hashlib.sha256(f"{dataset_id}\n{split}\n{salt}\n".encode())
    lines = sorted(f"{r}\t{classes[int(y)]}" for r, y in zip(refs, labels, strict=True))
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def make_index(
    dataset_id: str,
    split: str,
    classes: Sequence[str],
    refs: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    reader: Reader,
    *,
    groups: Sequence[str] | None = None,
    salt: str = "",
) -> SplitIndex:
    """Build a :class:`SplitIndex`, checking lengths and label range."""
    classes = tuple(classes)
    refs = tuple(refs)
    arr = np.asarray(labels, dtype=np.int64).reshape(-1).copy()
    if arr.shape[0] != len(refs):
        raise DatasetError(f"{dataset_id}/{split}: {len(refs)} items but {arr.shape[0]} labels")
    if arr.size and (arr.min() < 0 or arr.max() >= len(classes)):
        raise DatasetError(
            f"{dataset_id}/{split}: labels must be in 0..{len(classes) - 1}; "
            f"got {arr.min()}..{arr.max()}"
        )
    if groups is not None:
        groups = tuple(groups)
        if len(groups) != len(refs):
            raise DatasetError(f"{dataset_id}/{split}: {len(refs)} items but {len(groups)} groups")
    arr.setflags(write=False)
    return SplitIndex(
        dataset_id=dataset_id,
        split=split,
        classes=classes,
        refs=refs,
        labels=arr,
        fingerprint=fingerprint(dataset_id, split, refs, arr, classes, salt),
        reader=reader,
        groups=groups,
    )


def class_counts(index: SplitIndex) -> dict[str, int]:
    """Number of items per class, in class order (zeros included).

    Parameters
    ----------
    index : SplitIndex
        The split.

    Returns
    -------
    dict of str to int
    """
    counts = np.bincount(index.labels, minlength=len(index.classes))
    return {c: int(n) for c, n in zip(index.classes, counts, strict=True)}


# --------------------------------------------------------------------------- splitting


def group_split(
    labels: Sequence[int] | np.ndarray,
    fractions: Sequence[float],
    seed: int,
    groups: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Seeded, approximately stratified split that never divides a group.

    Each group (patient, lesion; each item on its own when ``groups`` is
    None) is labelled with its most common label. Within each label the
    groups are shuffled and laid end to end; a group goes to the part in
    which the middle of its run of items falls. So every class is divided in
    about the given fractions, and a group lands in exactly one part.

    Parameters
    ----------
    labels : sequence of int
        Label per item.
    fractions : sequence of float
        Relative sizes of the parts, e.g. ``(0.7, 0.15, 0.15)``.
    seed : int
        Random seed; the result depends only on the inputs and the seed.
    groups : sequence of str, optional
        Group id per item.

    Returns
    -------
    list of numpy.ndarray
        Sorted int64 item indices, one array per part.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if groups is None:
        groups = [str(i) for i in range(len(labels))]
    if len(groups) != len(labels):
        raise ParamError("group_split: one group per label is needed")
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.ndim != 1 or frac.size < 1 or np.any(frac < 0) or frac.sum() <= 0:
        raise ParamError(f"group_split: fractions must be non-negative; got {list(fractions)}")
    bounds = np.cumsum(frac) / frac.sum()
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    by_label: dict[int, list[str]] = {}
    for g, idx in members.items():
        counts = Counter(int(labels[i]) for i in idx)
        top = min(counts, key=lambda y: (-counts[y], y))
        by_label.setdefault(top, []).append(g)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in frac]
    for y in sorted(by_label):
        names = sorted(by_label[y])
        order = rng.permutation(len(names))
        total = sum(len(members[g]) for g in names)
        pos = 0
        for k in order:
            g = names[k]
            size = len(members[g])
            mid = (pos + size / 2) / total
            part = min(int(np.searchsorted(bounds, mid, side="right")), len(parts) - 1)
            parts[part].extend(members[g])
            pos += size
    return [np.asarray(sorted(p), dtype=np.int64) for p in parts]


def subset_indices(labels: Sequence[int] | np.ndarray, limit: int, *, seed: int = 0) -> np.ndarray:
    """Seeded stratified subset of at most ``limit`` positions.

    Classes keep their proportions (largest-remainder rounding, every present
    class gets at least one item when ``limit`` allows). The chosen positions
    are returned sorted.

    Parameters
    ----------
    labels : sequence of int
        Label per item.
    limit : int
        Maximum number of items, >= 1.
    seed : int, default=0
        Random seed.

    Returns
    -------
    numpy.ndarray
        int64 positions into ``labels``.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ParamError(f"limit must be a positive integer; got {limit!r}")
    n = len(labels)
    if limit >= n:
        return np.arange(n, dtype=np.int64)
    present, counts = np.unique(labels, return_counts=True)
    quota = counts * (limit / n)
    take = np.floor(quota).astype(np.int64)
    if limit >= len(present):
        take = np.maximum(take, 1)
    while take.sum() > limit:  # the minimum of one may overshoot: trim the largest excess
        excess = np.where(take > 1, take - quota, -np.inf)
        take[np.argmax(excess)] -= 1
    remainder = quota - take
    for k in np.argsort(-remainder, kind="stable"):
        if take.sum() >= limit:
            break
        if take[k] < counts[k]:
            take[k] += 1
    rng = np.random.default_rng(seed)
    chosen = []
    for y, t in zip(present, take, strict=True):
        pos = np.flatnonzero(labels == y)
        chosen.append(rng.choice(pos, size=int(t), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


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


# --------------------------------------------------------------------------- pixels


def load_arrays(
    index: SplitIndex,
    size: int | tuple[int, int],
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    limit: int | None = None,
    seed: int = 0,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize items of a split into one batch.

    Parameters
    ----------
    index : SplitIndex
        The split.
    size : int or (int, int)
        Target ``(height, width)``; an int means square. Images are
        stretched (see :func:`engine.images.resize_image`).
    indices : sequence of int, optional
        Positions to load, in this order (default: all).
    limit : int, optional
        Keep at most this many of them: a seeded stratified subset (see
        :func:`subset_indices`), in their original order.
    seed : int, default=0
        Seed for ``limit``.
    workers : int, default=2
        Threads decoding in parallel (OpenCV and Pillow release the GIL);
        1 decodes in the calling thread.
    progress : callable, optional
        ``progress(done, total)``, called from the calling thread about 100
        times at most, and once at the end.

    Returns
    -------
    images : numpy.ndarray
        ``(N, height, width, 3)`` uint8 RGB.
    labels : numpy.ndarray
        ``(N,)`` int64.

    Raises
    ------
    ImageError
        If an item cannot be decoded (the message names the item).
    ParamError
        For an invalid size, index, limit or worker count.
    """
    height, width = _check_size(size)
    if indices is None:
        sel = np.arange(len(index), dtype=np.int64)
    else:
        sel = np.asarray(indices)
        if sel.ndim != 1 or (sel.size and not np.issubdtype(sel.dtype, np.integer)):
            raise ParamError("indices must be a 1-D sequence of integers")
        sel = sel.astype(np.int64)
        if sel.size and (sel.min() < -len(index) or sel.max() >= len(index)):
            raise ParamError(f"indices must be in 0..{len(index) - 1} for {index!r}")
        sel = sel % max(len(index), 1)
    if limit is not None:
        sel = sel[subset_indices(index.labels[sel], limit, seed=seed)]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParamError(f"workers must be a positive integer; got {workers!r}")
    total = len(sel)
    out = np.empty((total, height, width, 3), dtype=np.uint8)
    step = max(1, total // 100)

    def work(j: int) -> None:
        ref = index.refs[int(sel[j])]
        try:
            out[j] = resize_image(index.read(ref), (height, width))
        except ImageError as exc:
            raise ImageError(f"{index.dataset_id} item {ref}: {exc}") from exc

    def report(done: int) -> None:
        if progress is not None and (done % step == 0 or done == total):
            progress(done, total)

    if workers == 1 or total < 2:
        for j in range(total):
            work(j)
            report(j + 1)
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load_arrays")
        try:
            pending = {pool.submit(work, j) for j in range(total)}
            done_count = 0
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    fut.result()  # re-raises a worker's error here
                    done_count += 1
                    report(done_count)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if progress is not None and total == 0:
        progress(0, 0)
    return out, index.labels[sel].copy()
