"""What a dataset is: its spec, the files it may fetch, and the splits it provides."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.errors import ParamError

if TYPE_CHECKING:  # index imports this module; the loader type only names it
    from engine.datasets.index import SplitIndex

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The three splits every dataset provides, in this order."""


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
    rotate_ok : bool, default=False
        Whether any rotation or a vertical flip is still a plausible sample
        (dermoscopy: a lesion has no up). Otherwise training rotates by a few
        degrees only.
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
    rotate_ok: bool = False
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
