"""PGD-L-inf: projected gradient descent, a.k.a. iterative FGSM.

Papers: A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu, "Towards Deep
Learning Models Resistant to Adversarial Attacks", ICLR 2018
(https://arxiv.org/abs/1706.06083), with a random start; A. Kurakin,
I. Goodfellow, S. Bengio, "Adversarial Examples in the Physical World", ICLR
2017 workshop (https://arxiv.org/abs/1607.02533), the basic iterative method,
without one.

Distance: L-infinity. Each step is one FGSM step (:func:`fgsm_step`) of size
``step_size``, followed by a projection onto the ``eps``-ball around the clean
image and onto [0, 255]::

    x_0     = clip(x + U(-eps, eps), 0, 255)        # if random_start
    x_{t+1} = Proj_{B(x, eps) ∩ [0,255]}(x_t ± step_size * sign(grad))
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
    project_linf,
)
from engine.attacks.fgsm import fgsm_step
from engine.params import declared, param, seed_param, validate

if TYPE_CHECKING:  # TensorFlow loads when an attack runs, not on import
    import keras

    from engine.attacks.source import GradientSource

__all__ = ["PGDParams", "attack"]


@declared
@dataclass(frozen=True, kw_only=True)
class PGDParams:
    """Parameters of :func:`attack`.

    Parameters
    ----------
    eps : float, default=8.0
        L-inf budget in 0-255 units, in [0, 255].
    steps : int, default=10
        Number of gradient steps, in [1, 1000].
    step_size : float, default=2.0
        Size of each sign step in 0-255 units, in [0.1, 255]. Keep
        ``steps * step_size`` above ``eps`` (at least ``2 * eps`` with a random
        start), or the iterates cannot reach the edge of the ball and PGD can
        end up weaker than one FGSM step.
    random_start : bool, default=True
        Start from a uniform random point of the eps-ball (Madry et al.);
        ``False`` gives the basic iterative method (Kurakin et al.).
    seed : int, default=0
        Seed of the random start (``np.random.default_rng(seed)``).
    target : int or None, default=None
        Target class for a targeted attack; ``None`` for untargeted.
    """

    eps: float = eps_param()
    steps: int = param(10, 1, 1000, 1, "Number of gradient steps", widget="number")
    step_size: float = param(2.0, 0.1, 255.0, 0.1, "Step size per iteration, 0-255 units")
    random_start: bool = param(True, help="Start from a random point of the eps-ball")
    seed: int = seed_param("Seed of the random start")
    target: int | None = optional_target()

    def __post_init__(self) -> None:
        validate(self, "PGD")


def attack(
    model: keras.Model | GradientSource, images: np.ndarray, labels: np.ndarray, params: PGDParams
) -> np.ndarray:
    """Projected gradient descent under an L-inf budget (Madry et al., 2018).

    Deterministic for a given ``seed`` and batch: the random start of a batch
    is drawn from ``np.random.default_rng(seed)`` (so, through
    :func:`engine.attacks.run_attack`, results depend on the seed and on how
    the images are split into batches).

    Parameters
    ----------
    model : keras.Model or GradientSource
        Classifier (softmax stripped automatically) or logits model; or the
        model seen through a defence (:class:`engine.attacks.adaptive.Through`).
    images : np.ndarray
        ``(N, H, W, 3)`` RGB in 0-255, uint8 or float. Not mutated.
    labels : np.ndarray
        ``(N,)`` integer true classes (ignored when ``params.target`` is set).
    params : PGDParams
        Budget, steps, step size, random start and seed, optional target.

    Returns
    -------
    np.ndarray
        Adversarial images, same shape and dtype as ``images``, with
        ``|adv - images|_inf <= eps`` (before any rounding) and values in [0, 255].

    Examples
    --------
    >>> adv = attack(model, images, labels, PGDParams(eps=8, steps=10))  # doctest: +SKIP
    """
    clean = as_float(images)
    from engine.gradients import source

    comp = source(model)
    targeted = params.target is not None
    y = class_labels(labels, len(clean), params.target)
    adv = clean.copy()
    if params.random_start and params.eps > 0:
        rng = np.random.default_rng(params.seed)
        noise = rng.uniform(-params.eps, params.eps, size=clean.shape).astype(np.float32)
        adv = project_linf(clean + noise, clean, params.eps)
    for _ in range(params.steps):
        adv = fgsm_step(comp, adv, y, params.step_size, targeted=targeted)
        adv = project_linf(adv, clean, params.eps)
    return like_input(adv, images)
