"""Filter defences: identity, non-local means, bilateral, guided, Gaussian, median, bit depth.

Each imports OpenCV when it first filters (see :mod:`engine.defences.base`).

Backward passes (:attr:`~engine.defences.base.Defence.backward`): exact for
the identity and the Gaussian blur (a linear map: its adjoint,
:mod:`engine.defences.linear`); the BPDA identity for NLM, bilateral, guided,
median and bit depth, whose exact gradients are either zero almost everywhere
(median, bit depth: piecewise constant) or depend on the image through
data-dependent weights that OpenCV does not expose (NLM, bilateral, guided).
All five are close to the identity on natural images, which is what makes the
straight-through estimate work (Athalye, Carlini & Wagner 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from engine.defences.base import BACKWARD_EXACT, Defence, swap_rb
from engine.defences.linear import apply_separable, gaussian_matrix
from engine.errors import ParamError
from engine.params import declared, param

__all__ = ["NLM", "Bilateral", "BitDepth", "GaussianBlur", "GuidedFilter", "Identity", "MedianBlur"]


@declared
@dataclass(frozen=True, kw_only=True)
class Identity(Defence):
    """No defence: returns a copy of the input.

    Exists so that "no defence" is a setting like any other in sweeps and
    result files. It is exactly differentiable (its gradient is the identity),
    and its attacker's forward pass is the identity on float pixels too (no
    rounding), so an adaptive attack through it is the plain attack.
    """

    ID: ClassVar[str] = "none"
    TITLE: ClassVar[str] = "No defence"
    LABEL: ClassVar[str] = "None"
    differentiable: ClassVar[bool] = True
    backward: ClassVar[str] = BACKWARD_EXACT

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return img.copy()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` itself: the identity needs no rounding."""
        return x


@declared
@dataclass(frozen=True, kw_only=True)
class NLM(Defence):
    """Non-local means denoising (Buades et al. 2005).

    Colour images use ``cv2.fastNlMeansDenoisingColored`` (which works in
    CIE Lab: ``h`` for lightness, ``h_color`` for the two colour components);
    grey images use ``cv2.fastNlMeansDenoising`` with ``h``. Not
    differentiable; BPDA stand-in: identity.

    Parameters
    ----------
    h : float, default=10
        Filter strength for lightness, in 0-255 intensity units. Larger values
        remove more noise (and more detail).
    h_color : float, default=10
        Filter strength for the colour components (colour images only).
    template_window : int, default=7
        Side of the patch compared between pixels, in pixels (odd).
    search_window : int, default=21
        Side of the window searched for similar patches, in pixels (odd,
        at least ``template_window``). Cost grows with its square.
    """

    h: float = param(10.0, 1.0, 30.0, 1.0, "Strength on lightness (0-255 units)")
    h_color: float = param(10.0, 1.0, 30.0, 1.0, "Strength on colour (0-255 units)")
    template_window: int = param(7, 3, 11, 2, "Patch side in pixels (odd)", odd=True)
    search_window: int = param(21, 5, 35, 2, "Search window side in pixels (odd)", odd=True)

    ID: ClassVar[str] = "nlm"
    TITLE: ClassVar[str] = "Non-local means"
    LABEL: ClassVar[str] = "NLM"

    def _check(self) -> None:
        if self.template_window > self.search_window:
            raise ParamError(
                f"{self.TITLE}: 'template_window' must be at most 'search_window' "
                f"({self.search_window}); got {self.template_window}."
            )

    def _filter(self, img: np.ndarray) -> np.ndarray:
        import cv2

        if img.ndim == 2:
            return cv2.fastNlMeansDenoising(
                img, None, self.h, self.template_window, self.search_window
            )
        out = cv2.fastNlMeansDenoisingColored(
            swap_rb(img), None, self.h, self.h_color, self.template_window, self.search_window
        )
        return swap_rb(out)


@declared
@dataclass(frozen=True, kw_only=True)
class Bilateral(Defence):
    """Bilateral filter (Tomasi & Manduchi 1998), ``cv2.bilateralFilter``.

    Edge-preserving smoothing: each pixel becomes an average of its
    neighbours weighted by spatial distance and by colour difference. Not
    usefully differentiable; BPDA stand-in: identity.

    Parameters
    ----------
    d : int, default=9
        Diameter of the pixel neighbourhood, in pixels.
    sigma_color : float, default=75
        Range sigma in 0-255 intensity units: colours further apart than about
        this are not mixed.
    sigma_space : float, default=75
        Spatial sigma in pixels (within the ``d`` neighbourhood).
    """

    d: int = param(9, 1, 15, 1, "Neighbourhood diameter in pixels")
    sigma_color: float = param(75.0, 1.0, 200.0, 1.0, "Range sigma (0-255 units)")
    sigma_space: float = param(75.0, 1.0, 200.0, 1.0, "Spatial sigma in pixels")

    ID: ClassVar[str] = "bilateral"
    TITLE: ClassVar[str] = "Bilateral filter"
    LABEL: ClassVar[str] = "Bilateral"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.bilateralFilter(img, self.d, self.sigma_color, self.sigma_space)


@declared
@dataclass(frozen=True, kw_only=True)
class GuidedFilter(Defence):
    """Self-guided filter (He, Sun & Tang 2010), ``cv2.ximgproc.guidedFilter``.

    The image is its own guide, which makes the filter edge-preserving
    smoothing. OpenCV works on the raw 0-255 values, so ``eps`` is a local
    *variance* in (0-255)² units: windows whose intensity variance is well
    below ``eps`` are flattened to their mean, windows well above keep their
    edges. ``eps = s**2`` keeps structure with local standard deviation above
    about ``s`` grey levels (``eps=100`` -> about 10 levels; the paper's
    0.1² on 0-1 images is 650 here). The range starts at 10 because OpenCV
    computes in float32 on 0-255 values: with a smaller ``eps`` an exactly
    flat colour region next to a sharp edge can make the 3×3 covariance
    solve break down (a 0/200 step blurs by up to 80 levels at ``eps=1``).
    Not differentiable in practice; BPDA stand-in: identity.

    Parameters
    ----------
    radius : int, default=4
        Window radius in pixels (window side ``2 * radius + 1``).
    eps : float, default=100
        Regularisation, in (0-255)² intensity-variance units.
    """

    radius: int = param(4, 1, 16, 1, "Window radius in pixels")
    eps: float = param(
        100.0,
        10.0,
        10000.0,
        1.0,
        "Smoothing threshold as a variance in (0-255)² units: 100 flattens detail "
        "with local std below ~10 grey levels",
        ui_high=2000.0,
    )

    ID: ClassVar[str] = "guided"
    TITLE: ClassVar[str] = "Guided filter"
    LABEL: ClassVar[str] = "Guided"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.ximgproc.guidedFilter(img, img, self.radius, self.eps)


@declared
@dataclass(frozen=True, kw_only=True)
class GaussianBlur(Defence):
    """Gaussian blur, ``cv2.GaussianBlur``.

    The kernel side is derived from sigma as ``2 * ceil(3 * sigma) + 1``
    (three sigmas each side). Linear, hence exactly differentiable: the
    backward pass is the exact adjoint of the blur with OpenCV's
    reflect-101 border (:func:`engine.defences.linear.gaussian_matrix`; only
    the final rounding to uint8 is passed straight through).

    Parameters
    ----------
    sigma : float, default=1
        Standard deviation in pixels.
    """

    sigma: float = param(1.0, 0.1, 5.0, 0.1, "Standard deviation in pixels")

    ID: ClassVar[str] = "gaussian"
    TITLE: ClassVar[str] = "Gaussian blur"
    LABEL: ClassVar[str] = "Gaussian"
    differentiable: ClassVar[bool] = True
    backward: ClassVar[str] = BACKWARD_EXACT

    @property
    def kernel(self) -> int:
        """Kernel side in pixels, ``2 * ceil(3 * sigma) + 1``."""
        return 2 * math.ceil(3.0 * self.sigma) + 1

    def _filter(self, img: np.ndarray) -> np.ndarray:
        import cv2

        k = self.kernel
        return cv2.GaussianBlur(img, (k, k), sigmaX=self.sigma, sigmaY=self.sigma)

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Exact: the adjoint of the blur, ``M_h.T @ G @ M_w`` per channel (float32)."""
        g = np.asarray(grad)
        h, w = (g.shape[1], g.shape[2]) if g.ndim == 4 else (g.shape[0], g.shape[1])
        mh = gaussian_matrix(h, self.sigma, self.kernel)
        mw = gaussian_matrix(w, self.sigma, self.kernel)
        return apply_separable(g, mh.T, mw.T)


@declared
@dataclass(frozen=True, kw_only=True)
class MedianBlur(Defence):
    """Median filter, ``cv2.medianBlur`` (each channel separately).

    Removes isolated outliers (salt-and-pepper noise) exactly. Not
    differentiable; BPDA stand-in: identity.

    Parameters
    ----------
    kernel : int, default=3
        Side of the square window in pixels (odd).
    """

    kernel: int = param(3, 3, 15, 2, "Window side in pixels (odd)", odd=True)

    ID: ClassVar[str] = "median"
    TITLE: ClassVar[str] = "Median blur"
    LABEL: ClassVar[str] = "Median"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.medianBlur(img, self.kernel)


@declared
@dataclass(frozen=True, kw_only=True)
class BitDepth(Defence):
    """Bit-depth reduction, the "feature squeezing" of Xu, Evans & Qi (2018).

    Each value is quantised to ``2**bits`` evenly spaced levels of 0-255:
    ``round(round(x * L / 255) * 255 / L)`` with ``L = 2**bits - 1`` (exact
    integer arithmetic; no ties can occur). ``bits=8`` is the identity;
    ``bits=1`` maps 0-127 to 0 and 128-255 to 255. Applied with ``cv2.LUT``.
    Piecewise constant (zero gradient almost everywhere); BPDA stand-in:
    identity.

    Parameters
    ----------
    bits : int, default=5
        Bits kept per channel, 1 to 8.
    """

    bits: int = param(5, 1, 8, 1, "Bits kept per channel (8 = unchanged)")

    ID: ClassVar[str] = "bit_depth"
    TITLE: ClassVar[str] = "Bit-depth reduction"
    LABEL: ClassVar[str] = "Bits"

    @property
    def table(self) -> np.ndarray:
        """The 256-entry lookup table from input to output value."""
        levels = 2**self.bits - 1
        x = np.arange(256, dtype=np.int64)
        q = (2 * x * levels + 255) // 510  # round(x * levels / 255)
        return ((q * 510 + levels) // (2 * levels)).astype(np.uint8)  # round(q * 255 / levels)

    def _filter(self, img: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.LUT(img, self.table)
