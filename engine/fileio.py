"""Small file helpers shared by the engine: atomic writes and JSON with NumPy values."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: What ``json.loads`` gives back.
JSONValue = None | bool | int | float | str | list[Any] | dict[str, Any]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.

    A reader (or a run killed at any moment) sees the old file or the new one,
    never half of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_json(obj: Any, *, indent: int | None = None) -> str:
    """JSON text; numpy scalars/arrays and paths converted; NaN/inf as ``NaN``/``Infinity``.

    (Not strict JSON, but what :func:`json.loads` and JavaScript read back.)
    """
    return json.dumps(obj, indent=indent, default=json_default, allow_nan=True)


def json_default(obj: Any) -> int | float | bool | str | list[Any]:
    """``json.dumps(default=...)``: numpy scalars and arrays, and paths, as plain JSON values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON file holding one object (``NaN``/``Infinity`` accepted).

    Raises ``ValueError`` (as ``json`` does for malformed text) when the file
    holds anything but an object.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
