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
    x_{t+1} = Proj_{B(x, eps) ∩ [0,255]}(x_t ± a_t * sign(grad))

The step ``a_t`` is ``step_size`` throughout, or with ``step_decay = k`` it
halves k times: the steps fall into k + 1 equal phases and phase j steps
``step_size / 2**j``. Long steps cross the ball early, short ones refine at
the end (the step-size schedule of Mosbach et al. 2018, "Logit Pairing
Methods Can Fool Gradient-Based Attacks"; APGD, Croce & Hein 2020, halves its
step adaptively). Through a quantising defence (JPEG, bit depth) a constant
step converges slowly: a long one overshoots, a short one needs many steps.

With ``early_stop`` (what an adaptive sweep uses) each image stops at its
first iterate ``x_t`` that the gradient source misclassifies (through a
defence: at the defended input; targeted: classifies as the target) and
that iterate is returned; an image no iterate fools returns its
highest-loss iterate, as restarts judge them
(:func:`engine.attacks._common.judge`). So the result is the worst of
``x_0 ... x_T`` for the defender, not the last iterate (a sign-step iterate
can leave the wrong class again), it can only get stronger with more steps
along one trajectory (what a convergence check, Carlini et al. 2019
section 4.2, needs), and the steps are spent on the images still classified
correctly (AutoAttack, Croce & Hein 2020, attacks only those). The images
are minimally adversarial for the source: a transfer attack should not stop
early. Nor does the attack stop early through a randomised defence
(``GradientSource.deterministic`` false): there "misclassified" is the
average over the attacker's own draws, and an image stopped on that boundary
is classified correctly by about half of the defender's draws; it runs all
its steps (EOT) and returns the last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.attacks._common import (
    as_float,
    class_labels,
    eps_param,
    judge,
    like_input,
    optional_target,
    project_linf,
)
from engine.attacks.fgsm import fgsm_step
from engine.params import declared, param, seed_param, validate

if TYPE_CHECKING:  # TensorFlow loads when an attack runs, not on import
    import keras

    from engine.attacks.source import GradientSource

__all__ = ["MADRY_FACTOR", "MIN_STEP", "PGDParams", "attack", "relative_step", "step_at"]


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
    step_decay : int, default=0
        Halvings of the step size over the run, in [0, 8] (0: constant).
    early_stop : bool, default=False
        Stop each image at its first misclassified iterate and return it
        (the rest: their highest-loss iterate) instead of the last iterate;
        ignored through a randomised defence.
    """

    eps: float = eps_param()
    steps: int = param(10, 1, 1000, 1, "Number of gradient steps", widget="number")
    step_size: float = param(2.0, 0.1, 255.0, 0.1, "Step size per iteration, 0-255 units")
    random_start: bool = param(True, help="Start from a random point of the eps-ball")
    seed: int = seed_param("Seed of the random start")
    target: int | None = optional_target()
    step_decay: int = param(0, 0, 8, 1, "Halvings of the step size over the steps", widget="number")
    early_stop: bool = param(False, help="Stop each image at its first misclassified iterate")

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
    if params.early_stop and comp.deterministic:
        return like_input(_early_stop(comp, adv, clean, y, params), images)
    for t in range(params.steps):
        adv = fgsm_step(comp, adv, y, step_at(params, t), targeted=targeted)
        adv = project_linf(adv, clean, params.eps)
    return like_input(adv, images)


#: Madry et al.'s travel: the steps together can cross ``2.5 * eps``.
MADRY_FACTOR = 2.5
#: The smallest step that survives rounding to uint8 (0-255 units).
MIN_STEP = 0.5


def relative_step(
    eps: float, steps: int, factor: float = MADRY_FACTOR, low: float = MIN_STEP
) -> float:
    """A step size relative to the budget: ``max(low, factor * eps / steps)``.

    The rule of the sweep specs' ``step_size = {factor = F, min = M}``, of PGD
    adversarial training's default step and of its per-epoch check.
    """
    return max(low, factor * eps / max(int(steps), 1))


def step_at(params: PGDParams, t: int) -> float:
    """The size of step ``t`` (0-based): ``step_size``, halved once per phase of ``step_decay``."""
    if not params.step_decay:
        return params.step_size
    phase = min(params.step_decay, t * (params.step_decay + 1) // params.steps)
    return params.step_size / 2**phase


def _early_stop(
    comp: GradientSource, adv: np.ndarray, clean: np.ndarray, y: np.ndarray, params: PGDParams
) -> np.ndarray:
    """The PGD loop of :func:`attack` with early stopping: each image's worst iterate."""
    sign = np.float32(1.0 if params.target is None else -1.0)
    best = adv.copy()
    score = np.full(len(adv), -np.inf, np.float32)
    active = np.arange(len(adv))  # images no iterate has fooled yet
    for t in range(params.steps + 1):
        x = adv[active]
        logits, loss, grad = comp.value_and_grad(x, y[active])
        fooled, lo = judge(logits, loss, y[active], params.target)
        better = fooled | (lo > score[active])
        best[active[better]], score[active[better]] = x[better], lo[better]
        active, x, grad = active[~fooled], x[~fooled], np.asarray(grad)[~fooled]
        if t == params.steps or not len(active):
            break
        step = sign * np.float32(step_at(params, t))
        x = np.clip(x + step * np.sign(grad).astype(np.float32), 0.0, 255.0)
        adv[active] = project_linf(x, clean[active], params.eps)
    return best
