"""Datasets stored as folders of class sub-folders.

Two layouts are understood:

* **split folders**: ``train/<class>/...`` plus ``test/<class>/...`` and/or
  ``val/<class>/...`` (also ``training``, ``valid``, ``validation``,
  ``testing``, any letter case);
* **flat**: ``<class>/...`` directly under the dataset folder.

Missing splits are made with seeded stratified splits: a flat folder is split
70/15/15; with ``train`` and ``test`` but no ``val``, 10% of ``train`` becomes
``val``; with ``train`` and ``val`` but no ``test`` (the Kaggle celebrity-faces
layout) the given ``val`` becomes ``test`` and 10% of ``train`` becomes ``val``.

This module also holds the Kermany pediatric chest X-ray loader, whose ``val``
is carved from ``train`` without splitting a patient.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.datasets.index import FileReader, SplitIndex, group_split, make_index
from engine.datasets.locate import IMAGE_SUFFIXES, list_images, relative, subfolders
from engine.datasets.spec import SPLITS, DatasetSpec
from engine.errors import DatasetError

logger = logging.getLogger(__name__)

SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
"""Folder names (lower case) recognised as splits."""

VAL_FRACTION = 0.10
"""Share of ``train`` carved off as ``val`` when the data has no ``val``."""
FLAT_FRACTIONS = (0.70, 0.15, 0.15)
"""train/val/test shares for a folder without split folders."""

Items = list[tuple[str, int]]  # (ref, label)


def split_folders(directory: Path) -> dict[str, Path]:
    """Split name -> folder for the split folders directly under ``directory``."""
    found: dict[str, Path] = {}
    for sub in subfolders(directory):
        split = SPLIT_ALIASES.get(sub.name.lower())
        if split is None:
            continue
        if split in found:
            raise DatasetError(
                f"{directory} has two folders for the {split} split: "
                f"{found[split].name} and {sub.name}"
            )
        found[split] = sub
    return found


def discover_classes(directory: Path) -> tuple[str, ...]:
    """Class names of a folder dataset (sorted), without listing the images."""
    splits = split_folders(directory)
    if splits:
        names = {c.name for folder in splits.values() for c in subfolders(folder)}
    else:
        names = {c.name for c in subfolders(directory)}
    return tuple(sorted(names))


def _scan(
    folder: Path,
    base: Path,
    classes: tuple[str, ...],
    *,
    strict: bool,
) -> Items:
    """(ref, label) for every image in ``folder/<class>/``.

    With ``strict``, every class folder must exist; extra folders are ignored
    (with a warning). An existing class folder without images is an error.
    """
    present = {c.name: c for c in subfolders(folder)}
    extra = sorted(set(present) - set(classes))
    if extra:
        logger.warning("%s: ignoring folder(s) that are not classes: %s", folder, extra)
    items: Items = []
    for label, name in enumerate(classes):
        cls_dir = present.get(name)
        if cls_dir is None:
            if strict:
                raise DatasetError(
                    f"{folder} has no '{name}' folder; expected one folder per class: "
                    f"{', '.join(classes)}"
                )
            continue
        files = list_images(cls_dir)
        if not files:
            raise DatasetError(
                f"the class folder {cls_dir} has no images "
                f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))} files)"
            )
        items.extend((relative(f, base), label) for f in files)
    return items


def _carve(
    items: Items, fractions: tuple[float, ...], seed: int, group_of: Callable[[str], str] | None
) -> list[Items]:
    labels = [y for _, y in items]
    groups = [group_of(r) for r, _ in items] if group_of else None
    parts = group_split(labels, fractions, seed, groups)
    return [[items[int(i)] for i in part] for part in parts]


def load_class_folders(
    spec: DatasetSpec,
    directory: Path,
    seed: int,
    *,
    classes: tuple[str, ...] | None = None,
    group_of: Callable[[str], str] | None = None,
    require_test: bool = False,
    pool_val: bool = False,
) -> dict[str, SplitIndex]:
    """Split indexes for a folder of class sub-folders (either layout).

    Parameters
    ----------
    spec : DatasetSpec
        Gives the dataset id.
    directory : pathlib.Path
        The dataset folder.
    seed : int
        Seed for any split made here.
    classes : tuple of str, optional
        Fixed class list (every split folder must then contain each class);
        discovered from the folders when omitted.
    group_of : callable, optional
        ``group_of(ref) -> group id`` so that a group (patient) never lands in
        two splits made here.
    require_test : bool, default=False
        Demand a ``test`` folder (for datasets with an official test split).
    pool_val : bool, default=False
        With ``train``, ``val`` and ``test`` folders: pool the given ``val``
        with ``train`` and carve a fresh ``val`` (for datasets whose shipped
        ``val`` is too small to use), instead of keeping the given ``val``.

    Returns
    -------
    dict of str to SplitIndex
        Keys ``train``, ``val``, ``test``.
    """
    splits = split_folders(directory)
    strict = classes is not None
    if classes is None:
        classes = discover_classes(directory)
    if not splits and not classes:
        raise DatasetError(
            f"{directory} has no class sub-folders; expected <class>/<images> or "
            f"train/<class>/<images> (and test/<class>/...)"
        )
    if len(classes) < 2:
        raise DatasetError(
            f"{directory} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "a classifier needs at least 2"
        )
    if splits and "train" not in splits:
        raise DatasetError(
            f"{directory} has {', '.join(sorted(p.name for p in splits.values()))} "
            "but no train folder"
        )
    if require_test and "test" not in splits:
        raise DatasetError(f"{directory} has no test folder; expected train/ and test/")

    parts: dict[str, Items]
    if not splits:
        train, val, test = _carve(
            _scan(directory, directory, classes, strict=True), FLAT_FRACTIONS, seed, group_of
        )
        parts = {"train": train, "val": val, "test": test}
        how = "flat class folders, split 70/15/15"
    else:
        scanned = {s: _scan(f, directory, classes, strict=strict) for s, f in splits.items()}
        if "test" in scanned:
            test = scanned["test"]
            pool = scanned["train"] + scanned.get("val", [])
            if "val" in scanned and not pool_val:
                parts = {"train": scanned["train"], "val": scanned["val"], "test": test}
                how = "train/val/test folders"
            else:
                train, val = _carve(pool, (1 - VAL_FRACTION, VAL_FRACTION), seed, group_of)
                parts = {"train": train, "val": val, "test": test}
                how = "train/test folders, val carved from train"
        elif "val" in scanned:
            train, val = _carve(scanned["train"], (1 - VAL_FRACTION, VAL_FRACTION), seed, group_of)
            parts = {"train": train, "val": val, "test": scanned["val"]}
            how = "train/val folders: the given val is used as test, val carved from train"
        else:
            train, val, test = _carve(scanned["train"], FLAT_FRACTIONS, seed, group_of)
            parts = {"train": train, "val": val, "test": test}
            how = "train folder only, split 70/15/15"
    logger.info("%s: %s (seed %d)", spec.id, how, seed)
    reader = FileReader((("", directory),))
    out: dict[str, SplitIndex] = {}
    for split in SPLITS:
        items = parts[split]
        refs = [r for r, _ in items]
        out[split] = make_index(
            spec.id,
            split,
            classes,
            refs,
            [y for _, y in items],
            reader,
            groups=[group_of(r) for r in refs] if group_of else None,
        )
    return out


def load_folder(
    spec: DatasetSpec, directory: Path | None, seed: int, part_dirs: Mapping[str, Path]
) -> dict[str, SplitIndex]:
    """Loader for any folder of class sub-folders (classes discovered)."""
    assert directory is not None
    return load_class_folders(spec, directory, seed, classes=spec.classes or None)


def folder_dataset(
    path: str | os.PathLike,
    *,
    dataset_id: str | None = None,
    title: str | None = None,
    seed: int = 0,
) -> DatasetSpec:
    """A :class:`DatasetSpec` for any folder of class sub-folders.

    Parameters
    ----------
    path : str or os.PathLike
        The folder: ``<class>/<images>`` or ``train/<class>/...`` with
        ``test`` and/or ``val`` folders (see the module docstring).
    dataset_id : str, optional
        Id for results and fingerprints (default ``folder:<folder name>``).
    title : str, optional
        Display name (default: the folder name).
    seed : int, default=0
        Seed of the splits made when the folder lacks some.

    Returns
    -------
    DatasetSpec
        With the classes discovered from the folder names.

    Raises
    ------
    DatasetError
        If ``path`` is not a folder.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    folder = folder.resolve()
    return DatasetSpec(
        id=dataset_id or f"folder:{folder.name}",
        title=title or folder.name,
        classes=discover_classes(folder),
        loader=load_folder,
        licence="user-supplied: check the terms of the source you got it from",
        description=f"Images from the folder {folder}, one sub-folder per class.",
        folder_names=(str(folder),),
        how_to_get=f"Put one sub-folder of images per class in {folder}.",
        seed=seed,
    )


# --------------------------------------------------------------------------- Kermany

_PERSON = re.compile(r"(?i)person(\d+)")
_IM = re.compile(r"(?i)^((?:[a-z0-9]+-)?IM-\d+)")


def kermany_patient(ref: str) -> str:
    """Patient id from a Kermany file name.

    ``person123_bacteria_456.jpeg`` -> ``person123``; the NORMAL files
    ``IM-0117-0001.jpeg`` / ``NORMAL2-IM-0629-0001-0002.jpeg`` -> ``IM-0117`` /
    ``NORMAL2-IM-0629`` (the number after ``IM-`` identifies the study); any
    other name is its own group.
    """
    name = ref.rsplit("/", 1)[-1]
    m = _PERSON.search(name)
    if m:
        return f"person{int(m.group(1))}"
    m = _IM.match(name)
    if m:
        return m.group(1).upper()
    return os.path.splitext(name)[0]


def _kermany_root(directory: Path) -> Path:
    """Step into ``chest_xray/`` when the archive was unzipped one level up."""
    if (directory / "train").is_dir() or not (directory / "chest_xray" / "train").is_dir():
        return directory
    return directory / "chest_xray"


def load_kermany(
    spec: DatasetSpec, directory: Path | None, seed: int, part_dirs: Mapping[str, Path]
) -> dict[str, SplitIndex]:
    """Loader for the Kermany pediatric chest X-rays (official train/test).

    ``val`` is 10% of ``train`` (plus any images in a ``val`` folder, which are
    pooled with ``train`` first), seeded, stratified, and grouped by patient so
    that one child never lands in both ``train`` and ``val``.

    The official ``test`` split is kept as published. Note that it reuses
    about 170 ``person<N>`` numbers that also occur in ``train``; whether these
    are the same children is not documented.
    """
    assert directory is not None
    root = _kermany_root(directory)
    return load_class_folders(
        spec,
        root,
        seed,
        classes=spec.classes,
        group_of=kermany_patient,
        require_test=True,
        pool_val=True,
    )


KERMANY_ATTRIBUTION = (
    'Kermany, Zhang, Goldbaum, "Labeled Optical Coherence Tomography (OCT) and Chest '
    'X-Ray Images for Classification", Mendeley Data v2, doi:10.17632/rscbjbr9sj.2'
)

CHEST_XRAY = DatasetSpec(
    id="chest_xray",
    mirror_ok=False,
    title="Pediatric chest X-rays (Kermany)",
    classes=("NORMAL", "PNEUMONIA"),
    loader=load_kermany,
    positive=("PNEUMONIA",),
    licence="CC BY 4.0",
    attribution=KERMANY_ATTRIBUTION,
    description=(
        "5,856 chest X-rays of children aged 1-5 from Guangzhou Women and Children's "
        "Medical Center, labelled NORMAL or PNEUMONIA (bacterial or viral). Official "
        "split: train 1349/3883 (1341/3875 in copies without the Kaggle mirror's val/ "
        "folder), test 234/390 (NORMAL/PNEUMONIA); val is 10% of train, carved without "
        "splitting a patient."
    ),
    caveat=(
        "Children from a single hospital; PNEUMONIA outnumbers NORMAL about 3 to 1, so "
        "accuracy alone flatters a model that over-calls pneumonia."
    ),
    folder_names=("chest_xray_kermany_224", "chest_xray"),
    how_to_get=(
        "1. Open https://data.mendeley.com/datasets/rscbjbr9sj/2 "
        "(doi:10.17632/rscbjbr9sj.2; licence CC BY 4.0) and download ChestXRay2017.zip "
        "(the OCT2017 archive on the same page is not needed).\n"
        "2. Unzip it; it holds chest_xray/train/{NORMAL,PNEUMONIA} and "
        "chest_xray/test/{NORMAL,PNEUMONIA} (ignore any __MACOSX folder).\n"
        "3. Move the chest_xray folder into a data root, e.g. "
        "~/.cache/robustlens/data/chest_xray (images of any size are fine; they are "
        "resized when loaded). Copies with a val/ folder, such as the Kaggle mirror, work "
        "too: its images are pooled with train."
    ),
    layout=(
        "chest_xray/                 (or chest_xray_kermany_224/; or chest_xray/chest_xray/)\n"
        "  train/NORMAL/*.jpeg       IM-0115-0001.jpeg, NORMAL2-IM-0627-0001.jpeg, ...\n"
        "  train/PNEUMONIA/*.jpeg    person1_bacteria_1.jpeg, person2_virus_3.jpeg, ...\n"
        "  test/NORMAL/*.jpeg\n"
        "  test/PNEUMONIA/*.jpeg\n"
        "  val/{NORMAL,PNEUMONIA}/   optional; pooled with train"
    ),
)

FACES = DatasetSpec(
    id="faces",
    title="Celebrity faces (your folder)",
    classes=(),
    loader=load_folder,
    licence="user-supplied: check the terms of the source you got it from",
    attribution="",
    description=(
        "A folder you supply in the Kaggle celebrity-faces layout: train/<person>/*.jpg "
        "and val/<person>/*.jpg. The given val folder is used as the test split and "
        "10% of train becomes val. Classes are the folder names."
    ),
    caveat=(
        "Face recognition data concerns real people: use only images you are allowed "
        "to use. Small folders give noisy accuracy figures."
    ),
    folder_names=("faces",),
    how_to_get=(
        "1. Get a face dataset in the layout train/<person>/*.jpg, val/<person>/*.jpg, "
        "for example Kaggle's '5 Celebrity Faces Dataset' "
        "(https://www.kaggle.com/datasets/dansbecker/5-celebrity-faces-dataset; it needs a "
        "Kaggle account; check the terms shown there), or photos of your own taken with the "
        "consent of the people shown.\n"
        "2. Unzip it and rename the folder that holds train/ and val/ to faces.\n"
        "3. Move it into a data root, e.g. ~/.cache/robustlens/data/faces."
    ),
    layout=(
        "faces/\n"
        "  train/<person>/*.jpg    one folder per person (the classes)\n"
        "  val/<person>/*.jpg      used as the test split; 10% of train becomes val\n"
        "  test/<person>/*.jpg     optional; if present, val is kept as val"
    ),
)
