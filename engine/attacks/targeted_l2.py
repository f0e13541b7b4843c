"""Targeted L2-normalised gradient descent (the "adversial learning" of seed 004).

Source: L. Jézéquel, "Protecting networks against adversial attacks", 2019,
section 2.1 (the project's seed 004). The method is iterated gradient descent
on the cross-entropy towards a chosen target class, with the gradient
normalised by its L2 norm::

    while f(I) != target:
        g = grad_I CE(f(I), target)
        I = I - alpha * g / ||g||_2

Here ``||g||_2`` is taken per image, ``alpha`` is the L2 length of each step
in 0-255 units, and — unlike the seed, which has no budget — every step is
projected onto the L-inf ball of radius ``eps`` around the clean image and
onto [0, 255], so the attack is comparable with FGSM and PGD.

Distance: the step is L2-normalised, the budget is L-infinity.

Early stop (``early_stop=True``, the seed's ``while`` condition): an image
already classified as the target (in float, before rounding) is not moved
any further; the loop ends when every image has reached the target or after
``steps`` steps. The final rounding to uint8 can, rarely, undo a success that
was only just reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.attacks._common import (
    MAX_CLASS,
    as_float,
    class_labels,
    eps_param,
    like_input,
    project_linf,
)
from engine.params import declared, param, validate

if TYPE_CHECKING:  # TensorFlow loads when an attack runs, not on import
    import keras

    from engine.attacks.source import GradientSource

__all__ = ["TargetedL2Params", "attack"]


@declared
@dataclass(frozen=True, kw_only=True)
class TargetedL2Params:
    """Parameters of :func:`attack`.

    Parameters
    ----------
    eps : float, default=8.0
        L-inf budget in 0-255 units, in [0, 255].
    target : int, default=0
        Target class index.
    steps : int, default=20
        Maximum number of steps, in [1, 1000].
    alpha : float, default=500.0
        L2 length of each step in 0-255 units, in [1, 100000]. A 224x224 RGB
        image has sqrt(224*224*3) ≈ 388 values' worth of L2 norm, so 500 moves
        each value by about 1.3 on average (root mean square); at 32x32 the
        same alpha is about 9 per value.
    early_stop : bool, default=True
        Stop moving an image once it is classified as the target.
    """

    eps: float = eps_param()
    target: int = param(0, 0, MAX_CLASS, 1, "Target class index", widget="class")
    steps: int = param(20, 1, 1000, 1, "Maximum number of steps", widget="number")
    alpha: float = param(
        500.0, 1.0, 100000.0, 10.0, "L2 length of each step, 0-255 units", ui_high=2000.0
    )
    early_stop: bool = param(True, help="Stop an image once it is classified as the target")

    def __post_init__(self) -> None:
        validate(self, "Targeted L2")


def attack(
    model: keras.Model | GradientSource,
    images: np.ndarray,
    labels: np.ndarray,
    params: TargetedL2Params,
) -> np.ndarray:
    """Targeted, L2-normalised iterative gradient descent (seed 004), L-inf budget.

    Parameters
    ----------
    model : keras.Model or GradientSource
        Classifier (softmax stripped automatically) or logits model; or the
        model seen through a defence (:class:`engine.attacks.adaptive.Through`).
    images : np.ndarray
        ``(N, H, W, 3)`` RGB in 0-255, uint8 or float. Not mutated.
    labels : np.ndarray
        ``(N,)`` integer true classes (unused: the attack aims at ``params.target``;
        accepted for the common attack signature).
    params : TargetedL2Params
        Budget, target, steps, step length, early stop.

    Returns
    -------
    np.ndarray
        Adversarial images, same shape and dtype as ``images``, in [0, 255].

    Examples
    --------
    >>> adv = attack(model, images, labels, TargetedL2Params(eps=8, target=3))  # doctest: +SKIP
    """
    clean = as_float(images)
    from engine.gradients import source

    comp = source(model)
    target = class_labels(labels, len(clean), params.target)
    adv = clean.copy()
    active = np.arange(len(clean))
    for _ in range(params.steps):
        logits, _, grad = comp.value_and_grad(adv[active], target[active])
        if params.early_stop:
            moving = logits.argmax(axis=1) != params.target
            active, grad = active[moving], grad[moving]
            if len(active) == 0:
                break
        norm = np.sqrt(np.sum(np.square(grad, dtype=np.float64), axis=(1, 2, 3)))
        norm = np.maximum(norm, 1e-12).astype(np.float32)[:, None, None, None]
        step = adv[active] - np.float32(params.alpha) * grad / norm
        adv[active] = project_linf(step, clean[active], params.eps)
    return like_input(adv, images)
