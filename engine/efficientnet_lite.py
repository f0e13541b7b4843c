"""EfficientNet-Lite in pure Keras 3, and the mapping of PyTorch weights onto it.

EfficientNet-Lite (Tan & Le 2019, the "edge" variants of the TensorFlow TPU
repository) is EfficientNet without squeeze-and-excitation, with ReLU6 instead
of swish, and with the stem (32 filters) and the head (1280 filters) kept fixed
while the width and depth coefficients scale the rest. Lite0 is width 1.0,
depth 1.0 at 224x224; Lite1 and Lite2 scale the same blocks.

The model follows the project's pixel convention: it takes raw RGB in 0-255,
shape ``(N, H, W, 3)``, and normalises it itself with a ``Rescaling`` layer to
``(x - 127) / 128``, the "inception-style" mean and standard deviation the
official Lite checkpoints were trained with (not the ImageNet mean/std).

Padding is TensorFlow's ``SAME`` (``padding="same"``): the total padding
``max((ceil(n / s) - 1) * s + k - n, 0)`` is split ``total // 2`` before and the
rest after. The PyTorch port this module mirrors (``Conv2dStaticSamePadding``)
pads exactly that way, so no explicit ``ZeroPadding2D`` is needed; the
layout tests check it against a numpy reference at even and odd sizes.

Layer names follow the PyTorch module tree (``block{i}_*`` is ``_blocks.{i}``),
so :func:`torch_keys` is a plain table. No torch here: the converter
(``tools/convert_efficientnet_lite.py``) dumps the checkpoint to a numpy ``.npz``
elsewhere and :func:`convert_state_dict` maps those arrays onto Keras variables.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from engine.errors import ModelError, ParamError

#: Normalisation of the official Lite checkpoints: ``(x - MEAN) / STD`` on 0-255 RGB.
MEAN_RGB = 127.0
STD_RGB = 128.0
#: BatchNorm settings of the checkpoints (PyTorch momentum 0.01 is Keras momentum 0.99).
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DEPTH_DIVISOR = 8
STEM_FILTERS = 32
HEAD_FILTERS = 1280
#: Stochastic depth of the original training recipe (active only when training).
DROP_CONNECT_RATE = 0.2

#: The ImageNet-pretrained Lite0 feature extractor shipped with the project.
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "weights"
LITE0_IMAGENET_NOTOP = WEIGHTS_DIR / "efficientnet_lite0_imagenet_notop.weights.h5"


#: The seven stages of EfficientNet-Lite at width and depth 1.0
#: (``efficientnet_lite_builder.py``): repeats, kernel, stride, expansion, filters in, out.
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """Scaling coefficients of one EfficientNet-Lite model.

    ``width`` scales the filters of every stage (not the stem or head),
    ``depth`` the repeats of every stage but the first and last;
    ``resolution`` is the checkpoint's input size and ``dropout`` the rate
    before the classifier.
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float


#: Known variants, by id. Only Lite0 has converted weights so far.
LITE_VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
    "lite1": LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
    "lite2": LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
}


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block after scaling; ``index`` is its position in ``_blocks``."""

    index: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def residual(self) -> bool:
        """Whether the block adds its input to its output."""
        return self.stride == 1 and self.filters_in == self.filters_out


def round_filters(filters: int, width: float) -> int:
    """Scale a filter count by ``width`` and round to a multiple of 8 (never down by > 10 %)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(DEPTH_DIVISOR, int(scaled + DEPTH_DIVISOR / 2) // DEPTH_DIVISOR * DEPTH_DIVISOR)
    if new < 0.9 * scaled:
        new += DEPTH_DIVISOR
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """Scale a stage's repeat count by ``depth``, rounding up."""
    return math.ceil(depth * repeats)


def block_specs(variant: LiteVariant) -> list[BlockSpec]:
    """The flat list of MBConv blocks of a variant, in PyTorch's ``_blocks`` order.

    The first and last stages keep their repeats, and the first block keeps
    the stem's 32 input filters ("fixed stem and head").
    """
    specs: list[BlockSpec] = []
    last = len(STAGES) - 1
    for s, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(STAGES):
        f_in = STEM_FILTERS if s == 0 else round_filters(filters_in, variant.width)
        f_out = round_filters(filters_out, variant.width)
        n = repeats if s in (0, last) else round_repeats(repeats, variant.depth)
        for r in range(n):
            first = r == 0
            specs.append(
                BlockSpec(
                    len(specs),
                    kernel,
                    stride if first else 1,
                    expand,
                    f_in if first else f_out,
                    f_out,
                )
            )
    return specs


def get_variant(variant: str | LiteVariant) -> LiteVariant:
    """Look up a variant by id, with a message listing the known ids."""
    if isinstance(variant, LiteVariant):
        return variant
    try:
        return LITE_VARIANTS[variant]
    except KeyError:
        raise ParamError(
            f"Unknown EfficientNet-Lite variant '{variant}'. Known: {', '.join(LITE_VARIANTS)}."
        ) from None


# --------------------------------------------------------------------------- model
def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(max_value=6.0, name=name)


def _mbconv(x: keras.KerasTensor, spec: BlockSpec, drop_rate: float) -> keras.KerasTensor:
    """Inverted residual: [1x1 expand] -> depthwise kxk -> 1x1 project (+ skip)."""
    p = f"block{spec.index}_"
    inputs = x
    if spec.expand != 1:
        x = keras.layers.Conv2D(
            spec.filters_in * spec.expand, 1, use_bias=False, name=p + "expand_conv"
        )(x)
        x = _bn(p + "expand_bn")(x)
        x = _relu6(p + "expand_relu")(x)
    x = keras.layers.DepthwiseConv2D(
        spec.kernel, strides=spec.stride, padding="same", use_bias=False, name=p + "dwconv"
    )(x)
    x = _bn(p + "dw_bn")(x)
    x = _relu6(p + "dw_relu")(x)
    x = keras.layers.Conv2D(spec.filters_out, 1, use_bias=False, name=p + "project_conv")(x)
    x = _bn(p + "project_bn")(x)
    if spec.residual:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch per sample (training only).
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
        x = keras.layers.Add(name=p + "add")([x, inputs])
    return x


def efficientnet_lite(
    variant: str | LiteVariant = "lite0",
    *,
    input_shape: tuple[int, int, int] | None = None,
    include_top: bool = False,
    num_classes: int = 1000,
    weights: str | os.PathLike | None = None,
    drop_connect_rate: float = DROP_CONNECT_RATE,
) -> keras.Model:
    """Build EfficientNet-Lite taking 0-255 RGB, preprocessing included.

    Parameters
    ----------
    variant : {"lite0", "lite1", "lite2"} or LiteVariant, default="lite0"
        Which coefficients to use.
    input_shape : (H, W, 3), optional
        Defaults to the variant's resolution, square. Any size of at least
        32 works (the feature map is ``ceil(H / 32) x ceil(W / 32)``).
    include_top : bool, default=False
        With the top: global average pooling, dropout and a Dense layer
        ``"logits"`` (``num_classes`` logits, no softmax). Without it the
        model is a feature extractor with output ``(N, H/32, W/32, 1280)``
        after the head's ReLU6, like ``keras.applications(include_top=False)``.
    num_classes : int, default=1000
        Classes of the top (ignored without it).
    weights : path, optional
        A ``.weights.h5`` file of this variant with the same ``include_top``
        (see :func:`load_weights`); ``None`` keeps the random initialisation.
    drop_connect_rate : float, default=0.2
        Stochastic-depth rate of the last block (block ``i`` of ``n`` drops
        with ``rate * i / n``); active only in training.

    Returns
    -------
    keras.Model
        Named after the variant (``"efficientnet_lite0"`` or with ``_features``).
    """
    v = get_variant(variant)
    shape = tuple(input_shape) if input_shape is not None else (v.resolution, v.resolution, 3)
    if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 32:
        raise ParamError(
            f"EfficientNet-Lite: 'input_shape' must be (H, W, 3) with H, W >= 32; got {shape}."
        )
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ParamError(
            f"EfficientNet-Lite: 'drop_connect_rate' must be in [0, 1); got {drop_connect_rate}."
        )
    inputs = keras.Input(shape, name="rgb_0_255")
    x = keras.layers.Rescaling(1.0 / STD_RGB, offset=-MEAN_RGB / STD_RGB, name="lite_preprocess")(
        inputs
    )
    x = keras.layers.Conv2D(
        STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)
    specs = block_specs(v)
    for spec in specs:
        x = _mbconv(x, spec, drop_connect_rate * spec.index / len(specs))
    x = keras.layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    x = _relu6("head_relu")(x)
    name = v.name
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(v.dropout, name="top_dropout")(x)
        x = keras.layers.Dense(num_classes, name="logits")(x)
    else:
        name += "_features"
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Load a ``.weights.h5`` file (e.g. :data:`LITE0_IMAGENET_NOTOP`) into ``model``.

    Raises
    ------
    ModelError
        If the file is missing, is not a Keras 3 weights file, or does not
        fit the model (another variant, or with/without the top).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"EfficientNet-Lite weights file {p} does not exist.")
    if not p.name.endswith(".weights.h5"):
        raise ModelError(f"EfficientNet-Lite weights file {p} must be a Keras '.weights.h5' file.")
    try:
        model.load_weights(p)
    except Exception as exc:
        raise ModelError(
            f"Could not load {p} into {model.name}: {exc}. The file must hold the weights of "
            "the same EfficientNet-Lite variant with the same include_top."
        ) from exc
    return model


# --------------------------------------------------------------------------- conversion
def conv_kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv kernel ``(out, in, kh, kw)`` (OIHW) -> Keras ``(kh, kw, in, out)`` (HWIO)."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def depthwise_kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """PyTorch depthwise kernel ``(C * m, 1, kh, kw)`` -> Keras ``(kh, kw, C, m)``."""
    if weight.ndim != 4 or weight.shape[1] != 1:
        raise ModelError(
            f"A depthwise kernel must have shape (C, 1, kh, kw); got {tuple(weight.shape)}."
        )
    # groups=C with m outputs per group: output channel c*m + j reads input channel c.
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 0, 1)))


def dense_kernel_to_keras(weight: np.ndarray) -> np.ndarray:
    """PyTorch ``Linear.weight`` ``(out, in)`` -> Keras ``Dense.kernel`` ``(in, out)``."""
    return np.ascontiguousarray(weight.T)


_BN_KEYS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_FIXED = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "head_conv": "_conv_head",
    "head_bn": "_bn1",
}
_BLOCK_PARTS = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dwconv": "_depthwise_conv",
    "dw_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}
_BLOCK_RE = re.compile(r"block(\d+)_(\w+)")


def torch_keys(layer_name: str) -> dict[str, str]:
    """State-dict keys of one Keras layer, by Keras variable name.

    >>> torch_keys("block3_dw_bn")["moving_variance"]
    '_blocks.3._bn1.running_var'
    >>> torch_keys("logits")
    {'kernel': '_fc.weight', 'bias': '_fc.bias'}

    Raises
    ------
    ModelError
        If the layer has no counterpart in the PyTorch model.
    """
    if layer_name == "logits":
        return {"kernel": "_fc.weight", "bias": "_fc.bias"}
    module = _FIXED.get(layer_name)
    if module is None and (m := _BLOCK_RE.fullmatch(layer_name)) and m[2] in _BLOCK_PARTS:
        module = f"_blocks.{int(m[1])}.{_BLOCK_PARTS[m[2]]}"
    if module is None:
        raise ModelError(f"Keras layer '{layer_name}' has no counterpart in the PyTorch model.")
    if layer_name.endswith("_bn"):
        return {var: f"{module}.{key}" for var, key in _BN_KEYS.items()}
    return {"kernel": f"{module}.weight"}


def _layout(layer_name: str, var: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    if layer_name.endswith("_bn") or var == "bias":
        return "as is", np.asarray
    if layer_name == "logits":
        return "dense (out, in) -> (in, out)", dense_kernel_to_keras
    if layer_name.endswith("dwconv"):
        return "depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)", depthwise_kernel_to_keras
    return "conv OIHW -> HWIO", conv_kernel_to_keras


def expected_shapes(model: keras.Model) -> dict[str, dict[str, tuple[int, ...]]]:
    """Shapes of every variable of ``model``, by layer name and variable name."""
    return {
        layer.name: {v.name: tuple(int(d) for d in v.shape) for v in layer.weights}
        for layer in model.layers
        if layer.weights
    }


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    expected: Mapping[str, Mapping[str, tuple[int, ...]]],
) -> dict[str, dict[str, np.ndarray]]:
    """Map a PyTorch EfficientNet-Lite state dict onto Keras variables.

    Parameters
    ----------
    state_dict : mapping of str to ndarray
        The checkpoint's tensors as numpy arrays, under their state-dict keys
        (``_conv_stem.weight``, ``_blocks.0._bn1.running_var``, ...).
    expected : mapping
        Keras layer name -> variable name -> shape, as :func:`expected_shapes`
        gives for the target model.

    Returns
    -------
    dict
        Keras layer name -> variable name -> float32 array in Keras layout
        (conv kernels HWIO, depthwise ``(kh, kw, C, 1)``, dense ``(in, out)``,
        BatchNorm gamma/beta/moving mean/moving variance as they are).

    Raises
    ------
    ModelError
        If a key the model needs is missing, a shape does not match after the
        layout conversion, or the state dict holds tensors the model has no
        place for (another variant). ``num_batches_tracked`` counters are
        ignored, and so is the ``_fc`` classifier when ``expected`` has no
        ``"logits"`` layer (a feature extractor).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    used: set[str] = set()
    missing: list[str] = []
    for layer_name, variables in expected.items():
        keys = torch_keys(layer_name)
        out[layer_name] = {}
        for var, shape in variables.items():
            if var not in keys:
                raise ModelError(
                    f"Keras variable '{layer_name}/{var}' has no counterpart in the PyTorch model."
                )
            key = keys[var]
            if key not in state_dict:
                missing.append(key)
                continue
            layout, fn = _layout(layer_name, var)
            source = np.asarray(state_dict[key], dtype=np.float32)
            value = fn(source)
            if tuple(value.shape) != tuple(shape):
                raise ModelError(
                    f"Shape mismatch for Keras variable '{layer_name}/{var}' from state-dict key "
                    f"'{key}': {tuple(source.shape)} becomes {tuple(value.shape)} ({layout}), "
                    f"but the model expects {tuple(shape)}. Is this the checkpoint of the same "
                    "EfficientNet-Lite variant?"
                )
            out[layer_name][var] = value
            used.add(key)
    if missing:
        raise ModelError(
            f"The state dict lacks {len(missing)} key(s) the Keras model needs: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. "
            "Is it an EfficientNet-Lite checkpoint of the same variant?"
        )
    ignored = ("_fc.",) if "logits" not in expected else ()
    unused = sorted(
        k
        for k in state_dict
        if k not in used and not k.endswith("num_batches_tracked") and not k.startswith(ignored)
    )
    if unused:
        raise ModelError(
            f"The state dict has {len(unused)} tensor(s) the Keras model has no place for: "
            f"{', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}. "
            "Is it the checkpoint of another EfficientNet-Lite variant?"
        )
    return out


def assign_converted(model: keras.Model, converted: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Assign the output of :func:`convert_state_dict` to the variables of ``model``."""
    for layer_name, values in converted.items():
        layer = model.get_layer(layer_name)
        by_name = {v.name: v for v in layer.weights}
        for var, value in values.items():
            if var not in by_name:
                raise ModelError(f"Keras layer '{layer_name}' has no variable '{var}'.")
            by_name[var].assign(value)


def fingerprint_image(size: int = 224) -> np.ndarray:
    """A fixed, smooth 0-255 RGB test pattern ``(1, size, size, 3)`` (no randomness)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    rgb = np.stack([xx, yy, 0.5 + 0.5 * np.sin(6.0 * (xx + yy))], axis=-1)
    return (255.0 * rgb)[None].astype(np.float32)


def feature_fingerprint(model: keras.Model, size: int = 224) -> dict[str, float]:
    """Statistics of a feature extractor's pooled output on :func:`fingerprint_image`.

    Recorded next to shipped weights, so that a test (or the app) can tell
    that the weights it loaded are the ones that were verified.
    """
    feats = np.asarray(model(fingerprint_image(size), training=False), dtype=np.float64)
    pooled = feats.mean(axis=(1, 2))[0] if feats.ndim == 4 else feats[0]
    return {
        "mean": float(pooled.mean()),
        "std": float(pooled.std()),
        "max": float(pooled.max()),
        "argmax": float(pooled.argmax()),
    }
