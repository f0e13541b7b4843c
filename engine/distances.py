"""Perturbation size and image similarity, in the project's 0-255 pixel units.

Pure numpy plus OpenCV's separable filter: L-infinity, L2 and the share of
changed pixels of a perturbation (:func:`perturbation_norms`), PSNR and SSIM
(Wang et al. 2004) between two images or two batches, and
:func:`image_distances`, all three for a batch in one threaded pass.
Foolbox calls this module ``distances``; the metrics of a results row that
measure images rather than predictions come from here.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike

from engine import PIXEL_MAX
from engine.errors import ParamError

__all__ = [
    "image_distances",
    "perturbation_norms",
    "psnr",
    "psnr_batch",
    "ssim",
    "ssim_batch",
]

#: SSIM constants of Wang et al. (2004).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _image_pair(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ParamError(
            f"{names[0]} and {names[1]} must have the same shape; got {x.shape} and {y.shape}."
        )
    return x, y


def _as_batch(x: np.ndarray, name: str) -> np.ndarray:
    """(H, W) -> (1, H, W, 1); (H, W, C) -> (1, H, W, C); (N, H, W, C) unchanged."""
    if x.ndim == 2:
        return x[None, :, :, None]
    if x.ndim == 3:
        return x[None]
    if x.ndim == 4:
        return x
    raise ParamError(
        f"{name} must be an image (H, W), (H, W, C) or a batch (N, H, W, C); got shape {x.shape}."
    )


def perturbation_norms(clean: ArrayLike, adv: ArrayLike) -> dict[str, np.ndarray]:
    r"""Size of the perturbation :math:`\delta = adv - clean`, per image, in 0-255 units.

    Computed in float64, so uint8 inputs cannot wrap around (0 vs 255 gives
    255, not 1).

    Parameters
    ----------
    clean, adv : array-like, same shape
        A batch ``(N, H, W, C)``, or one image ``(H, W, C)`` or ``(H, W)``
        (a single image is treated as a batch of one).

    Returns
    -------
    dict[str, numpy.ndarray]
        Each value has shape ``(N,)`` (``(1,)`` for a single image):

        * ``linf``: :math:`\max |\delta|` over pixels and channels;
        * ``l2``: :math:`\sqrt{\sum \delta^2}` over pixels and channels;
        * ``l0_share``: share of pixels (H x W positions) with any channel
          changed, in [0, 1].
    """
    x, y = _image_pair(clean, adv, ("clean", "adv"))
    d = _as_batch(y - x, "clean")
    n = d.shape[0]
    flat = d.reshape(n, -1)
    if flat.shape[1] == 0:
        raise ParamError(f"clean must not be empty; got shape {x.shape}.")
    changed = np.any(d != 0, axis=-1).reshape(n, -1)
    return {
        "linf": np.abs(flat).max(axis=1),
        "l2": np.sqrt(np.sum(flat * flat, axis=1)),
        "l0_share": changed.mean(axis=1),
    }


def _check_range(data_range: float) -> float:
    if not (isinstance(data_range, int | float) and math.isfinite(data_range) and data_range > 0):
        raise ParamError(f"data_range must be a positive number; got {data_range!r}.")
    return float(data_range)


def psnr(a: ArrayLike, b: ArrayLike, data_range: float = PIXEL_MAX) -> float:
    r"""Peak signal-to-noise ratio in dB, over the whole array.

    .. math:: \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}},
              \quad \mathrm{MSE} = \overline{(a - b)^2}

    with :math:`R` = ``data_range`` (255 for the project's pixels). ``inf``
    for identical images. For per-image values of a batch use
    :func:`psnr_batch`.
    """
    r = _check_range(data_range)
    x, y = _image_pair(a, b, ("a", "b"))
    if x.size == 0:
        raise ParamError("a must not be empty.")
    return float(_psnr_from_mse(np.mean((x - y) ** 2), r))


def _psnr_from_mse(mse: np.ndarray | float, r: float) -> np.ndarray:
    mse = np.asarray(mse, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(r * r / np.where(mse > 0, mse, 1.0)), np.inf)


def psnr_batch(a: ArrayLike, b: ArrayLike, data_range: float = PIXEL_MAX) -> np.ndarray:
    """PSNR of each image pair of two ``(N, H, W, C)`` batches; shape ``(N,)``.

    See :func:`psnr`. ``inf`` where a pair is identical.
    """
    r = _check_range(data_range)
    x, y = _image_pair(a, b, ("a", "b"))
    if x.ndim != 4 or x.size == 0:
        raise ParamError(f"a must be a non-empty batch (N, H, W, C); got shape {x.shape}.")
    return _psnr_from_mse(np.mean((x - y) ** 2, axis=(1, 2, 3)), r)


def _gaussian_kernel() -> np.ndarray:
    half = SSIM_WINDOW // 2
    g = np.exp(-(np.arange(-half, half + 1, dtype=np.float64) ** 2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _ssim_one(x: np.ndarray, y: np.ndarray, r: float) -> float:
    """Mean SSIM of one (H, W, C) float64 image pair (valid region, channels averaged).

    The Gaussian filtering is separable and done by ``cv2.sepFilter2D``,
    cropped to the region where the whole window fits (what the authors'
    reference code calls "valid").
    """
    h, w = x.shape[:2]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ParamError(
            f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels "
            f"(its Gaussian window); got {h}x{w}."
        )
    import cv2  # lazily: importing the metrics (as the dashboard does) needs no OpenCV

    g = _gaussian_kernel()
    half = SSIM_WINDOW // 2
    c1 = (SSIM_K1 * r) ** 2
    c2 = (SSIM_K2 * r) ** 2

    def filt(z: np.ndarray) -> np.ndarray:
        res = cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)
        return res[half : h - half, half : w - half]

    total = 0.0
    for c in range(x.shape[2]):
        xc = np.ascontiguousarray(x[:, :, c])
        yc = np.ascontiguousarray(y[:, :, c])
        mx, my = filt(xc), filt(yc)
        mxy = mx * my
        mm = mx * mx + my * my
        # The filter is linear: var_x + var_y = filt(x^2 + y^2) - (mx^2 + my^2).
        num = (2 * mxy + c1) * (2 * (filt(xc * yc) - mxy) + c2)
        den = (mm + c1) * (filt(xc * xc + yc * yc) - mm + c2)
        total += float((num / den).mean())
    return total / x.shape[2]


def _ssim_per_image(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Mean SSIM of each image of two (N, H, W, C) float64 batches; shape (N,)."""
    return np.array([_ssim_one(x[i], y[i], r) for i in range(len(x))], dtype=np.float64)


def image_distances(
    clean: np.ndarray, other: np.ndarray, *, ssim: bool = True, workers: int | None = None
) -> dict[str, np.ndarray]:
    """Per-image L2, L-inf, PSNR and SSIM of ``other`` against ``clean``, threaded.

    The same definitions as :func:`perturbation_norms`, :func:`psnr_batch` and
    :func:`ssim_batch` (0-255 range), computed image by image on a thread pool
    (OpenCV and NumPy release the GIL) without float64 copies of whole batches.
    SSIM is ``NaN`` for images smaller than its window instead of an error.

    Parameters
    ----------
    clean, other : np.ndarray
        ``(N, H, W, C)`` batches in 0-255 (uint8 or float).
    ssim : bool, default=True
        Also compute SSIM (the costly part).
    workers : int, optional
        Threads (default ``os.cpu_count()``).

    Returns
    -------
    dict of str to np.ndarray
        ``"l2"``, ``"linf"``, ``"psnr"`` and, with ``ssim``, ``"ssim"``; each ``(N,)``.
    """
    n, h, w = clean.shape[:3]
    fits = h >= SSIM_WINDOW and w >= SSIM_WINDOW
    out = {k: np.empty(n) for k in ("l2", "linf", "psnr", *(("ssim",) if ssim else ()))}

    def one(i: int) -> None:
        x = clean[i].astype(np.float64)
        y = other[i].astype(np.float64)
        d = y - x
        sq = float(np.sum(d * d))
        out["l2"][i] = math.sqrt(sq)
        out["linf"][i] = float(np.abs(d).max()) if d.size else 0.0
        mse = sq / d.size
        out["psnr"][i] = 10.0 * math.log10(PIXEL_MAX * PIXEL_MAX / mse) if mse > 0 else math.inf
        if ssim:
            out["ssim"][i] = _ssim_one(x, y, PIXEL_MAX) if fits else math.nan

    workers = min(workers or os.cpu_count() or 1, max(n, 1))
    if workers <= 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(one, range(n)):
                pass  # re-raises a worker's exception here
    return out


def ssim(a: ArrayLike, b: ArrayLike, data_range: float = PIXEL_MAX) -> float:
    r"""Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004).

    .. math:: \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                                        {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}

    with local statistics from an 11x11 Gaussian window (sigma = 1.5,
    normalised, population (co)variances), :math:`C_1 = (K_1 R)^2`,
    :math:`C_2 = (K_2 R)^2`, :math:`K_1 = 0.01`, :math:`K_2 = 0.03`,
    :math:`R` = ``data_range``. The SSIM map is computed where the window fits
    entirely inside the image ("valid", as in the authors' reference code),
    averaged, then averaged over channels. Float64 throughout. Matches
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``.

    Parameters
    ----------
    a, b : array-like, same shape
        One grey ``(H, W)`` or colour ``(H, W, C)`` image, H and W >= 11.
        For per-image values of a batch use :func:`ssim_batch`.
    data_range : float, default=255
        Dynamic range of the pixels.

    Returns
    -------
    float
        1 for identical images; at most 1.
    """
    r = _check_range(data_range)
    x, y = _image_pair(a, b, ("a", "b"))
    if x.ndim not in (2, 3):
        raise ParamError(
            f"ssim takes one image (H, W) or (H, W, C); got shape {x.shape} "
            "(use ssim_batch for batches)."
        )
    return float(_ssim_per_image(_as_batch(x, "a"), _as_batch(y, "b"), r)[0])


def ssim_batch(a: ArrayLike, b: ArrayLike, data_range: float = PIXEL_MAX) -> np.ndarray:
    """SSIM of each image pair of two ``(N, H, W, C)`` batches; shape ``(N,)``.

    See :func:`ssim`.
    """
    r = _check_range(data_range)
    x, y = _image_pair(a, b, ("a", "b"))
    if x.ndim != 4:
        raise ParamError(f"a must be a batch (N, H, W, C); got shape {x.shape}.")
    return _ssim_per_image(x, y, r)
