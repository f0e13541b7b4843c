"""File helpers of the evaluation pipeline: file names, atomic writes, JSON, provenance."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import engine
from engine.fileio import (
    JSONValue,
    atomic_write_bytes,
    atomic_write_text,
    json_default,
    read_json,
    to_json,
)

__all__ = [
    "CELLS",
    "MANIFEST",
    "PER_IMAGE",
    "PER_IMAGE_LEGACY",
    "RESULTS",
    "atomic_write_bytes",
    "atomic_write_text",
    "canonical",
    "git_info",
    "json_default",
    "portable_path",
    "read_json",
    "resolve_recorded",
    "to_json",
]

MANIFEST = "manifest.json"
RESULTS = "results.csv"
#: The per-image records, gzip-compressed CSV (``pandas.read_csv`` reads it as is).
PER_IMAGE = "per_image.csv.gz"
#: Where format-1 folders kept them, uncompressed; still read.
PER_IMAGE_LEGACY = "per_image.csv"
#: The resume journal of a running sweep: one JSON file per finished cell.
CELLS = "cells"

PROJECT_ROOT = Path(engine.__file__).resolve().parents[1]


def portable_path(path: Path) -> str:
    """``path`` relative to the project root when inside it (so shipped manifests
    name no machine's folders), else absolute; POSIX separators."""
    full = Path(path).resolve()
    try:
        return full.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return full.as_posix()


def resolve_recorded(path: str) -> Path:
    """Inverse of :func:`portable_path`: a relative recorded path is under the project root."""
    p = Path(path)
    return p if p.is_absolute() else PROJECT_ROOT / p


def canonical(value: Any) -> JSONValue:
    """``value`` as its JSON reads back: tuples as lists, NumPy scalars as numbers, so two
    settings compare equal when a results file cannot tell them apart."""
    out: JSONValue = json.loads(to_json(value))
    return out


def git_info() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the project checkout.

    Tolerates a missing ``git`` or a copy that is not a repository.
    """

    def run(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", *args],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip()

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    """Platform, CPU count and the versions of the libraries the numbers depend on."""
    import cv2
    import keras
    import pandas as pd
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two numbers or nested lists (NaN == NaN, inf == inf).

    ``inf`` when shapes differ or one side is NaN/None and the other is not.
    """
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return math.inf
        return max((max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    x, y = float(a), float(b)
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    if math.isnan(x) or math.isnan(y):
        return math.inf
    return abs(x - y)


def split_seed(meta: Any) -> int | None:
    """The seed the bundle's splits were made with (``meta.training["seed"]``), if recorded."""
    training = getattr(meta, "training", None)
    seed = training.get("seed") if isinstance(training, dict) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
