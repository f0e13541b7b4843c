"""MedMNIST-style ``.npz`` archives (PneumoniaMNIST).

The archive holds ``train_images``, ``train_labels``, ``val_images``,
``val_labels``, ``test_images`` and ``test_labels``; images are ``(N, H, W)``
grey or ``(N, H, W, 3)`` RGB uint8, labels ``(N,)`` or ``(N, 1)``. Refs are
``"<split>:<position>"``. Grey images become RGB by copying the grey value.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.datasets.index import SplitIndex, make_index
from engine.datasets.spec import SPLITS, DatasetSpec, RemoteFile
from engine.errors import DatasetError
from engine.images import as_rgb_uint8

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _read_npz(path: str, mtime_ns: int, size: int) -> tuple[dict[str, np.ndarray], str]:
    """All arrays of an archive (read once per file version) and its SHA-256."""
    try:
        raw = Path(path).read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    for a in arrays.values():
        a.setflags(write=False)
    return arrays, hashlib.sha256(raw).hexdigest()


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Arrays of an ``.npz`` archive and its SHA-256 (cached while unchanged)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _read_npz(str(path), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class NpzReader:
    """Reads ``"<split>:<position>"`` refs from a MedMNIST-style archive."""

    file: Path

    def __call__(self, ref: str) -> np.ndarray:
        split, _, pos = ref.partition(":")
        arrays, _ = read_npz(self.file)
        key = f"{split}_images"
        if key not in arrays or not pos.isdigit() or int(pos) >= len(arrays[key]):
            raise DatasetError(f"{self.file} has no item {ref!r}")
        return as_rgb_uint8(arrays[key][int(pos)])


def load_npz(
    spec: DatasetSpec, directory: Path | None, seed: int, part_dirs: Mapping[str, Path]
) -> dict[str, SplitIndex]:
    """Loader for a MedMNIST-style archive; the splits are the archive's own.

    ``directory`` must hold ``<spec.id>.npz``. ``seed`` is unused (the
    splits are official).
    """
    assert directory is not None
    file = directory / f"{spec.id}.npz"
    if not file.is_file():
        raise DatasetError(f"{directory} has no {file.name}")
    arrays, digest = read_npz(file)
    reader = NpzReader(file)
    out: dict[str, SplitIndex] = {}
    for split in SPLITS:
        ik, lk = f"{split}_images", f"{split}_labels"
        missing = [k for k in (ik, lk) if k not in arrays]
        if missing:
            raise DatasetError(
                f"{file} lacks the array(s) {', '.join(missing)}; a MedMNIST archive has "
                + ", ".join(f"{s}_images, {s}_labels" for s in SPLITS)
            )
        images, labels = arrays[ik], arrays[lk]
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DatasetError(
                f"{file}: {ik} must be uint8 (N, H, W) or (N, H, W, 3); "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(
                f"{file}: {lk} must hold one label per image; got shape {labels.shape} "
                f"for {len(images)} images"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(spec.classes)):
            raise DatasetError(
                f"{file}: {lk} must be in 0..{len(spec.classes) - 1} "
                f"({', '.join(spec.classes)}); got {labels.min()}..{labels.max()}"
            )
        refs = [f"{split}:{i}" for i in range(len(images))]
        out[split] = make_index(
            spec.id, split, spec.classes, refs, labels, reader, salt=f"npz {digest}"
        )
    return out


MEDMNIST_RECORD = "https://zenodo.org/records/10519652"
"""The Zenodo record of MedMNIST v2 / MedMNIST+ (doi:10.5281/zenodo.10519652)."""
MEDMNIST_PAGE = "https://doi.org/10.5281/zenodo.10519652"

PNEUMONIAMNIST_MD5: dict[int, str] = {
    28: "28209eda62fecd6e6a2d98b1501bb15f",
    64: "8f4eceb4ccffa70c672198ea285246c6",
    128: "05b46931834c231683c68f40c47b2971",
    224: "d6a3c71de1b945ea11211b03746c1fe1",
}
"""Published MD5 of each PneumoniaMNIST file by image size (the medmnist package's
``INFO["pneumoniamnist"]``, version 3.0.2: keys ``MD5``, ``MD5_64``, ``MD5_128``, ``MD5_224``)."""

MEDMNIST_ATTRIBUTION = (
    'Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D '
    'biomedical image classification", Scientific Data 10, 41 (2023), '
    "doi:10.1038/s41597-022-01721-8; data doi:10.5281/zenodo.10519652; source images "
    "Kermany, Zhang, Goldbaum, Mendeley Data v2, doi:10.17632/rscbjbr9sj.2"
)


def _pneumoniamnist_id(size: int) -> str:
    return "pneumoniamnist" if size == 28 else f"pneumoniamnist_{size}"


def _how_to_get(size: int) -> str:
    name = f"{_pneumoniamnist_id(size)}.npz"
    return (
        f"Automatic: python -m engine.datasets download {_pneumoniamnist_id(size)}\n"
        f"By hand:\n"
        f"1. Download {name} from the MedMNIST record on Zenodo ({MEDMNIST_PAGE}), "
        f"direct link {MEDMNIST_RECORD}/files/{name}?download=1\n"
        f"2. Check that its MD5 is {PNEUMONIAMNIST_MD5[size]}.\n"
        f"3. Put it at <data root>/{_pneumoniamnist_id(size)}/{name}, e.g. "
        f"~/.cache/robustlens/data/{_pneumoniamnist_id(size)}/{name}."
    )


def _layout(size: int) -> str:
    key = _pneumoniamnist_id(size)
    file = f"  {key}.npz  "
    pad = " " * len(file)
    return (
        f"{key}/\n"
        f"{file}arrays train_images, train_labels, val_images, val_labels,\n"
        f"{pad}test_images, test_labels; images uint8 (N, {size}, {size}),\n"
        f"{pad}labels (N, 1): 0 = normal, 1 = pneumonia"
    )


def _remote(size: int) -> RemoteFile:
    name = f"{_pneumoniamnist_id(size)}.npz"
    return RemoteFile(
        url=f"{MEDMNIST_RECORD}/files/{name}?download=1",
        checksum=f"md5:{PNEUMONIAMNIST_MD5[size]}",
        filename=name,
        page=MEDMNIST_PAGE,
    )


PNEUMONIAMNIST = DatasetSpec(
    id="pneumoniamnist",
    mirror_ok=False,
    title="PneumoniaMNIST (28×28 chest X-rays)",
    classes=("NORMAL", "PNEUMONIA"),
    loader=load_npz,
    positive=("PNEUMONIA",),
    licence="CC BY 4.0",
    attribution=MEDMNIST_ATTRIBUTION,
    description=(
        "The Kermany pediatric chest X-rays center-cropped and shrunk to 28×28 grey, with "
        "MedMNIST's official splits: train 4708, val 524 (both from Kermany's train), "
        "test 624 (Kermany's test). Tiny and fast: good for quick experiments."
    ),
    caveat=(
        "At 28×28 most clinical detail is gone. Check the class counts: some shared "
        "copies have the train NORMAL class cut (e.g. to 388 images). The images are the "
        "Kermany ones: do not train on chest_xray and test on PneumoniaMNIST (or the "
        "reverse) and call it independent."
    ),
    folder_names=("pneumoniamnist",),
    how_to_get=_how_to_get(28),
    layout=_layout(28),
    download=_remote(28),
)


def _larger(size: int) -> DatasetSpec:
    key = _pneumoniamnist_id(size)
    return replace(
        PNEUMONIAMNIST,
        id=key,
        title=f"PneumoniaMNIST+ ({size}×{size} chest X-rays)",
        description=(
            f"MedMNIST+ PneumoniaMNIST at {size}×{size} grey: the same images and official "
            "splits as pneumoniamnist (train 4708, val 524, test 624), at a size that keeps "
            "more detail."
        ),
        caveat=(
            "The images are the Kermany ones: do not train on chest_xray and test on "
            "PneumoniaMNIST (or the reverse) and call it independent."
        ),
        folder_names=(key,),
        how_to_get=_how_to_get(size),
        layout=_layout(size),
        download=_remote(size),
    )


PNEUMONIAMNIST_64 = _larger(64)
PNEUMONIAMNIST_128 = _larger(128)
PNEUMONIAMNIST_224 = _larger(224)
