"""The dataset registry (a plain dict) and :func:`load_splits`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine.datasets.covid import CHEST_XRAY_COVID
from engine.datasets.folder import CHEST_XRAY, FACES, folder_dataset
from engine.datasets.ham10000 import HAM10000
from engine.datasets.index import SplitIndex
from engine.datasets.locate import find_dataset_dir
from engine.datasets.medmnist import (
    PNEUMONIAMNIST,
    PNEUMONIAMNIST_64,
    PNEUMONIAMNIST_128,
    PNEUMONIAMNIST_224,
)
from engine.datasets.spec import SPLITS, DatasetSpec
from engine.datasets.synthetic import SYNTHETIC
from engine.errors import DatasetError, ParamError

logger = logging.getLogger(__name__)

REGISTRY: dict[str, DatasetSpec] = {
    spec.id: spec
    for spec in (
        SYNTHETIC,
        CHEST_XRAY,
        PNEUMONIAMNIST,
        PNEUMONIAMNIST_64,
        PNEUMONIAMNIST_128,
        PNEUMONIAMNIST_224,
        CHEST_XRAY_COVID,
        HAM10000,
        FACES,
    )
}
"""Every built-in dataset, by id."""


def get_dataset(dataset: str | os.PathLike | DatasetSpec) -> DatasetSpec:
    """The :class:`DatasetSpec` for an id, a folder, or a spec (returned as is).

    Parameters
    ----------
    dataset : str, os.PathLike or DatasetSpec
        A registry id (see :data:`REGISTRY`); otherwise, the path of an existing
        folder of class sub-folders (see :func:`~engine.datasets.folder.folder_dataset`).

    Raises
    ------
    DatasetError
        For an unknown id that is not a folder either; the message lists the
        known ids.
    """
    if isinstance(dataset, DatasetSpec):
        return dataset
    if isinstance(dataset, str) and dataset in REGISTRY:
        return REGISTRY[dataset]
    if isinstance(dataset, (str, os.PathLike)) and Path(dataset).expanduser().is_dir():
        return folder_dataset(dataset)
    raise DatasetError(
        f"unknown dataset {dataset!r}; known datasets: {', '.join(REGISTRY)} "
        "(or give the path of a folder with one sub-folder of images per class)"
    )


def load_splits(
    dataset: str | os.PathLike | DatasetSpec,
    *,
    root: str | os.PathLike | None = None,
    seed: int | None = None,
) -> dict[str, SplitIndex]:
    """Index a dataset's train, val and test splits (no pixels are read).

    Parameters
    ----------
    dataset : str, os.PathLike or DatasetSpec
        A registry id (see :data:`REGISTRY`), a folder of class sub-folders,
        or a spec, e.g. from :func:`~engine.datasets.folder.folder_dataset`.
    root : str or os.PathLike, optional
        A data root searched before the others (see
        :func:`~engine.datasets.locate.data_roots`).
    seed : int, optional
        Seed for the splits made by the loader (carved val, lesion/patient
        splits, generated images); default: the spec's ``seed`` (0). Official
        splits do not depend on it. The result is the same for the same seed
        and files.

    Returns
    -------
    dict of str to SplitIndex
        Keys ``"train"``, ``"val"``, ``"test"``, in that order.

    Raises
    ------
    DatasetError
        If the dataset is not found (the message names every place looked and
        how to get it) or its files are malformed.
    """
    spec = get_dataset(dataset)
    if seed is None:
        seed = spec.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParamError(f"seed must be a non-negative integer; got {seed!r}")
    if spec.generated:
        directory = None
        part_dirs: dict[str, Path] = {}
    else:
        directory = find_dataset_dir(spec, root)
        part_dirs = {}
        for part in spec.parts:
            try:
                part_dirs[part.id] = find_dataset_dir(part, root)
            except DatasetError as exc:
                raise DatasetError(f"{spec.id} needs the {part.id} dataset too. {exc}") from None
    splits = spec.loader(spec, directory, seed, part_dirs)
    if set(splits) != set(SPLITS):
        raise DatasetError(f"the loader of {spec.id} returned {sorted(splits)}, not {SPLITS}")
    if spec.classes and any(s.classes != spec.classes for s in splits.values()):
        raise DatasetError(f"the loader of {spec.id} returned other classes than declared")
    logger.info(
        "%s (seed %d, %s): %s",
        spec.id,
        seed,
        directory or "generated",
        ", ".join(f"{s} {len(splits[s])}" for s in SPLITS),
    )
    return {s: splits[s] for s in SPLITS}
