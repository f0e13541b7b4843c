"""Pieces shared by the attack modules: parameter declarations and array helpers."""

from __future__ import annotations

import numpy as np

from engine import PIXEL_MAX, PIXEL_MIN
from engine.params import Param

#: L-infinity budget, 0-255 units (see the pixel convention in :mod:`engine`).
EPS = Param("eps", float, 8.0, 0.0, 255.0, 0.5, "L-inf budget per pixel and channel, 0-255 units")
#: Largest class index any attack accepts; the model's own class count is checked at run time.
MAX_CLASS = 999
#: Optional target class: ``None`` means untargeted.
OPTIONAL_TARGET = Param(
    "target", int, None, 0, MAX_CLASS, 1, "Target class index; empty for an untargeted attack"
)


def as_float(images: np.ndarray) -> np.ndarray:
    """The batch as float32, read-only (no copy when it already is float32).

    Attacks never write into their input: the returned array is flagged
    read-only, so an accidental in-place update raises instead of mutating the
    caller's images.
    """
    x = np.asarray(images, dtype=np.float32).view()
    x.flags.writeable = False
    return x


def like_input(adv: np.ndarray, images: np.ndarray) -> np.ndarray:
    """``adv`` in the dtype of ``images``: uint8 inputs get rounded uint8 outputs."""
    adv = np.clip(adv, PIXEL_MIN, PIXEL_MAX, out=adv if adv.dtype == np.float32 else None)
    if images.dtype == np.uint8:
        return np.rint(adv).astype(np.uint8)
    return adv.astype(images.dtype, copy=False)


def project_linf(adv: np.ndarray, clean: np.ndarray, eps: float) -> np.ndarray:
    """Project onto the L-inf ball of radius ``eps`` around ``clean`` and onto [0, 255]."""
    return np.clip(np.clip(adv, clean - eps, clean + eps), PIXEL_MIN, PIXEL_MAX)


def class_labels(labels: np.ndarray, n: int, target: int | None) -> np.ndarray:
    """The labels the loss is measured against: ``labels``, or ``target`` for every image."""
    if target is None:
        return np.asarray(labels, dtype=np.int32).reshape(-1)
    return np.full(n, target, dtype=np.int32)
