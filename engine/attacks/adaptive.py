"""Adaptive attacks: gradients through a defence (BPDA, EOT) and random restarts.

Papers: A. Athalye, N. Carlini, D. Wagner, "Obfuscated Gradients Give a False
Sense of Security: Circumventing Defenses to Adversarial Examples", ICML 2018
(https://arxiv.org/abs/1802.00420): BPDA, the backward pass of a
non-differentiable step replaced by a differentiable stand-in, and EOT,
the gradient of a randomised defence averaged over its randomness (Athalye,
Engstrom, Ilyas, Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018).
Restarts: Madry et al. 2018; N. Carlini et al., "On Evaluating Adversarial
Robustness", 2019, section 4.

An attack crafted *through* a defence ``D`` sees the model ``f(D(x))``: each
gradient is taken at ``D(x)`` by the one compiled helper and mapped back to
``x`` by ``D``'s backward pass (:meth:`engine.defences.Defence.estimate_gradient`:
exact where ``D`` is differentiable, a stand-in where it is not)::

    g(x) = D'(x)^T  grad_z CE(f(z), y) |_{z = D(x)}                    # deterministic D
    g(x) = 1/N sum_k  D_k'(x)^T grad_z CE(f(z), y) |_{z = D_k(x)}      # randomised: EOT,
                                                                       # D_k = D.sample(rng)

:class:`Through` packages that as an :class:`engine.gradients.GradientSource`,
so FGSM, PGD and the targeted L2 descent run through a defence unchanged
(``engine.attacks.run_attack(..., defence=D)``). The attacker knows the
defence and the distribution of its randomness, not the defender's seed: its
draws come from its own generator (``eot_seed``).

BPDA stand-ins (:class:`StandIn`): the backward pass of a defence with no
useful gradient (:data:`engine.defences.BACKWARD_BPDA`: the codecs, bit
depth, the median and the edge-preserving filters) is the straight-through
identity by default. ``stand_in="gaussian"`` replaces it with the exact
backward pass of a Gaussian blur of ``stand_in_sigma`` pixels
(:meth:`engine.defences.GaussianBlur.estimate_gradient`, the adjoint of
the blur), a smoother approximation of a smoothing filter (Athalye, Carlini
& Wagner 2018, section 4.1: any differentiable ``g`` with ``g(x) ~ D(x)``).
Inside a chain only the BPDA members are replaced; a defence with an exact
backward pass keeps it. The label names the stand-in
(``"adaptive: crafted through the defence (bpda-gaussian σ1)"``,
:func:`threat_label`); with the identity it is the label it always was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.attacks._common import judge
from engine.attacks.source import GradientSource
from engine.defences.base import BACKWARD_BPDA, BACKWARD_EXACT, Defence
from engine.defences.chain import Chain
from engine.defences.filters import GaussianBlur
from engine.errors import ParamError
from engine.params import (
    SEED_MAX,
    declaration,
    declared,
    format_number,
    param,
    seed_param,
    validate,
)
from engine.threat import adaptive_label

__all__ = [
    "STAND_INS",
    "AdaptiveParams",
    "StandIn",
    "Through",
    "backward_label",
    "check_restarts",
    "restart_seed",
    "threat_label",
    "worse",
]


@declared
@dataclass(frozen=True, kw_only=True)
class AdaptiveParams:
    """How an attack is crafted through a defence, and how often it restarts.

    Parameters
    ----------
    eot_samples : int, default=1
        Draws of a randomised defence whose gradients are averaged at every
        step (EOT), in [1, 1000]; fresh draws each step. Ignored for a
        deterministic defence (one draw is the defence itself).
    restarts : int, default=1
        Runs from different random starts, in [1, 100]; per image the worst
        case for the defender is kept (misclassified first, then the highest
        loss). Needs an attack with a random start (PGD).
    eot_seed : int, default=0
        Seed of the attacker's draws of a randomised defence.
    """

    eot_samples: int = param(
        1, 1, 1000, 1, "Draws of a randomised defence averaged per gradient (EOT)", widget="number"
    )
    restarts: int = param(
        1, 1, 100, 1, "Random restarts; the worst case per image is kept", widget="number"
    )
    eot_seed: int = seed_param("Seed of the attacker's draws of a randomised defence")

    def __post_init__(self) -> None:
        validate(self, "Adaptive attack")


#: The BPDA stand-ins :class:`StandIn` offers, the default (today's) first.
STAND_INS: tuple[str, ...] = ("identity", "gaussian")

_SIGMA = declaration(GaussianBlur, "sigma")  # the stand-in's sigma: the blur's own range


@declared
@dataclass(frozen=True, kw_only=True)
class StandIn:
    """The backward pass an adaptive attacker uses for a defence with no useful gradient.

    Applies to the defences (or chain members) whose backward pass is
    :data:`engine.defences.BACKWARD_BPDA`; a defence with an exact backward
    pass keeps it whatever is chosen here.

    Parameters
    ----------
    stand_in : {"identity", "gaussian"}, default="identity"
        ``"identity"``: the straight-through identity of BPDA, the defence's
        own :meth:`~engine.defences.Defence.estimate_gradient` (bit for bit
        what an attack did before the option existed). ``"gaussian"``: the
        exact backward pass (adjoint) of
        :class:`engine.defences.GaussianBlur` with ``stand_in_sigma``.
    stand_in_sigma : float, default=1
        Standard deviation in pixels of the Gaussian stand-in, in the blur's
        own range [0.1, 5]; checked, and unused, with the identity.
    """

    stand_in: str = param("identity", help="BPDA stand-in: identity or gaussian")
    stand_in_sigma: float = param(
        1.0,
        _SIGMA.low,
        _SIGMA.high,
        _SIGMA.step,
        "Sigma of the Gaussian stand-in in pixels",
    )

    def __post_init__(self) -> None:
        validate(self, "Adaptive attack")
        if self.stand_in not in STAND_INS:
            raise ParamError(
                f"Adaptive attack: 'stand_in' must be one of {', '.join(STAND_INS)}; "
                f"got {self.stand_in!r}."
            )

    @property
    def backward(self) -> str:
        """What a BPDA member's backward pass becomes, as a label names it.

        :data:`engine.defences.BACKWARD_BPDA` (``"bpda-identity"``) for the
        identity, ``"bpda-gaussian σ<sigma>"`` (e.g. ``"bpda-gaussian σ1"``)
        for the Gaussian.
        """
        if self.stand_in == "identity":
            return BACKWARD_BPDA
        return f"bpda-gaussian σ{format_number(self.stand_in_sigma)}"

    def surrogate(self) -> GaussianBlur | None:
        """The defence whose backward pass replaces a BPDA member's; ``None`` for the identity."""
        if self.stand_in == "identity":
            return None
        return GaussianBlur(sigma=self.stand_in_sigma)


def _members(defence: Defence) -> tuple[Defence, ...]:
    return defence.defences if isinstance(defence, Chain) else (defence,)


def backward_label(defence: Defence, stand_in: StandIn | None = None) -> str:
    """The backward pass through ``defence`` with ``stand_in`` for its BPDA members, as text.

    ``defence.backward`` itself for the identity stand-in (or ``None``);
    otherwise a chain's kinds are joined by ``+`` as
    :attr:`engine.defences.Chain.backward` joins them, with
    :attr:`StandIn.backward` in place of ``"bpda-identity"``: ``"exact"``
    for a differentiable defence, ``"bpda-gaussian σ1"`` for a median filter
    or the seed chain.
    """
    if stand_in is None or stand_in.surrogate() is None:
        return defence.backward
    kinds = [
        stand_in.backward if m.backward == BACKWARD_BPDA else m.backward
        for m in _members(defence)
        if m.backward != BACKWARD_EXACT
    ]
    return "+".join(dict.fromkeys(kinds)) or BACKWARD_EXACT


def restart_seed(seed: int, restart: int) -> int:
    """The random-start seed of restart ``restart``: ``seed`` itself for the first (0)."""
    if restart == 0:
        return seed
    return int(np.random.default_rng([seed, restart]).integers(SEED_MAX + 1))


class Through(GradientSource):
    """The model seen through a defence: gradients exact or by BPDA, EOT when it is random.

    Parameters
    ----------
    comp : GradientSource
        The undefended model's gradients (``engine.gradients.compiled(model)``).
    defence : Defence
        The defence the attacker differentiates through.
    eot_samples : int, default=1
        Draws averaged per call when ``defence`` is randomised.
    seed : int or sequence of int, default=0
        Seed of the attacker's draws (``np.random.default_rng(seed)``).
    stand_in : StandIn, optional
        The backward pass of the BPDA members (default: their own, the identity).

    Notes
    -----
    Each call of :meth:`value_and_grad` (or :meth:`logits`) evaluates the
    model at ``draw.forward(x)`` for each draw and maps the gradient back with
    ``draw.estimate_gradient`` (with a Gaussian stand-in: each member's last
    to first, the Gaussian's in place of every BPDA member's); several draws
    are averaged (logits, loss and gradient). With one draw the result is
    exactly the draw's (no arithmetic is added): through
    :class:`engine.defences.Identity` it is the plain model's gradient, bit
    for bit.
    """

    def __init__(
        self,
        comp: GradientSource,
        defence: Defence,
        *,
        eot_samples: int = 1,
        seed: int | Sequence[int] = 0,
        stand_in: StandIn | None = None,
    ) -> None:
        self.comp = comp
        self.defence = defence
        self.eot_samples = eot_samples if defence.randomised else 1
        self.deterministic = not defence.randomised
        self.stand_in = stand_in if stand_in is not None else StandIn()
        self.input_shape = comp.input_shape
        self.num_classes = comp.num_classes
        self._rng = np.random.default_rng(seed)
        self._surrogate = self.stand_in.surrogate()

    def draws(self) -> list[Defence]:
        """The defence itself, or ``eot_samples`` fresh draws of a randomised one."""
        if not self.defence.randomised:
            return [self.defence]
        return [self.defence.sample(self._rng) for _ in range(self.eot_samples)]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits at ``D(x)`` (averaged over the draws), ``(N, K)`` float32."""
        x = np.asarray(x, np.float32)
        draws = self.draws()
        total = self.comp.logits(draws[0].forward(x))
        for d in draws[1:]:
            total = total + self.comp.logits(d.forward(x))
        return total / np.float32(len(draws)) if len(draws) > 1 else total

    def value_and_grad(
        self, x: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits and loss at ``D(x)``, and the loss gradient mapped back to ``x``."""
        x = np.asarray(x, np.float32)
        draws = self.draws()
        sums: list[np.ndarray] = []
        for d in draws:
            logits, loss, grad = self.comp.value_and_grad(d.forward(x), labels)
            back = np.asarray(self.backward(d, x, grad), np.float32)
            parts = [logits, loss, back]
            sums = parts if not sums else [s + p for s, p in zip(sums, parts, strict=True)]
        if len(draws) > 1:
            k = np.float32(len(draws))
            sums = [s / k for s in sums]
        return sums[0], sums[1], sums[2]

    def backward(self, draw: Defence, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The gradient at ``draw``'s output mapped back to its input ``x``.

        ``draw.estimate_gradient`` with the identity stand-in; with another,
        the members' backward passes last to first (as
        :meth:`engine.defences.Chain.estimate_gradient` composes them), the
        stand-in's in place of each BPDA member's.
        """
        if self._surrogate is None:
            return draw.estimate_gradient(x, grad)
        for m in reversed(_members(draw)):
            grad = (self._surrogate if m.backward == BACKWARD_BPDA else m).estimate_gradient(
                x, grad
            )
        return grad


def worse(
    src: GradientSource, adv: np.ndarray, labels: np.ndarray, target: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """How bad ``adv`` is for the defender, per image, as seen through ``src``.

    Returns
    -------
    fooled : np.ndarray
        ``(N,)`` bool: misclassified (untargeted) or classified as ``target``.
    loss : np.ndarray
        ``(N,)`` float32: the cross-entropy of the true class (untargeted),
        or minus that of the target (targeted); larger is worse.
    """
    y = labels if target is None else np.full(len(adv), target, np.int32)
    logits, loss, _ = src.value_and_grad(adv.astype(np.float32), y)
    return judge(logits, loss, labels, target)


def threat_label(defence: Defence, eot_samples: int = 1, stand_in: StandIn | None = None) -> str:
    """The threat-model label of an attack crafted through ``defence``.

    :func:`engine.threat.adaptive_label` with the backward pass through the
    defence (:func:`backward_label`: its own, or with ``stand_in`` for its
    BPDA members) and, for a randomised defence only, its EOT draws: the one
    place that decides what a results row or the live lab says about an
    adaptive attacker, e.g. ``"adaptive: crafted through the defence (exact,
    EOT 8)"`` or ``"adaptive: crafted through the defence (bpda-gaussian σ1)"``.
    """
    backward = backward_label(defence, stand_in)
    return adaptive_label(backward, eot_samples if defence.randomised else 1)


def check_restarts(params: object, restarts: int, title: str) -> None:
    """Raise :class:`ParamError` if ``params`` cannot restart (no random start)."""
    if restarts > 1 and not getattr(params, "random_start", False):
        raise ParamError(
            f"{title}: 'restarts' > 1 needs an attack with a random start "
            f"(PGD with random_start=true); got restarts={restarts}."
        )
