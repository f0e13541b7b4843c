"""The base class of every input defence, image checks, and batches over a thread pool.

OpenCV is imported where a defence filters, not here: the registry and the
parameter declarations load without it (the dashboard reads them to build
its widgets; the filtering runs in the model worker).

Backward passes
---------------
Every defence offers the backward pass an adaptive attack needs
(:meth:`Defence.estimate_gradient`, ART's name): the gradient of the loss with
respect to the defence's *input*, given its gradient with respect to the
defence's *output*. :attr:`Defence.backward` says which one it is:

* :data:`BACKWARD_EXACT` -- the exact gradient (the adjoint of a linear map:
  identity, Gaussian blur, flip, a sampled resize-and-pad);
* :data:`BACKWARD_BPDA` -- the straight-through identity of BPDA (Athalye,
  Carlini & Wagner 2018) for a transformation with no useful gradient
  (codecs, bit depth, median, the edge-preserving filters).

The backward pass is NumPy, not TensorFlow, because the forward pass is:
codecs and OpenCV filters run on uint8 arrays outside any graph, so every
attack step leaves the graph anyway (model gradient from the one compiled
helper, :mod:`engine.gradients`; defence forward and backward in NumPy and
OpenCV). A TensorFlow backward would need a second graph per defence and a
copy to and from it at every step for no gain; the linear maps are two small
BLAS matrix products per image (:mod:`engine.defences.linear`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from engine.errors import ImageError, ParamError
from engine.params import Param, validate

__all__ = [
    "BACKWARD_BPDA",
    "BACKWARD_EXACT",
    "Defence",
    "apply_batch",
    "check_images",
    "swap_rb",
    "to_uint8",
    "width_axis",
]

#: :attr:`Defence.backward` of a defence whose backward pass is its exact gradient.
BACKWARD_EXACT = "exact"
#: :attr:`Defence.backward` of one whose backward pass is the identity (BPDA).
BACKWARD_BPDA = "bpda-identity"

_SHAPES = "(H, W, 3), (H, W), (H, W, 1) or a batch (N, H, W, 3)"


# --------------------------------------------------------------------------- input checks


def check_images(images: Any, owner: str) -> bool:
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


def width_axis(shape: tuple[int, ...]) -> int:
    """Axis of the image width for an image, grey image or batch of this shape."""
    return 2 if len(shape) == 4 else 1


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float pixels rounded (half to even) and clipped to uint8 0-255; uint8 returned as is."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def swap_rb(img: np.ndarray) -> np.ndarray:
    """RGB <-> BGR for a colour image (contiguous copy); grey images unchanged."""
    return np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 else img


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
    import cv2

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

    Subclasses are frozen, keyword-only dataclasses decorated with
    :func:`engine.params.declared`: their :func:`engine.params.param` fields
    are the tunable parameters (``PARAMS``). They set ``ID`` (registry id),
    ``TITLE`` (owner name in messages and the UI) and ``LABEL`` (short name
    for chain titles and legends), and implement :meth:`_filter` for one
    contiguous ``(H, W, 3)`` RGB or ``(H, W)`` grey image.

    Attributes
    ----------
    differentiable : bool
        Whether the transformation has a useful exact gradient. For the
        non-differentiable ones, :meth:`estimate_gradient` is the BPDA
        stand-in (Athalye et al. 2018).
    backward : str
        Which backward pass :meth:`estimate_gradient` is: :data:`BACKWARD_EXACT`
        or :data:`BACKWARD_BPDA` (a results row records it with the threat model).
    mirrors : bool
        Whether the output is the input mirrored left-right (WebP + flip):
        comparisons with the original image flip it back first.
    randomised : bool
        Whether the defence draws random numbers: then :meth:`sample` gives one
        draw of it, a deterministic defence, and an EOT attacker averages its
        gradient over several draws (Athalye et al. 2018).
    """

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    differentiable: ClassVar[bool] = False
    backward: ClassVar[str] = BACKWARD_BPDA
    randomised: ClassVar[bool] = False
    mirrors: ClassVar[bool] = False
    #: Whether what happens to an image depends on its place in the batch (random draws):
    #: then :func:`apply_batch` hands the whole batch to :meth:`_batch`.
    batchwise: ClassVar[bool] = False

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
        if check_images(images, self.TITLE):
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

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The forward pass an adaptive attacker differentiates: the defence on float pixels.

        Parameters
        ----------
        x : np.ndarray
            ``(N, H, W, 3)`` float pixels in 0-255 (an attack's iterate).

        Returns
        -------
        np.ndarray
            float32, same shape: the deployed defence applied to ``x``
            rounded to uint8 (the defence exactly as it runs; the rounding's
            own backward pass is the identity). :class:`Identity` returns
            ``x`` itself.
        """
        return apply_batch(self, to_uint8(x)).astype(np.float32)

    def sample(self, rng: np.random.Generator) -> Defence:
        """One draw of a randomised defence: a deterministic defence. Others return ``self``."""
        return self

    def _batch(self, images: np.ndarray, workers: int) -> np.ndarray:
        """A validated batch through a :attr:`batchwise` defence (draws per place in the batch).

        Other defences are applied image by image by :func:`apply_batch`.
        """
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


# --------------------------------------------------------------------------- batches


def apply_batch(defence: Defence, images: np.ndarray, *, workers: int | None = None) -> np.ndarray:
    """Apply a defence to a batch, one image per task on a thread pool.

    OpenCV releases the GIL, so threads keep all cores busy; OpenCV's own
    threading is switched off (``cv2.setNumThreads(1)``) while the batch runs
    and restored afterwards, so the two levels of parallelism do not compete.
    The result is identical to ``np.stack([defence(img) for img in images])``,
    except for a :attr:`Defence.batchwise` one (random resize-and-pad), whose
    draws depend on each image's place in the batch (its ``_batch`` applies it).

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
    if not check_images(images, defence.TITLE):
        return defence._one(images)
    if defence.batchwise:
        return defence._batch(images, workers or os.cpu_count() or 1)
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
