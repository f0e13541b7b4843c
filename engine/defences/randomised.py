"""Randomised input defences: random resize-and-pad (Xie et al. 2018).

Paper: C. Xie, J. Wang, Z. Zhang, Z. Ren, A. Yuille, "Mitigating Adversarial
Effects Through Randomization", ICLR 2018. https://arxiv.org/abs/1711.01991
The image is resized to a random size and padded with zeros, at a random
place, to a fixed size. The paper resizes 299 px images to 299-330 px and pads
to 331; here the output keeps the input's size, so the image is shrunk to a
random side in ``[ceil(min_scale * H), H]`` (the default 0.9 is the paper's
299/331) and padded back to ``H x W``.

Randomness is explicit (house rule 9): the defence's ``seed`` fixes its
draws, so the same batch through the same defence gives the same output;
image ``i`` of a batch gets the ``i``-th draw of
``np.random.default_rng(seed)`` (like PGD's random start, the draws depend on
how images are split into batches). A single image gets the first draw.

An adaptive attacker knows the distribution, not the defender's seed: it
averages its gradient over draws of its own (:meth:`RandomResizePad.sample`,
Expectation over Transformation, Athalye, Carlini & Wagner 2018). Each draw is
a linear map (bilinear resize, zero padding), so its backward pass is exact
(:mod:`engine.defences.linear`); only the rounding to uint8 is passed
straight through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from engine.defences.base import BACKWARD_EXACT, Defence, to_uint8
from engine.defences.linear import apply_separable, resize_pad_matrix
from engine.params import SEED_MAX, declared, param, seed_param

__all__ = ["RandomResizePad", "ResizePadDraw"]


class _ResizePad(Defence):
    """Resize-and-pad with draws from ``default_rng(self.seed)``; subclasses set the fields."""

    min_scale: float
    seed: int

    backward: ClassVar[str] = BACKWARD_EXACT
    differentiable: ClassVar[bool] = True
    batchwise: ClassVar[bool] = True

    def maps(self, n: int, h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``(M_h, M_w)`` of the first ``n`` draws for ``h x w`` images.

        Each draw takes four numbers from the generator: the new height
        (uniform over the integers ``ceil(min_scale * h) .. h``; the width
        follows the same ratio), then the top and left padding (uniform over
        the places that fit), and one spare.
        """
        rng = np.random.default_rng(self.seed)
        lo = max(1, math.ceil(self.min_scale * h - 1e-9))
        out = []
        for u in rng.random((n, 4)):
            nh = lo + min(int(u[0] * (h - lo + 1)), h - lo)
            nw = min(w, max(1, round(nh * w / h)))
            top = min(int(u[1] * (h - nh + 1)), h - nh)
            left = min(int(u[2] * (w - nw + 1)), w - nw)
            out.append((resize_pad_matrix(h, nh, top), resize_pad_matrix(w, nw, left)))
        return out

    def _filter(self, img: np.ndarray) -> np.ndarray:
        ((mh, mw),) = self.maps(1, img.shape[0], img.shape[1])
        return to_uint8(apply_separable(img, mh, mw))

    def _batch(self, images: np.ndarray, workers: int) -> np.ndarray:
        out = np.empty_like(images)
        for i, (mh, mw) in enumerate(self.maps(len(images), images.shape[1], images.shape[2])):
            out[i] = to_uint8(apply_separable(images[i], mh, mw))
        return out

    def estimate_gradient(self, images: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Exact for these draws: ``M_h.T @ G @ M_w`` per image (float32)."""
        g = np.asarray(grad)
        if g.ndim != 4:
            ((mh, mw),) = self.maps(1, g.shape[0], g.shape[1])
            return apply_separable(g, mh.T, mw.T)
        out = np.empty(g.shape, np.float32)
        for i, (mh, mw) in enumerate(self.maps(len(g), g.shape[1], g.shape[2])):
            out[i] = apply_separable(g[i], mh.T, mw.T)
        return out


@declared
@dataclass(frozen=True, kw_only=True)
class RandomResizePad(_ResizePad):
    """Random resize-and-pad (Xie et al. 2018): shrink to a random size, zero-pad at random.

    Randomised: an EOT attacker draws its own instances with :meth:`sample`.
    Backward pass: exact for the drawn resize and padding.

    Parameters
    ----------
    min_scale : float, default=0.9
        Smallest side after resizing, as a fraction of the input side, in
        [0.5, 1] (1 leaves the image unchanged).
    seed : int, default=0
        Seed of the defender's draws.
    """

    min_scale: float = param(
        0.9, 0.5, 1.0, 0.01, "Smallest side after resizing, as a fraction of the input side"
    )
    seed: int = seed_param("Seed of the random sizes and paddings")

    ID: ClassVar[str] = "resize_pad"
    TITLE: ClassVar[str] = "Random resize and pad"
    LABEL: ClassVar[str] = "Resize+pad"
    randomised: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> Defence:
        """One draw: a :class:`ResizePadDraw` with a seed taken from ``rng``."""
        return ResizePadDraw(min_scale=self.min_scale, seed=int(rng.integers(SEED_MAX + 1)))


@dataclass(frozen=True, kw_only=True)
class ResizePadDraw(_ResizePad):
    """One draw of :class:`RandomResizePad`: deterministic (not randomised), not registered.

    The sizes and paddings are those :class:`RandomResizePad` with the same
    ``min_scale`` and ``seed`` applies, but an attack treats it as fixed: a
    *single-sample* attacker (no EOT) attacks one of these.
    """

    min_scale: float = 0.9
    seed: int = 0

    TITLE: ClassVar[str] = "Resize and pad (one draw)"
    LABEL: ClassVar[str] = "Resize+pad draw"
