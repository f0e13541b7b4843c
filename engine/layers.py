"""Keras layers of filter-trained models: a fixed filter as the model's first layer.

A *filter-trained* model (seed 004; ``--defence filter:...`` in
:mod:`engine.hardening`) sees every image through the same filter at training
and at test time. Built into the model, the filter is part of what every
attack differentiates (white-box, exact gradient), and a bundle needs nothing
beside its ``model.keras`` to be used correctly.

* :class:`GaussianBlur` matches :class:`engine.defences.GaussianBlur`
  (``cv2.GaussianBlur``, reflect-101 border, kernel ``2 ceil(3 sigma) + 1``)
  to float precision: it is the same separable matrix
  (:func:`engine.defences.linear.gaussian_matrix`), applied on float inputs
  (the input defence also rounds to uint8).
* :class:`MedianBlur` matches ``cv2.medianBlur`` (replicated border) on
  integer-valued inputs; its gradient is the exact almost-everywhere gradient
  of a median (it flows to the pixel that is the median).

Both are registered for Keras' safe-mode loading under the package
``robustlens``; importing :mod:`engine.models` imports this module.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

__all__ = ["GaussianBlur", "MedianBlur", "filter_layer"]


@keras.saving.register_keras_serializable(package="robustlens")
class GaussianBlur(keras.layers.Layer):
    """Fixed Gaussian blur of a ``(N, H, W, C)`` batch (no weights)."""

    def __init__(self, sigma: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigma = float(sigma)
        self.kernel = 2 * int(np.ceil(3.0 * self.sigma)) + 1

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        from engine.defences.linear import gaussian_matrix

        h, w = int(input_shape[1] or 0), int(input_shape[2] or 0)
        if not h or not w:
            raise ValueError("GaussianBlur needs a fixed input height and width.")
        self._mh = ops.convert_to_tensor(gaussian_matrix(h, self.sigma, self.kernel))
        self._mw = ops.convert_to_tensor(gaussian_matrix(w, self.sigma, self.kernel))
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = ops.cast(x, "float32")
        y = ops.einsum("hi,niwc->nhwc", self._mh, x)
        return ops.einsum("wj,nhjc->nhwc", self._mw, y)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sigma": self.sigma}


@keras.saving.register_keras_serializable(package="robustlens")
class MedianBlur(keras.layers.Layer):
    """Fixed ``kernel x kernel`` median filter of a ``(N, H, W, C)`` batch (no weights)."""

    def __init__(self, kernel: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(kernel) < 3 or int(kernel) % 2 == 0:
            raise ValueError(f"MedianBlur: kernel must be odd and >= 3; got {kernel!r}.")
        self.kernel = int(kernel)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        x = ops.cast(x, "float32")
        r = self.kernel // 2
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        # replicated border, as cv2.medianBlur: clamp the indices
        rows = ops.clip(ops.arange(-r, h + r), 0, h - 1)
        cols = ops.clip(ops.arange(-r, w + r), 0, w - 1)
        padded = ops.take(ops.take(x, rows, axis=1), cols, axis=2)
        views = [
            padded[:, i : i + h, j : j + w, :]
            for i in range(self.kernel)
            for j in range(self.kernel)
        ]
        stack = ops.stack(views, axis=-1)
        middle = self.kernel * self.kernel // 2 + 1
        return ops.top_k(stack, middle, sorted=True)[0][..., -1]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel": self.kernel}


def filter_layer(method: str, params: dict[str, Any]) -> keras.layers.Layer:
    """The layer of a ``filter:METHOD`` training-time defence (:mod:`engine.hardening`)."""
    if method == "gaussian":
        return GaussianBlur(sigma=float(params.get("sigma", 1.0)), name="train_filter")
    if method == "median":
        return MedianBlur(kernel=int(params.get("kernel", 3)), name="train_filter")
    raise ValueError(f"No filter layer {method!r}; use gaussian or median.")
