"""FGSM: the fast gradient sign method.

Paper: I. Goodfellow, J. Shlens, C. Szegedy, "Explaining and Harnessing
Adversarial Examples", ICLR 2015. https://arxiv.org/abs/1412.6572

Distance: L-infinity. One step of size ``eps`` along the sign of the loss
gradient::

    untargeted:  x_adv = clip(x + eps * sign(grad_x CE(f(x), y)),      0, 255)
    targeted:    x_adv = clip(x - eps * sign(grad_x CE(f(x), target)), 0, 255)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.attacks._common import (
    as_float,
    class_labels,
    eps_param,
    like_input,
    optional_target,
)
from engine.params import declared, validate

if TYPE_CHECKING:  # TensorFlow loads when an attack runs, not on import
    import keras

    from engine.attacks.source import GradientSource

__all__ = ["FGSMParams", "attack", "fgsm_step"]


@declared
@dataclass(frozen=True, kw_only=True)
class FGSMParams:
    """Parameters of :func:`attack`.

    Parameters
    ----------
    eps : float, default=8.0
        L-inf budget and step size, in 0-255 units, in [0, 255].
    target : int or None, default=None
        Target class for a targeted attack; ``None`` for untargeted.
    """

    eps: float = eps_param()
    target: int | None = optional_target()

    def __post_init__(self) -> None:
        validate(self, "FGSM")


def fgsm_step(
    comp: GradientSource, x: np.ndarray, labels: np.ndarray, step: float, *, targeted: bool
) -> np.ndarray:
    """One fast-gradient-sign step (clipped to [0, 255]; no projection).

    Parameters
    ----------
    comp : GradientSource
        The model's compiled helper (:func:`engine.gradients.compiled`), or
        the model seen through a defence.
    x : np.ndarray
        ``(N, H, W, 3)`` float32 in 0-255; not modified.
    labels : np.ndarray
        ``(N,)`` true classes (untargeted) or target classes (targeted).
    step : float
        Step size in 0-255 units.
    targeted : bool
        Descend the loss towards ``labels`` instead of ascending it.

    Returns
    -------
    np.ndarray
        ``x + step * sign(grad)`` (untargeted) or ``x - step * sign(grad)``
        (targeted), clipped to [0, 255], float32, same shape as ``x``.
    """
    return comp.sign_step(x, labels, -step if targeted else step)


def attack(
    model: keras.Model | GradientSource, images: np.ndarray, labels: np.ndarray, params: FGSMParams
) -> np.ndarray:
    """Fast gradient sign method (Goodfellow et al., 2015), L-inf.

    Parameters
    ----------
    model : keras.Model or GradientSource
        Classifier (softmax stripped automatically) or logits model; or the
        model seen through a defence (:class:`engine.attacks.adaptive.Through`).
    images : np.ndarray
        ``(N, H, W, 3)`` RGB in 0-255, uint8 or float. Not mutated.
    labels : np.ndarray
        ``(N,)`` integer true classes (ignored when ``params.target`` is set).
    params : FGSMParams
        Budget and optional target.

    Returns
    -------
    np.ndarray
        Adversarial images, same shape and dtype as ``images``, in [0, 255].

    Examples
    --------
    >>> adv = attack(model, images, labels, FGSMParams(eps=8))  # doctest: +SKIP
    """
    x = as_float(images)
    targeted = params.target is not None
    y = class_labels(labels, len(x), params.target)
    from engine.gradients import source

    adv = fgsm_step(source(model), x, y, params.eps, targeted=targeted)
    return like_input(adv, images)
