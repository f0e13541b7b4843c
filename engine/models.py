"""Backbones, the transfer-learning classifier, and model bundles.

Every classifier built here takes raw RGB in 0-255 (float32, ``(N, H, W, 3)``)
and does its own preprocessing with real Keras layers (no ``Lambda``, so
bundles load in Keras safe mode). Its graph is::

    image (0-255) -> [preprocessing] -> backbone -> global average pooling
                  -> dropout -> Dense "logits" -> Activation softmax "probs"

Attacks take the ``"logits"`` output (see :func:`engine.gradients.logits_model`).

A *bundle* is a folder holding ``model.keras`` and ``meta.json`` (dataset,
classes, positive classes, input size, backbone, weights origin, training
settings, data fingerprints, clean test metrics, library versions, and the
SHA-256 of ``model.keras`` so that results can tell when they are stale).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

import engine
import engine.layers  # registers the custom layers a bundle may hold (safe-mode loading)
from engine.bundle import (
    BACKBONE_INFO,
    BUNDLE_META,
    BUNDLE_MODEL,
    BundleMeta,
    file_sha256,
    read_meta,
)
from engine.bundle import (  # re-exported: they live in a TensorFlow-free module
    BUNDLE_HISTORY as BUNDLE_HISTORY,
)
from engine.bundle import short_error as _short
from engine.errors import ModelError, ParamError
from engine.fileio import atomic_write_text, json_default

log = logging.getLogger(__name__)

#: Batch-norm momentum for backbones trained from scratch (see build_classifier).
SCRATCH_BN_MOMENTUM = 0.99

# ImageNet mean of the "caffe" preprocessing ResNet50 was trained with (RGB order).
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


# --------------------------------------------------------------------------- backbones
@dataclass(frozen=True)
class BackboneSpec:
    """One entry of the backbone registry: :class:`engine.bundle.BackboneInfo` + a builder.

    ``build(input_shape, weights) -> keras.Model`` returns the feature
    extractor (no top), preprocessing included, taking 0-255 RGB.
    """

    id: str
    title: str
    input_size: int
    min_size: int
    imagenet: bool
    build: Callable[[tuple[int, int, int], str | None], keras.Model]


def _mobilenet_v3(app: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        # include_preprocessing=True puts a Rescaling(1/127.5, offset=-1) inside the model.
        return app(
            input_shape=input_shape,
            include_top=False,
            weights=weights,
            include_preprocessing=True,
        )

    return build


def _caffe_preprocessing(name: str = "caffe_preprocess") -> keras.layers.Layer:
    """RGB->BGR swap and ImageNet mean subtraction as a frozen 1x1 convolution.

    A real layer (not a ``Lambda``), exact, and serialisable in safe mode.
    """
    kernel = np.zeros((1, 1, 3, 3), dtype="float32")
    for out_ch, in_ch in enumerate((2, 1, 0)):  # BGR output from RGB input
        kernel[0, 0, in_ch, out_ch] = 1.0
    bias = -np.array(_CAFFE_MEAN_RGB[::-1], dtype="float32")
    layer = keras.layers.Conv2D(
        3,
        1,
        name=name,
        trainable=False,
        kernel_initializer=keras.initializers.Constant(kernel),
        bias_initializer=keras.initializers.Constant(bias),
    )
    return layer


def _resnet50(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    inputs = keras.Input(input_shape, name="rgb_0_255")
    x = _caffe_preprocessing()(inputs)
    base = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=input_shape)
    return keras.Model(inputs, base(x), name="resnet50_features")


def _inception_v3(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    inputs = keras.Input(input_shape, name="rgb_0_255")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="tf_preprocess")(inputs)
    base = keras.applications.InceptionV3(
        include_top=False, weights=weights, input_shape=input_shape
    )
    return keras.Model(inputs, base(x), name="inception_v3_features")


def _efficientnet_lite0(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """EfficientNet-Lite0 (:mod:`engine.efficientnet_lite`); ``"imagenet"`` loads the
    shipped converted weights, so it works offline (provenance in ``assets/weights``)."""
    from engine.efficientnet_lite import LITE0_IMAGENET_NOTOP, efficientnet_lite

    path = LITE0_IMAGENET_NOTOP if weights == "imagenet" else weights
    return efficientnet_lite("lite0", input_shape=input_shape, weights=path)


def _tiny(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    """A small CNN for tests and the synthetic set (no pretrained weights exist)."""
    if weights not in (None, "none"):
        raise ModelError("The 'tiny' backbone has no pretrained weights; use --weights none.")
    inputs = keras.Input(input_shape, name="rgb_0_255")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inputs)
    for i, filters in enumerate((32, 64, 96, 128)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.Model(inputs, x, name="tiny_features")


def _spec(backbone_id: str, build: Callable[..., keras.Model]) -> BackboneSpec:
    info = BACKBONE_INFO[backbone_id]
    return BackboneSpec(info.id, info.title, info.input_size, info.min_size, info.imagenet, build)


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v3_large": _spec(
        "mobilenet_v3_large", _mobilenet_v3(keras.applications.MobileNetV3Large)
    ),
    "mobilenet_v3_small": _spec(
        "mobilenet_v3_small", _mobilenet_v3(keras.applications.MobileNetV3Small)
    ),
    "resnet50": _spec("resnet50", _resnet50),
    "inception_v3": _spec("inception_v3", _inception_v3),
    "efficientnet_lite0": _spec("efficientnet_lite0", _efficientnet_lite0),
    "tiny": _spec("tiny", _tiny),
}
assert set(BACKBONES) == set(BACKBONE_INFO), "every backbone needs a builder"


def get_backbone(backbone_id: str) -> BackboneSpec:
    """Look up a backbone, with a message listing the known ids."""
    try:
        return BACKBONES[backbone_id]
    except KeyError:
        raise ParamError(
            f"Unknown backbone '{backbone_id}'. Known: {', '.join(BACKBONES)}."
        ) from None


# --------------------------------------------------------------------------- weights
@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def resolve_weights(weights: str | os.PathLike | None) -> str | None:
    """Normalise a ``--weights`` value to what ``keras.applications`` takes.

    ``"imagenet"`` stays, ``"none"``/``None`` becomes ``None`` (from scratch),
    anything else must be an existing local ``.h5`` file of the backbone without
    its top.
    """
    if weights is None or str(weights).lower() in ("none", "scratch", ""):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(
            f"Weights file {path} does not exist. Use --weights imagenet, --weights none, "
            "or the path of a local .h5 weights file for this backbone (without its top)."
        )
    if not path.name.endswith(".h5"):
        raise ModelError(f"Weights file {path} must be a Keras .h5 weights file.")
    return str(path)


def build_backbone(
    backbone_id: str,
    *,
    weights: str | os.PathLike | None = "imagenet",
    input_size: int | None = None,
    download_timeout: float = 20.0,
) -> keras.Model:
    """Build a backbone feature extractor that takes 0-255 RGB.

    Parameters
    ----------
    backbone_id : str
        A key of :data:`BACKBONES`.
    weights : {"imagenet", "none"} or path, default="imagenet"
        ImageNet weights are downloaded by Keras into ``~/.keras/models`` on
        first use. Offline, this fails within ``download_timeout`` seconds with
        a :class:`ModelError` that says what to do instead.
    input_size : int, optional
        Square input size; defaults to the backbone's own.
    """
    spec = get_backbone(backbone_id)
    size = int(input_size or spec.input_size)
    if size < spec.min_size or size > 1024:
        raise ParamError(
            f"{spec.title}: 'input_size' must be an integer in [{spec.min_size}, 1024]; got {size}."
        )
    w = resolve_weights(weights)
    if w == "imagenet" and not spec.imagenet:
        raise ModelError(f"{spec.title} has no ImageNet weights; use --weights none.")
    try:
        with _socket_timeout(download_timeout):
            return spec.build((size, size, 3), w)
    except ModelError:
        raise
    except Exception as exc:
        if w == "imagenet":
            cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
            raise ModelError(
                f"Could not get the ImageNet weights for {spec.title}: they are not in the "
                f"Keras cache ({cache}) and downloading them failed ({_short(exc)}). "
                "You are probably offline. Train from scratch with --weights none, or put "
                "the weights file in that cache folder, or pass --weights PATH.h5."
            ) from exc
        if w is not None:
            raise ModelError(
                f"Could not load weights from {w} into {spec.title}: {_short(exc)}. "
                "The file must hold this backbone's weights without its top "
                "(include_top=False) at the same input size."
            ) from exc
        raise


def build_classifier(
    backbone_id: str,
    n_classes: int,
    *,
    weights: str | os.PathLike | None = "imagenet",
    input_size: int | None = None,
    dropout: float = 0.2,
    fine_tune_layers: int = 0,
) -> keras.Model:
    """The seed's transfer model: backbone -> GAP -> dropout -> dense softmax head.

    With pretrained weights the backbone is a frozen feature extractor (run in
    inference mode, so batch-norm statistics stay fixed); ``fine_tune_layers``
    unfreezes that many layers at its top. Without pretrained weights the whole
    network trains from scratch, with batch-norm momentum capped at
    :data:`SCRATCH_BN_MOMENTUM` so its moving statistics settle within a few
    epochs of a small dataset.

    The output layer is ``Activation("softmax", name="probs")`` on a Dense layer
    named ``"logits"``.
    """
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ParamError(f"A classifier needs at least 2 classes; got {n_classes!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ParamError(f"'dropout' must be a number in [0, 1); got {dropout!r}.")
    spec = get_backbone(backbone_id)
    size = int(input_size or spec.input_size)
    base = build_backbone(backbone_id, weights=weights, input_size=size)
    pretrained = resolve_weights(weights) is not None
    inputs = keras.Input((size, size, 3), name="image")
    if pretrained:
        base.trainable = False
        if fine_tune_layers > 0:
            _unfreeze_top(base, fine_tune_layers)
        features = base(inputs, training=False)
    else:
        # Keras' ImageNet architectures use batch-norm momentum 0.999, tuned for
        # ImageNet's ~1e6 steps; on a few thousand images the moving statistics
        # would still be mostly their initial values after several epochs, and
        # the model would predict one class at evaluation time.
        for layer in _flat_layers(base):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, SCRATCH_BN_MOMENTUM)
        features = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(n_classes, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inputs, probs, name=f"{backbone_id}_classifier")


def _unfreeze_top(base: keras.Model, n_layers: int) -> None:
    base.trainable = True
    layers = _flat_layers(base)
    for layer in layers[:-n_layers]:
        layer.trainable = False
    for layer in layers[-n_layers:]:
        # Batch norm stays frozen when fine-tuning a pretrained network.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _flat_layers(model: keras.Model) -> list[keras.layers.Layer]:
    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def input_size_of(model: keras.Model) -> int:
    """Square input size of a classifier."""
    shape = model.inputs[0].shape
    return int(shape[1])


# --------------------------------------------------------------------------- bundles
@dataclass
class Bundle:
    """A loaded model with its metadata."""

    model: keras.Model
    meta: BundleMeta
    path: Path


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour the results depend on."""
    import cv2
    import tensorflow as tf

    return {
        "engine": engine.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def save_bundle(
    model: keras.Model,
    meta: BundleMeta,
    path: str | os.PathLike,
    *,
    extra_files: dict[str, str | os.PathLike] | None = None,
) -> Path:
    """Write a bundle folder atomically (a temp folder renamed into place).

    ``meta.model_sha256``, ``meta.versions`` and ``meta.created`` are filled in.
    ``extra_files`` maps a file name inside the bundle to a file to copy
    (e.g. the training curve CSV).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if getattr(model, "optimizer", None) is not None:
        # A bundle is for inference: drop the optimizer state (it would triple the file).
        bare = keras.Model.from_config(model.get_config())
        bare.set_weights(model.get_weights())
        model = bare
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save(tmp / BUNDLE_MODEL)
        meta.model_sha256 = file_sha256(tmp / BUNDLE_MODEL)
        meta.versions = library_versions()
        meta.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta.input_size = input_size_of(model)
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        atomic_write_text(
            tmp / BUNDLE_META, json.dumps(asdict(meta), indent=2, default=json_default)
        )
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_bundle(path: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Load a bundle in Keras safe mode.

    With ``verify`` the model file's SHA-256 must match the one recorded in its
    metadata, so a model swapped under its results is caught.
    """
    path = Path(path)
    meta = read_meta(path)
    model_path = path / BUNDLE_MODEL
    if not model_path.is_file():
        raise ModelError(f"No model bundle at {path}: {BUNDLE_MODEL} is missing.")
    if verify and meta.model_sha256 and file_sha256(model_path) != meta.model_sha256:
        raise ModelError(
            f"{model_path} does not match the hash recorded in {BUNDLE_META}: the model was "
            "changed after it was saved, so its recorded metrics are stale. Re-train or "
            "re-save the bundle."
        )
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:
        raise ModelError(f"Could not load {model_path}: {_short(exc)}") from exc
    return Bundle(model=model, meta=meta, path=path)
