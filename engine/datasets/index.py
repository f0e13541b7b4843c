"""Split indexes (item refs and labels, no pixels), their fingerprints, seeded splitting."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.datasets.spec import Reader
from engine.errors import DatasetError, ParamError
from engine.images import decode_image


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
