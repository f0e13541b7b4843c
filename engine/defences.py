"""Input defences: image transformations applied before the classifier.

A defence is a frozen parameter dataclass (house rule 5). Its tunable
parameters are declared once in ``PARAMS`` (see :mod:`engine.params`);
construction validates them, and calling the instance transforms images::

    >>> import numpy as np
    >>> from engine.defences import NLM, Chain, Bilateral, GuidedFilter
    >>> images = np.zeros((4, 32, 32, 3), np.uint8)
    >>> chain = Chain((NLM(), Bilateral(), GuidedFilter()))
    >>> chain(images).shape
    (4, 32, 32, 3)
    >>> chain.TITLE
    'NLM → Bilateral → Guided'

Available defences (``REGISTRY`` maps each id to its class):

* ``none`` -- :class:`Identity`, "no defence" as a first-class setting;
* ``nlm`` -- :class:`NLM`, non-local means (``cv2.fastNlMeansDenoisingColored``);
* ``bilateral`` -- :class:`Bilateral` (``cv2.bilateralFilter``);
* ``guided`` -- :class:`GuidedFilter`, self-guided (``cv2.ximgproc.guidedFilter``);
* ``gaussian`` -- :class:`GaussianBlur` (``cv2.GaussianBlur``);
* ``median`` -- :class:`MedianBlur` (``cv2.medianBlur``);
* ``webp_flip`` -- :class:`WebPFlip`, the "low-level transformation": WebP
  re-encoding then a horizontal flip;
* ``jpeg`` -- :class:`JPEG` re-encoding;
* ``bit_depth`` -- :class:`BitDepth`, bit-depth reduction (feature squeezing);
* :class:`Chain` -- defences applied in order; :data:`SEED_CHAIN` is the
  seed papers' NLM → bilateral → guided filter chain with default settings.

Images
------
Pixels follow the engine convention (see :mod:`engine`): RGB, ``uint8``,
0-255. Every defence accepts one image ``(H, W, 3)``, a grey image ``(H, W)``
or ``(H, W, 1)``, or a batch ``(N, H, W, 3)`` (or ``(N, H, W, 1)``) and
returns a new array of the same shape and dtype; the input is never modified.
Anything else raises :class:`~engine.errors.ImageError` saying what was given.
Grey images are processed as grey: every OpenCV function used here has a
single-channel variant (``fastNlMeansDenoising`` for NLM, single-channel
JPEG/WebP encoding, and the filters work per channel), so nothing is
replicated to three channels. OpenCV's colour-aware functions (NLM's Lab
conversion, JPEG/WebP's YCbCr conversion) expect BGR, so colour images are
swapped RGB → BGR on the way in and back on the way out.

Batches are spread over a thread pool by :func:`apply_batch` (OpenCV releases
the GIL); the result is identical to applying the defence image by image.

Limits of input-transformation defences
---------------------------------------
Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False Sense of
Security" (ICML), broke every such defence they examined: an adaptive attacker
differentiates *through* the transformation, replacing a non-differentiable
step by a differentiable stand-in on the backward pass (BPDA, usually the
identity). Robustness measured with attacks crafted on the undefended model
(the transfer, or "grey-box", setting that this dashboard shows by default)
therefore **overstates** the security a defence gives against an attacker who
knows it is there. Each defence here documents its BPDA stand-in through
``differentiable`` and :meth:`Defence.estimate_gradient` so that an adaptive
attack can pass through it.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from engine.errors import ImageError, ParamError
from engine.params import Param, as_dict, build, validate

__all__ = [
    "JPEG",
    "NLM",
    "REGISTRY",
    "SEED_CHAIN",
    "Bilateral",
    "BitDepth",
    "Chain",
    "Defence",
    "GaussianBlur",
    "GuidedFilter",
    "Identity",
    "MedianBlur",
    "WebPFlip",
    "apply_batch",
    "describe",
    "from_spec",
    "make_defence",
    "seed_chain",
    "to_spec",
]

_SHAPES = "(H, W, 3), (H, W), (H, W, 1) or a batch (N, H, W, 3)"


# --------------------------------------------------------------------------- input checks


def _check_images(images: Any, owner: str) -> bool:
    """Validate an image or batch; return True for a batch, False for one image."""
    if not isinstance(images, np.ndarray):
        raise ImageError(
            f"{owner}: expected a numpy uint8 array of RGB pixels in 0-255; "
            f"got {type(images).__name__}."
        )
    if images.dtype != np.uint8:
        raise ImageError(
            f"{owner}: expected uint8 pixels in 0-255; got dtype {images.dtype} "
            f"(round and clip to 0-255, then .astype(np.uint8))."
        )
    shape = images.shape
    if images.ndim == 2 or (images.ndim == 3 and shape[-1] in (1, 3)):
        batch = False
    elif images.ndim == 4 and shape[-1] in (1, 3):
        batch = True
    else:
        raise ImageError(f"{owner}: expected images of shape {_SHAPES}; got shape {shape}.")
    h, w = (shape[1], shape[2]) if batch else (shape[0], shape[1])
    if h < 1 or w < 1:
        raise ImageError(f"{owner}: images must have at least one pixel; got shape {shape}.")
    return batch


def _width_axis(shape: tuple[int, ...]) -> int:
    """Axis of the image width for an image, grey image or batch of this shape."""
    return 2 if len(shape) == 4 else 1


def _bgr(img: np.ndarray) -> np.ndarray:
    """RGB <-> BGR for a colour image (contiguous copy); grey images unchanged."""
    return np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 else img


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------- thread control

_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextmanager
def _opencv_single_threaded() -> Iterator[None]:
    """``cv2.setNumThreads(1)`` while any batch runs; the previous value is restored after.

    Reference-counted so that overlapping batches (e.g. two dashboard sessions)
    restore the value that was set before the first one started.
    """
    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                cv2.setNumThreads(_threads_saved)


# --------------------------------------------------------------------------- base class


class Defence:
    """Base class of every input defence.

    Subclasses are frozen, keyword-only dataclasses that declare ``PARAMS``,
    ``ID`` (registry id), ``TITLE`` (owner name in messages and the UI) and
    ``LABEL`` (short name for chain titles and legends), and implement
    :meth:`_filter` for one contiguous ``(H, W, 3)`` RGB or ``(H, W)`` grey
    image.

    Attributes
    ----------
    differentiable : bool
        Whether the transformation has a useful exact gradient. For the
        non-differentiable ones, :meth:`estimate_gradient` is the BPDA
        stand-in (Athalye et al. 2018).
    """

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    differentiable: ClassVar[bool] = False

    def __post_init__(self) -> None:
        validate(self, self.TITLE)
        self._check()

    def _check(self) -> None:
        """Cross-parameter checks (after each parameter passed :func:`validate`)."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Apply the defence to one image or a batch.

        Parameters
        ----------
        images : np.ndarray
            ``uint8`` RGB pixels in 0-255, shaped ``(H, W, 3)``, ``(H, W)``,
            ``(H, W, 1)``, ``(N, H, W, 3)`` or ``(N, H, W, 1)``.

        Returns
        -------
        np.ndarray
            A new ``uint8`` array of the same shape; ``images`` is not modified.
            Batches go through :func:`apply_batch` with the default workers.

        Raises
        ------
        ImageError
            If ``images`` is not a uint8 array of one of the shapes above.
        """
        if _check_images(images, self.TITLE):
            return apply_batch(self, images)
        return self._one(images)

    def _one(self, img: np.ndarray) -> np.ndarray:
        """Apply to one validated image ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``."""
        single = img.ndim == 3 and img.shape[-1] == 1
        work = np.ascontiguousarray(img[..., 0] if single else img)
        out = self._filter(work)
        if out is work or np.may_share_memory(out, img):
            out = out.copy()
        return out.reshape(img.shape)

    def _filter(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """BPDA stand-in: the gradient through the defence, given the upstream gradient.

        The default approximates the transformation by the identity on the
        backward pass, i.e. returns ``grad`` unchanged (Athalye, Carlini &
        Wagner 2018). Filters and codecs are close to the identity on natural
        images, which is what makes this approximation work for the attacker.

        Parameters
        ----------
        images : np.ndarray
            The defence's input (unused by the identity stand-in).
        grad : np.ndarray
            Gradient of the loss with respect to the defence's output, same
            shape as ``images``.

        Returns
        -------
        np.ndarray
            Gradient with respect to the defence's input.
        """
        return grad


# --------------------------------------------------------------------------- defences


@dataclass(frozen=True, kw_only=True)
class Identity(Defence):
    """No defence: returns a copy of the input.

    Exists so that "no defence" is a setting like any other in sweeps and
    result files. It is exactly differentiable (its gradient is the identity).
    """

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    ID: ClassVar[str] = "none"
    TITLE: ClassVar[str] = "No defence"
    LABEL: ClassVar[str] = "None"
    differentiable: ClassVar[bool] = True

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return img.copy()


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

    h: float = 10.0
    h_color: float = 10.0
    template_window: int = 7
    search_window: int = 21

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("h", float, 10.0, 1.0, 30.0, 1.0, "Strength on lightness (0-255 units)"),
        Param("h_color", float, 10.0, 1.0, 30.0, 1.0, "Strength on colour (0-255 units)"),
        Param("template_window", int, 7, 3, 11, 2, "Patch side in pixels (odd)", odd=True),
        Param("search_window", int, 21, 5, 35, 2, "Search window side in pixels (odd)", odd=True),
    )
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
        if img.ndim == 2:
            return cv2.fastNlMeansDenoising(
                img, None, self.h, self.template_window, self.search_window
            )
        out = cv2.fastNlMeansDenoisingColored(
            _bgr(img), None, self.h, self.h_color, self.template_window, self.search_window
        )
        return _bgr(out)


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

    d: int = 9
    sigma_color: float = 75.0
    sigma_space: float = 75.0

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("d", int, 9, 1, 15, 1, "Neighbourhood diameter in pixels"),
        Param("sigma_color", float, 75.0, 1.0, 200.0, 1.0, "Range sigma (0-255 units)"),
        Param("sigma_space", float, 75.0, 1.0, 200.0, 1.0, "Spatial sigma in pixels"),
    )
    ID: ClassVar[str] = "bilateral"
    TITLE: ClassVar[str] = "Bilateral filter"
    LABEL: ClassVar[str] = "Bilateral"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return cv2.bilateralFilter(img, self.d, self.sigma_color, self.sigma_space)


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

    radius: int = 4
    eps: float = 100.0

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("radius", int, 4, 1, 16, 1, "Window radius in pixels"),
        Param(
            "eps",
            float,
            100.0,
            10.0,
            10000.0,
            1.0,
            "Smoothing threshold as a variance in (0-255)² units: 100 flattens detail "
            "with local std below ~10 grey levels",
        ),
    )
    ID: ClassVar[str] = "guided"
    TITLE: ClassVar[str] = "Guided filter"
    LABEL: ClassVar[str] = "Guided"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return cv2.ximgproc.guidedFilter(img, img, self.radius, self.eps)


@dataclass(frozen=True, kw_only=True)
class GaussianBlur(Defence):
    """Gaussian blur, ``cv2.GaussianBlur``.

    The kernel side is derived from sigma as ``2 * ceil(3 * sigma) + 1``
    (three sigmas each side). Linear, hence exactly differentiable in
    principle; the BPDA stand-in used here is still the identity.

    Parameters
    ----------
    sigma : float, default=1
        Standard deviation in pixels.
    """

    sigma: float = 1.0

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("sigma", float, 1.0, 0.1, 5.0, 0.1, "Standard deviation in pixels"),
    )
    ID: ClassVar[str] = "gaussian"
    TITLE: ClassVar[str] = "Gaussian blur"
    LABEL: ClassVar[str] = "Gaussian"

    @property
    def kernel(self) -> int:
        """Kernel side in pixels, ``2 * ceil(3 * sigma) + 1``."""
        return 2 * math.ceil(3.0 * self.sigma) + 1

    def _filter(self, img: np.ndarray) -> np.ndarray:
        k = self.kernel
        return cv2.GaussianBlur(img, (k, k), sigmaX=self.sigma, sigmaY=self.sigma)


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

    kernel: int = 3

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("kernel", int, 3, 3, 15, 2, "Window side in pixels (odd)", odd=True),
    )
    ID: ClassVar[str] = "median"
    TITLE: ClassVar[str] = "Median blur"
    LABEL: ClassVar[str] = "Median"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return cv2.medianBlur(img, self.kernel)


def _codec(img: np.ndarray, ext: str, flag: int, quality: int) -> np.ndarray:
    """Encode and decode one image in memory (``cv2.imencode``/``cv2.imdecode``)."""
    ok, buf = cv2.imencode(ext, _bgr(img), [flag, quality])
    if not ok:  # pragma: no cover - OpenCV built without the codec
        raise ImageError(f"OpenCV could not encode a {img.shape} image as {ext}.")
    out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if img.ndim == 2 else cv2.IMREAD_COLOR)
    return _bgr(out)


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

    quality: int = 75
    flip: bool = True

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("quality", int, 75, 1, 100, 1, "WebP quality (1 = most loss, 100 = least)"),
        Param("flip", bool, True, help="Mirror left-right after WebP"),
    )
    ID: ClassVar[str] = "webp_flip"
    TITLE: ClassVar[str] = "WebP + flip"
    LABEL: ClassVar[str] = "WebP+flip"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        out = _codec(img, ".webp", cv2.IMWRITE_WEBP_QUALITY, self.quality)
        return np.ascontiguousarray(out[:, ::-1]) if self.flip else out

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """BPDA: identity through WebP; the exact (flipped) gradient through the flip."""
        return np.flip(grad, axis=_width_axis(grad.shape)) if self.flip else grad


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

    quality: int = 75

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("quality", int, 75, 1, 100, 1, "JPEG quality (1 = most loss, 100 = least)"),
    )
    ID: ClassVar[str] = "jpeg"
    TITLE: ClassVar[str] = "JPEG"
    LABEL: ClassVar[str] = "JPEG"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        return _codec(img, ".jpg", cv2.IMWRITE_JPEG_QUALITY, self.quality)


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

    bits: int = 5

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("bits", int, 5, 1, 8, 1, "Bits kept per channel (8 = unchanged)"),
    )
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
        return cv2.LUT(img, self.table)


# --------------------------------------------------------------------------- chain


@dataclass(frozen=True)
class Chain(Defence):
    """Several defences applied in order, e.g. the seed chain NLM → bilateral → guided.

    Nested chains are flattened. ``TITLE`` and ``ID`` are derived from the
    members' labels and ids (``"NLM → Bilateral → Guided"``,
    ``"nlm+bilateral+guided"``). BPDA: the members' stand-ins applied in
    reverse order (all stand-ins here ignore the image, so no intermediate
    outputs are needed).

    Parameters
    ----------
    defences : tuple of Defence
        Non-empty; applied first to last.
    """

    defences: tuple[Defence, ...]

    PARAMS: ClassVar[tuple[Param, ...]] = ()

    def __post_init__(self) -> None:
        members = self.defences
        if isinstance(members, Defence) or not isinstance(members, (tuple, list)):
            raise ParamError(
                f"Chain: 'defences' must be a non-empty tuple of defences; "
                f"got {type(members).__name__}."
            )
        flat: list[Defence] = []
        for i, m in enumerate(members):
            if isinstance(m, Chain):
                flat.extend(m.defences)
            elif isinstance(m, Defence):
                flat.append(m)
            else:
                raise ParamError(f"Chain: member {i} must be a defence (e.g. NLM()); got {m!r}.")
        if not flat:
            raise ParamError("Chain: 'defences' must be a non-empty tuple of defences; got ().")
        object.__setattr__(self, "defences", tuple(flat))

    @property
    def ID(self) -> str:  # type: ignore[override]
        """``"+"``-joined member ids, e.g. ``"nlm+bilateral+guided"``."""
        return "+".join(m.ID for m in self.defences)

    @property
    def TITLE(self) -> str:  # type: ignore[override]
        """Arrow-joined member labels, e.g. ``"NLM → Bilateral → Guided"``."""
        return " → ".join(m.LABEL for m in self.defences)

    @property
    def LABEL(self) -> str:  # type: ignore[override]
        """Same as :attr:`TITLE`."""
        return self.TITLE

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        """True only if every member is differentiable."""
        return all(m.differentiable for m in self.defences)

    def _one(self, img: np.ndarray) -> np.ndarray:
        out = img
        for m in self.defences:
            out = m._one(out)
        return out

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """BPDA through the chain: members' stand-ins applied last to first."""
        for m in reversed(self.defences):
            grad = m.estimate_gradient(images, grad)
        return grad


# --------------------------------------------------------------------------- registry & specs

REGISTRY: dict[str, type[Defence]] = {
    cls.ID: cls
    for cls in (
        Identity,
        NLM,
        Bilateral,
        GuidedFilter,
        GaussianBlur,
        MedianBlur,
        WebPFlip,
        JPEG,
        BitDepth,
    )
}
"""Defence id -> class. Chains are built from these (see :func:`make_defence`)."""


def seed_chain() -> Chain:
    """The seed papers' chain: NLM → bilateral → guided filter, default settings."""
    return Chain((NLM(), Bilateral(), GuidedFilter()))


SEED_CHAIN: Chain = seed_chain()
"""NLM → bilateral → guided filter with default settings (id ``nlm+bilateral+guided``)."""


def make_defence(defence_id: str, params: Mapping[str, Any] | None = None) -> Defence:
    """Build a defence from its id and a dict of parameters.

    Parameters
    ----------
    defence_id : str
        A key of :data:`REGISTRY` (e.g. ``"nlm"``), or ``"+"``-joined keys for a
        :class:`Chain` (e.g. ``"nlm+bilateral+guided"``).
    params : dict, optional
        Parameter values; missing ones take their declared defaults. For a
        chain, a dict from member id to that member's parameters (a member id
        that occurs twice gets the same parameters each time).

    Returns
    -------
    Defence

    Raises
    ------
    ParamError
        Unknown id (the message lists the known ids), unknown parameter, or a
        value outside its declared range.
    """
    if not isinstance(defence_id, str):
        raise ParamError(f"Defence id must be a string; got {defence_id!r}.")
    if params is not None and not isinstance(params, Mapping):
        raise ParamError(f"Defence parameters must be a dict; got {type(params).__name__}.")
    if "+" in defence_id:
        ids = defence_id.split("+")
        per_member = dict(params or {})
        unknown = sorted(set(per_member) - set(ids))
        if unknown:
            raise ParamError(
                f"Chain {defence_id}: parameters given for {', '.join(unknown)}, "
                f"which is not in the chain; members: {', '.join(ids)}."
            )
        return Chain(tuple(make_defence(i, per_member.get(i)) for i in ids))
    cls = REGISTRY.get(defence_id)
    if cls is None:
        raise ParamError(
            f"Unknown defence {defence_id!r}; known: {', '.join(REGISTRY)} "
            f"(join ids with '+' for a chain)."
        )
    if params and not cls.PARAMS:
        raise ParamError(f"{cls.TITLE}: takes no parameters; got {', '.join(sorted(params))}.")
    return build(cls, dict(params or {}), owner=cls.TITLE)


def to_spec(defence: Defence) -> dict[str, Any] | list[dict[str, Any]]:
    """JSON-able description of a defence, for result files.

    A single defence gives ``{"id": ..., "params": {...}}``; a chain gives the
    list of its members' specs. :func:`from_spec` inverts it.
    """
    if isinstance(defence, Chain):
        return [{"id": m.ID, "params": as_dict(m)} for m in defence.defences]
    if not isinstance(defence, Defence):
        raise ParamError(f"to_spec: expected a defence; got {defence!r}.")
    return {"id": defence.ID, "params": as_dict(defence)}


def from_spec(spec: str | Mapping[str, Any] | Sequence[Any]) -> Defence:
    """Rebuild a defence from :func:`to_spec` output (or from a bare id string).

    Raises
    ------
    ParamError
        Malformed spec, unknown id or invalid parameters.
    """
    if isinstance(spec, str):
        return make_defence(spec)
    if isinstance(spec, Mapping):
        extra = sorted(set(spec) - {"id", "params"})
        if "id" not in spec or extra:
            raise ParamError(
                f"Defence spec must be {{'id': ..., 'params': {{...}}}}; got {dict(spec)!r}."
            )
        return make_defence(spec["id"], spec.get("params"))
    if isinstance(spec, Sequence):
        if not spec:
            raise ParamError("Defence spec: a chain needs at least one member; got [].")
        return Chain(tuple(from_spec(s) for s in spec))
    raise ParamError(f"Defence spec must be a dict, a list or an id; got {spec!r}.")


def describe(defence: Defence) -> str:
    """Short label with parameters, e.g. ``NLM(h=10, h_color=10, template_window=7, ...)``.

    Chains join their members with arrows; :class:`Identity` is ``"None"``.
    """
    if isinstance(defence, Chain):
        return " → ".join(describe(m) for m in defence.defences)
    if not defence.PARAMS:
        return defence.LABEL
    inner = ", ".join(f"{p.name}={_fmt(getattr(defence, p.name))}" for p in defence.PARAMS)
    return f"{defence.LABEL}({inner})"


# --------------------------------------------------------------------------- batches


def apply_batch(defence: Defence, images: np.ndarray, *, workers: int | None = None) -> np.ndarray:
    """Apply a defence to a batch, one image per task on a thread pool.

    OpenCV releases the GIL, so threads keep all cores busy; OpenCV's own
    threading is switched off (``cv2.setNumThreads(1)``) while the batch runs
    and restored afterwards, so the two levels of parallelism do not compete.
    The result is identical to ``np.stack([defence(img) for img in images])``.

    Parameters
    ----------
    defence : Defence
        Any defence or chain.
    images : np.ndarray
        ``(N, H, W, 3)`` or ``(N, H, W, 1)`` uint8; a single image is passed
        to ``defence`` directly.
    workers : int, optional
        Threads to use; default ``os.cpu_count()``. ``1`` runs a plain loop.

    Returns
    -------
    np.ndarray
        New uint8 array of the same shape.
    """
    if not isinstance(defence, Defence):
        raise ParamError(f"apply_batch: expected a defence; got {defence!r}.")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ParamError(f"apply_batch: 'workers' must be a positive integer; got {workers!r}.")
    if not _check_images(images, defence.TITLE):
        return defence._one(images)
    n = len(images)
    out = np.empty_like(images)
    workers = min(workers or os.cpu_count() or 1, n)
    if workers <= 1:
        for i in range(n):
            out[i] = defence._one(images[i])
        return out

    def task(i: int) -> None:
        out[i] = defence._one(images[i])

    with _opencv_single_threaded(), ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(task, range(n)):
            pass  # re-raises a worker's exception here
    return out
