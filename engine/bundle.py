"""Model bundle metadata, readable without TensorFlow.

A *bundle* is a folder holding ``model.keras`` and ``meta.json``. Everything
here reads the metadata and hashes files only, so the dashboard's process can
list models, show model cards and check results for staleness without
importing TensorFlow (the model itself is loaded by
:func:`engine.models.load_bundle`, in the model worker).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ModelError

__all__ = [
    "BACKBONE_INFO",
    "BUNDLE_HISTORY",
    "BUNDLE_META",
    "BUNDLE_MODEL",
    "BackboneInfo",
    "BundleMeta",
    "file_sha256",
    "read_meta",
    "short_error",
]

BUNDLE_MODEL = "model.keras"
BUNDLE_META = "meta.json"
BUNDLE_HISTORY = "history.csv"


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone is, without building it (see :data:`engine.models.BACKBONES`).

    Parameters
    ----------
    id : str
        Registry key, used on the CLI (``--backbone``).
    title : str
        Human-readable name.
    input_size : int
        Default square input size in pixels.
    min_size : int
        Smallest input size the architecture accepts.
    imagenet : bool
        Whether ImageNet weights exist for it: published by Keras (downloaded on
        first use) or, for EfficientNet-Lite0, shipped in ``assets/weights``.
    """

    id: str
    title: str
    input_size: int
    min_size: int
    imagenet: bool


#: The backbones the engine can build, by id (builders in :mod:`engine.models`).
BACKBONE_INFO: dict[str, BackboneInfo] = {
    b.id: b
    for b in (
        BackboneInfo("mobilenet_v3_large", "MobileNetV3 Large", 224, 32, True),
        BackboneInfo("mobilenet_v3_small", "MobileNetV3 Small", 224, 32, True),
        BackboneInfo("resnet50", "ResNet50", 224, 32, True),
        BackboneInfo("inception_v3", "InceptionV3", 299, 75, True),
        BackboneInfo("efficientnet_lite0", "EfficientNet-Lite0", 224, 32, True),
        BackboneInfo("tiny", "Tiny CNN (tests, synthetic set)", 64, 16, False),
    )
}


def short_error(exc: BaseException) -> str:
    """First line of an exception's message, at most 200 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


@dataclass
class BundleMeta:
    """Everything needed to use and trust a saved model (``meta.json``)."""

    dataset_id: str
    classes: list[str]
    positive: list[str]
    input_size: int
    backbone: str
    weights: str
    training: dict[str, Any] = field(default_factory=dict)
    data_fingerprints: dict[str, str] = field(default_factory=dict)
    clean_metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    model_sha256: str = ""
    notes: str = ""
    #: The patient view's decision threshold chosen on the validation split
    #: (:class:`engine.threshold.Decision` as a dict); empty where none was chosen.
    decision: dict[str, Any] = field(default_factory=dict)

    @property
    def positive_indices(self) -> list[int]:
        """Indices of the positive ("sick") classes."""
        return [self.classes.index(c) for c in self.positive]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_meta(path: str | os.PathLike) -> BundleMeta:
    """Read a bundle's ``meta.json`` without loading the model (fast)."""
    meta_path = Path(path) / BUNDLE_META
    if not meta_path.is_file():
        raise ModelError(f"No model bundle at {path}: {BUNDLE_META} is missing.")
    try:
        data = json.loads(meta_path.read_text())
        known = set(BundleMeta.__dataclass_fields__)
        return BundleMeta(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise ModelError(f"The model bundle's {meta_path} is damaged: {short_error(exc)}") from exc
