"""Codec defences: WebP re-encoding with a flip, and JPEG re-encoding, in memory.

OpenCV is imported when a codec first runs (see :mod:`engine.defences.base`).

Backward passes: BPDA identity for both codecs (quantised DCT / WebP
coefficients: the exact gradient is zero almost everywhere), the exact
gradient for WebP + flip's flip (a permutation: its adjoint is the flip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from engine.defences.base import Defence, swap_rb, width_axis
from engine.errors import ImageError
from engine.params import declared, param

__all__ = ["JPEG", "WebPFlip"]


def _codec(img: np.ndarray, ext: str, quality: int) -> np.ndarray:
    """Encode and decode one image in memory (``cv2.imencode``/``cv2.imdecode``).

    ``ext`` is ``".webp"`` or ``".jpg"``; ``quality`` goes to the codec's own
    quality flag.
    """
    import cv2

    flag = cv2.IMWRITE_WEBP_QUALITY if ext == ".webp" else cv2.IMWRITE_JPEG_QUALITY
    ok, buf = cv2.imencode(ext, swap_rb(img), [flag, quality])
    out = (
        cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if img.ndim == 2 else cv2.IMREAD_COLOR)
        if ok
        else None
    )
    if out is None:  # pragma: no cover - OpenCV built without the codec
        raise ImageError(f"OpenCV could not encode a {img.shape} image as {ext}.")
    return swap_rb(out)


@declared
@dataclass(frozen=True, kw_only=True)
class WebPFlip(Defence):
    """Low-level transformation: WebP re-encoding, then an optional horizontal flip.

    The image is encoded to lossy WebP and decoded in memory
    (``cv2.imencode``/``cv2.imdecode``, quality ``IMWRITE_WEBP_QUALITY``), then
    mirrored left-right. BPDA stand-in: identity for the codec, the exact flip
    for the flip (the flip is linear, so its gradient is the flipped gradient).

    Parameters
    ----------
    quality : int, default=75
        WebP quality, 1 (smallest file, most loss) to 100 (least loss; still lossy).
    flip : bool, default=True
        Mirror the image left-right after the codec.
    """

    quality: int = param(75, 1, 100, 1, "WebP quality (1 = most loss, 100 = least)")
    flip: bool = param(True, help="Mirror left-right after WebP")

    ID: ClassVar[str] = "webp_flip"
    TITLE: ClassVar[str] = "WebP + flip"
    LABEL: ClassVar[str] = "WebP+flip"

    @property
    def mirrors(self) -> bool:  # type: ignore[override]
        """True when ``flip`` is on: the output is the input mirrored left-right."""
        return self.flip

    def _filter(self, img: np.ndarray) -> np.ndarray:
        out = _codec(img, ".webp", self.quality)
        return np.ascontiguousarray(out[:, ::-1]) if self.flip else out

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """BPDA: identity through WebP; the exact (flipped) gradient through the flip."""
        return np.flip(grad, axis=width_axis(grad.shape)) if self.flip else grad


@declared
@dataclass(frozen=True, kw_only=True)
class JPEG(Defence):
    """JPEG re-encoding in memory (``cv2.imencode``/``cv2.imdecode``).

    Removes high-frequency detail, where much adversarial noise lives
    (Dziugaite et al. 2016; Das et al. 2017). Not differentiable; BPDA
    stand-in: identity.

    Parameters
    ----------
    quality : int, default=75
        JPEG quality (``IMWRITE_JPEG_QUALITY``), 1 (most loss) to 100 (least).
    """

    quality: int = param(75, 1, 100, 1, "JPEG quality (1 = most loss, 100 = least)")

    ID: ClassVar[str] = "jpeg"
    TITLE: ClassVar[str] = "JPEG"
    LABEL: ClassVar[str] = "JPEG"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return _codec(img, ".jpg", self.quality)
