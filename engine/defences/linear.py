"""Separable linear image maps: their forward pass, their adjoint, and the ones defences use.

A *separable* map acts on each channel of an ``(H, W)`` image as
``Y = M_h @ X @ M_w.T`` with an ``(H', H)`` row matrix ``M_h`` and a
``(W', W)`` column matrix ``M_w``. Its adjoint (the backward pass of the
map, ``<A x, y> = <x, A^T y>``) is ``X' = M_h.T @ Y @ M_w``: the same
function with the matrices transposed. Two defences are such maps:

* the Gaussian blur with OpenCV's default border (``BORDER_REFLECT_101``):
  :func:`gaussian_matrix`, whose forward pass matches ``cv2.GaussianBlur`` on
  float images to float precision (on uint8 images OpenCV also rounds);
* a resize followed by padding (random resize-and-pad, Xie et al. 2018):
  :func:`resize_pad_matrix`, bilinear with pixel centres at ``i + 0.5``
  (OpenCV's ``INTER_LINEAR`` convention) and zero padding.

Matrices are float32; a batch is two matrix products per image.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["apply_separable", "gaussian_matrix", "reflect_101", "resize_pad_matrix"]


def reflect_101(index: np.ndarray, n: int) -> np.ndarray:
    """Indices outside ``[0, n)`` reflected without repeating the edge (``dcb|abcd|cba``).

    Repeated reflection as in ``cv2.borderInterpolate(..., cv2.BORDER_REFLECT_101)``.
    """
    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    m = np.mod(index, period)
    return np.where(m < n, m, period - m)


@functools.lru_cache(maxsize=64)
def gaussian_matrix(n: int, sigma: float, kernel: int) -> np.ndarray:
    """The ``(n, n)`` matrix of a 1-D Gaussian blur with a reflect-101 border.

    Parameters
    ----------
    n : int
        Length of the axis (image height or width).
    sigma : float
        Standard deviation in pixels.
    kernel : int
        Odd kernel side, as given to ``cv2.GaussianBlur``; the taps are
        ``cv2.getGaussianKernel(kernel, sigma)``.

    Returns
    -------
    np.ndarray
        Read-only float32 ``(n, n)``; row ``i`` holds the weights output pixel
        ``i`` gives to each input pixel.
    """
    import cv2

    taps = cv2.getGaussianKernel(kernel, sigma).ravel()
    r = kernel // 2
    m = np.zeros((n, n), np.float64)
    rows = np.arange(n)
    for t, w in zip(range(-r, r + 1), taps, strict=True):
        np.add.at(m, (rows, reflect_101(rows + t, n)), w)
    out = m.astype(np.float32)
    out.flags.writeable = False
    return out


def resize_pad_matrix(n: int, size: int, offset: int) -> np.ndarray:
    """The ``(n, n)`` matrix that resizes an axis of length ``n`` to ``size`` and pads it back.

    Output pixels ``offset .. offset + size - 1`` are the bilinear resize of
    the input (pixel centres at ``i + 0.5``, edges clamped, as OpenCV's
    ``INTER_LINEAR``); the others are padding, zero.

    Parameters
    ----------
    n : int
        Length of the axis, before and after.
    size : int
        Length after resizing, ``1 <= size <= n``.
    offset : int
        Padding before the resized part, ``0 <= offset <= n - size``.
    """
    if not 1 <= size <= n or not 0 <= offset <= n - size:
        raise ValueError(
            f"resize_pad_matrix: need 1 <= size <= n and 0 <= offset <= n - size; "
            f"got n={n}, size={size}, offset={offset}."
        )
    src = (np.arange(size) + 0.5) * (n / size) - 0.5
    src = np.clip(src, 0.0, n - 1.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - lo
    m = np.zeros((n, n), np.float64)
    rows = np.arange(size) + offset
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m.astype(np.float32)


def apply_separable(x: np.ndarray, mh: np.ndarray, mw: np.ndarray) -> np.ndarray:
    """``mh @ X @ mw.T`` for every channel of every image of ``x``, in float32.

    Parameters
    ----------
    x : np.ndarray
        ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)``.
    mh, mw : np.ndarray
        ``(H', H)`` and ``(W', W)``. The adjoint of the map is
        ``apply_separable(y, mh.T, mw.T)``.

    Returns
    -------
    np.ndarray
        float32 ``(H', W')``, ``(H', W', C)`` or ``(N, H', W', C)``.
    """
    a = np.asarray(x, np.float32)
    grey = a.ndim == 2
    if grey:
        a = a[..., None]
    # rows: contract the height axis; columns: the width axis (BLAS matrix products)
    out = np.matmul(mh, a.reshape(*a.shape[:-2], a.shape[-2] * a.shape[-1]))
    out = out.reshape(*out.shape[:-1], a.shape[-2], a.shape[-1])
    out = np.matmul(np.swapaxes(out, -1, -2), mw.T)
    out = np.ascontiguousarray(np.swapaxes(out, -1, -2))
    return out[..., 0] if grey else out
