"""Datasets: where they live, how they split, and how their pixels are read.

Quick start
-----------
>>> from engine.datasets import load_splits, load_arrays, class_counts
>>> splits = load_splits("synthetic", seed=0)
>>> x, y = load_arrays(splits["test"], 64, limit=8)
>>> x.shape, x.dtype, y.dtype
((8, 64, 64, 3), dtype('uint8'), dtype('int64'))

* :data:`REGISTRY` maps ids to :class:`DatasetSpec` (synthetic, chest_xray,
  pneumoniamnist and its MedMNIST+ sizes pneumoniamnist_64/128/224,
  chest_xray_covid, ham10000, faces); :func:`folder_dataset` makes a spec for
  any folder of class sub-folders.
* Data is looked for in the folders of :func:`data_roots` (an explicit root,
  ``$ROBUSTLENS_DATA``, the project's sibling ``../shared/data``,
  ``~/.cache/robustlens/data``); a missing dataset raises
  :class:`~engine.errors.DatasetError` saying where it looked and how to get it.
  Loading never downloads. :func:`engine.datasets.download.download` fetches,
  on request, the datasets
  with a stable public file (the PneumoniaMNIST family: checksum-verified,
  resumable, into ``~/.cache/robustlens/data``); for the others it raises with
  the manual steps (see ``docs/datasets.md``).
* :func:`load_splits` gives ``train``/``val``/``test`` :class:`SplitIndex`
  objects (refs, int64 labels, a fingerprint, patient/lesion groups);
  splits made here are seeded and never divide a patient or a lesion.
* :func:`load_arrays` decodes and resizes in a thread pool into
  ``(N, H, W, 3)`` uint8 RGB.

``python -m engine.datasets list`` / ``info ID`` describe them on the command line;
``download ID [--root DIR] [--force]`` fetches one.
This package never imports TensorFlow.
"""

from __future__ import annotations

from engine.datasets.arrays import load_arrays
from engine.datasets.folder import folder_dataset
from engine.datasets.ham10000 import CLASS_TITLES as HAM10000_CLASS_TITLES
from engine.datasets.index import (
    FileReader,
    SplitIndex,
    class_counts,
    fingerprint,
    group_split,
    subset_indices,
)
from engine.datasets.locate import CACHE_DIR, ENV_VAR, data_roots, find_dataset_dir
from engine.datasets.registry import REGISTRY, get_dataset, load_splits
from engine.datasets.spec import SPLITS, DatasetSpec, RemoteFile
from engine.datasets.synthetic import render as render_synthetic

__all__ = [
    "CACHE_DIR",
    "ENV_VAR",
    "HAM10000_CLASS_TITLES",
    "REGISTRY",
    "SPLITS",
    "DatasetSpec",
    "FileReader",
    "RemoteFile",
    "SplitIndex",
    "class_counts",
    "data_roots",
    "find_dataset_dir",
    "fingerprint",
    "folder_dataset",
    "get_dataset",
    "group_split",
    "load_arrays",
    "load_splits",
    "render_synthetic",
    "subset_indices",
]
