"""Pieces shared by the attack modules: parameter declarations and array helpers."""

from __future__ import annotations

import numpy as np

from engine import PIXEL_MAX, PIXEL_MIN
from engine.params import param

#: The budgets a widget offers for ε: fine steps at the low end (ε = 1 is one grey level), 0-64.
EPS_CHOICES = (
    *(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0),
    *(10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 28.0, 32.0, 40.0, 48.0, 56.0, 64.0),
)
#: Largest class index any attack accepts; the model's own class count is checked at run time.
MAX_CLASS = 999


def eps_param() -> float:
    """The L-infinity budget every attack takes, 0-255 units (see the pixel convention in
    :mod:`engine`), declared once for all of them."""
    return param(
        8.0,
        0.0,
        255.0,
        0.5,
        "L-inf budget per pixel and channel, 0-255 units",
        choices=EPS_CHOICES,
    )


def optional_target() -> int | None:
    """An optional target class: ``None`` means untargeted."""
    return param(
        None,
        0,
        MAX_CLASS,
        1,
        "Target class index; empty for an untargeted attack",
        widget="class",
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


def judge(
    logits: np.ndarray, loss: np.ndarray, labels: np.ndarray, target: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """How bad each image is for the defender, from the logits and loss an attack computed.

    ``labels`` are the loss's labels (the true classes, or ``target`` for every
    image). Returns ``fooled`` (``(N,)`` bool: misclassified, or classified as
    ``target``) and ``score`` (``(N,)`` float32: the true class's cross-entropy,
    or minus the target's; larger is worse). Restarts and early stopping keep,
    per image, fooled first and then the higher score.
    """
    pred = np.asarray(logits).argmax(axis=1)
    score = np.asarray(loss, np.float32)
    if target is None:
        return pred != labels, score
    return pred == target, -score
