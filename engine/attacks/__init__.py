"""Adversarial attacks, their registry, and the budget-enforcing runner.

Each attack is one small module with one function
``attack(model, images, labels, params) -> images`` and one frozen parameter
dataclass (house rule 2). Callers normally go through :func:`run_attack`,
which validates inputs, strips the classifier's softmax (attacks need logits,
house rule 4), runs the attack batch by batch and then **always** applies
:func:`enforce_budget` (house rule 3): whatever the attack returned, the
result is clipped to ``|adv - clean|_inf <= eps`` and to [0, 255] and rounded
to uint8.

Threat model of every registered attack: white-box, crafted on the undefended
model (the defences are applied afterwards, unknown to the attacker). This is
the *transfer* setting, an upper bound on what a defence achieves. Given
``defence=D``, :func:`run_attack` crafts the same attack *through* ``D``
instead (the *adaptive* setting, :mod:`engine.attacks.adaptive`): exact
gradients where ``D`` is differentiable, BPDA where it is not, EOT over
``eot_samples`` draws where it is randomised; PGD may restart (``restarts``),
keeping the worst case per image. The BPDA stand-in is the identity unless
``stand_in="gaussian"`` (the backward pass of a Gaussian blur of
``stand_in_sigma``; :class:`engine.attacks.adaptive.StandIn`). The budget is
enforced the same way.

Example
-------
>>> from engine.attacks import REGISTRY, run_attack                      # doctest: +SKIP
>>> adv = run_attack("pgd", model, images, labels, {"eps": 8, "steps": 10})  # doctest: +SKIP
>>> adv.dtype, adv.shape == images.shape                                  # doctest: +SKIP
(dtype('uint8'), True)
>>> adaptive = run_attack("pgd", model, images, labels, {"eps": 8},      # doctest: +SKIP
...                       defence=JPEG(quality=75), restarts=2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from engine import PIXEL_MAX, PIXEL_MIN
from engine.attacks import fgsm, pgd, targeted_l2
from engine.attacks.adaptive import (
    AdaptiveParams,
    StandIn,
    Through,
    check_restarts,
    restart_seed,
    worse,
)
from engine.errors import ParamError
from engine.params import build

if TYPE_CHECKING:  # TensorFlow loads when an attack runs, not on import
    import keras

    from engine.attacks.source import GradientSource
    from engine.defences import Defence

__all__ = ["DEFAULT_ATTACK", "REGISTRY", "AttackInfo", "enforce_budget", "run_attack"]

_THREAT_MODEL = "white-box, crafted on the undefended model"


@dataclass(frozen=True)
class AttackInfo:
    """Registry entry: what an attack is and how to call it.

    Attributes
    ----------
    id : str
        Registry key, e.g. ``"pgd"``.
    title : str
        Display name.
    fn : callable
        ``attack(model, images, labels, params) -> images``.
    params_cls : type
        Frozen parameter dataclass; its ``PARAMS`` declare every parameter.
    paper : str
        Citation of the method.
    distance : str
        Budget norm (``"Linf"``).
    threat_model : str
        Who knows what when the attack is crafted.
    targeted : {"never", "optional", "always"}
        Whether the attack aims at a chosen class: ``"optional"`` when its
        ``target`` may be ``None``, ``"always"`` when a target is required.
    summary : str
        One line for the UI.
    """

    id: str
    title: str
    fn: Callable[..., np.ndarray]
    params_cls: type
    paper: str
    distance: str
    threat_model: str
    targeted: Literal["never", "optional", "always"]
    summary: str


#: The attack a caller gets when it names none (the live lab, the headline, the report).
DEFAULT_ATTACK = "fgsm"

REGISTRY: dict[str, AttackInfo] = {
    "fgsm": AttackInfo(
        id="fgsm",
        title="FGSM",
        fn=fgsm.attack,
        params_cls=fgsm.FGSMParams,
        paper="Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial "
        "Examples. ICLR 2015. arXiv:1412.6572",
        distance="Linf",
        threat_model=_THREAT_MODEL,
        targeted="optional",
        summary="One step of size eps along the sign of the loss gradient.",
    ),
    "pgd": AttackInfo(
        id="pgd",
        title="PGD",
        fn=pgd.attack,
        params_cls=pgd.PGDParams,
        paper="Madry et al. Towards Deep Learning Models Resistant to Adversarial "
        "Attacks. ICLR 2018. arXiv:1706.06083 (without random start: Kurakin, "
        "Goodfellow, Bengio. Adversarial Examples in the Physical World. 2017. "
        "arXiv:1607.02533)",
        distance="Linf",
        threat_model=_THREAT_MODEL,
        targeted="optional",
        summary="Repeated small FGSM steps, each projected back into the eps-ball.",
    ),
    "targeted_l2": AttackInfo(
        id="targeted_l2",
        title="Targeted L2 descent",
        fn=targeted_l2.attack,
        params_cls=targeted_l2.TargetedL2Params,
        paper="Jézéquel. Protecting networks against adversial attacks. 2019 "
        "(seed 004), section 2.1",
        distance="Linf",
        threat_model=_THREAT_MODEL,
        targeted="always",
        summary="Gradient descent towards a target class with L2-normalised steps.",
    ),
}


def enforce_budget(clean: np.ndarray, adv: np.ndarray, eps: float) -> np.ndarray:
    """Clip ``adv`` to the L-inf ball around ``clean`` and to [0, 255]; round to uint8.

    Applied by the engine after every attack, whatever the attack returned
    (house rule 3).

    The budget is measured from ``clean`` rounded to integers (uint8 inputs
    are unchanged). The result is clipped, rounded half-to-even, then clipped
    again to the *integers* inside the ball, ``[clean - floor(eps),
    clean + floor(eps)]`` (and [0, 255]), so rounding can never push
    ``|adv - clean|`` above ``eps``. Consequences: ``eps = 0`` returns
    ``clean`` exactly; rounding erases any change smaller than 0.5, and a
    fractional ``eps`` is effectively ``floor(eps)``. Non-finite values in
    ``adv`` are replaced by the clean pixel.

    Parameters
    ----------
    clean : np.ndarray
        ``(N, H, W, 3)`` (or any shape) reference images in 0-255.
    adv : np.ndarray
        Same shape as ``clean``: what the attack returned, any dtype.
    eps : float
        L-inf budget, 0-255 units, ``eps >= 0``.

    Returns
    -------
    np.ndarray
        uint8 array of the same shape, with
        ``np.abs(out.astype(int) - clean_rounded).max() <= eps``.

    Examples
    --------
    >>> clean = np.array([0, 100, 250], dtype=np.uint8)
    >>> enforce_budget(clean, np.array([-20.0, 100.4, 300.0]), eps=8)
    array([  0, 100, 255], dtype=uint8)
    >>> enforce_budget(clean, np.array([9.0, 91.0, 242.2]), eps=8)
    array([  8,  92, 242], dtype=uint8)
    """
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ParamError(f"eps must be a number >= 0; got {eps!r}.")
    ref = _as_uint8(clean)
    out = np.array(adv, dtype=np.float32, copy=True)
    if out.shape != ref.shape:
        raise ValueError(f"The attack returned shape {out.shape}; expected {ref.shape}.")
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = ref[bad]
    # Rounding first and then clipping to the integer bounds gives the same result
    # as clip -> round -> clip (rint is monotone and keeps integers), in fewer passes.
    np.rint(out, out=out)
    e = np.float32(math.floor(eps))
    ref_f = ref.astype(np.float32)
    lo = ref_f - e
    np.maximum(lo, PIXEL_MIN, out=lo)
    hi = ref_f
    hi += e
    np.minimum(hi, PIXEL_MAX, out=hi)
    np.clip(out, lo, hi, out=out)
    return out.astype(np.uint8)


def _as_uint8(images: np.ndarray) -> np.ndarray:
    """``images`` as uint8 in [0, 255] (rounded); a uint8 input is returned as is."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images.astype(np.float32)), PIXEL_MIN, PIXEL_MAX).astype(np.uint8)


def _check_images(images: Any) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ParamError(
            f"images must be a batch of RGB images shaped (N, H, W, 3); got shape {images.shape}."
        )
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ParamError(f"images must be uint8 or float in [0, 255]; got dtype {images.dtype}.")
    if images.size and (
        not np.all(np.isfinite(images)) or images.min() < PIXEL_MIN or images.max() > PIXEL_MAX
    ):
        raise ParamError(
            "images must be uint8 or float in [0, 255] (finite); "
            f"got values in [{images.min():g}, {images.max():g}]."
        )
    return images


def _check_labels(labels: Any, n: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ParamError(
            f"labels must be a 1-D array of integer class indices; got shape {labels.shape} "
            f"and dtype {labels.dtype}."
        )
    if len(labels) != n:
        raise ParamError(f"Got {n} images but {len(labels)} labels; they must match.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ParamError(
            f"labels must be class indices in [0, {num_classes - 1}]; "
            f"got values in [{labels.min()}, {labels.max()}]."
        )
    return labels.astype(np.int32)


def _build_params(info: AttackInfo, params: Any) -> Any:
    if params is None:
        return info.params_cls()
    if isinstance(params, info.params_cls):
        return params
    if isinstance(params, dict):
        return build(info.params_cls, params, owner=info.title)
    raise ParamError(
        f"{info.title}: params must be a dict or {info.params_cls.__name__}; "
        f"got {type(params).__name__}."
    )


def run_attack(
    attack_id: str,
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    params: dict[str, Any] | Any | None = None,
    *,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    defence: Defence | None = None,
    eot_samples: int = 1,
    restarts: int = 1,
    eot_seed: int = 0,
    stand_in: str = "identity",
    stand_in_sigma: float = 1.0,
) -> np.ndarray:
    """Run a registered attack and enforce its budget; through a defence, if one is given.

    Parameters
    ----------
    attack_id : str
        A key of :data:`REGISTRY`.
    model : keras.Model
        A classifier (its ``"probs"`` softmax is stripped with
        :func:`engine.gradients.logits_model`) or a logits model. Never mutated.
    images : np.ndarray
        ``(N, H, W, 3)`` RGB, uint8, or float in [0, 255] (rounded to integers
        first: the budget is measured from the rounded images). Not mutated.
    labels : np.ndarray
        ``(N,)`` integer true classes in ``[0, K)``.
    params : dict, parameter dataclass or None, default=None
        The attack's parameters (``None``: the declared defaults).
    batch_size : int, default=64
        Images per attack call.
    progress : callable, optional
        ``progress(done, total)`` called after each batch with image counts.
    defence : Defence, optional
        Craft the attack through this defence (adaptive; see
        :mod:`engine.attacks.adaptive`). ``None``: on the undefended model
        (transfer), exactly as without the argument.
    eot_samples : int, default=1
        Draws of a randomised ``defence`` averaged per gradient (EOT).
    restarts : int, default=1
        Random restarts (PGD); the worst case per image is kept, judged
        through ``defence`` when given.
    eot_seed : int, default=0
        Seed of the attacker's draws of a randomised defence.
        (``eot_samples``, ``restarts`` and ``eot_seed`` are declared in
        :class:`engine.attacks.adaptive.AdaptiveParams`.)
    stand_in : {"identity", "gaussian"}, default="identity"
        The backward pass of the members of ``defence`` that have no useful
        gradient (BPDA): the identity, or the exact backward pass of a
        Gaussian blur of ``stand_in_sigma``. Members with an exact backward
        pass keep it.
    stand_in_sigma : float, default=1
        Sigma in pixels of the Gaussian stand-in, in [0.1, 5].
        (Both are declared in :class:`engine.attacks.adaptive.StandIn`; the
        label of the threat model is
        ``engine.attacks.adaptive.threat_label(defence, eot_samples, stand_in)``.)

    Returns
    -------
    np.ndarray
        ``(N, H, W, 3)`` uint8 adversarial images with
        ``|adv - images|_inf <= eps``. With ``eps = 0`` the (rounded) input
        is returned exactly.

    Raises
    ------
    ParamError
        Unknown attack, bad parameters, images or labels, a target outside
        the model's classes, a ``defence`` that is not one, restarts for an
        attack without a random start, or an unknown stand-in or its sigma
        out of range.
    """
    info = REGISTRY.get(attack_id) if isinstance(attack_id, str) else None
    if info is None:
        raise ParamError(f"Unknown attack {attack_id!r}; known: {', '.join(REGISTRY)}.")
    p = _build_params(info, params)
    adaptive = AdaptiveParams(eot_samples=eot_samples, restarts=restarts, eot_seed=eot_seed)
    bpda = StandIn(stand_in=stand_in, stand_in_sigma=stand_in_sigma)
    check_restarts(p, adaptive.restarts, info.title)
    if defence is not None:
        from engine.defences import Defence

        if not isinstance(defence, Defence):
            raise ParamError(f"defence must be a defence (e.g. JPEG()); got {defence!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size must be a positive integer; got {batch_size!r}.")
    images = _check_images(images)
    from engine.gradients import compiled, logits_model

    lm = logits_model(model)
    comp = compiled(lm)
    k = comp.num_classes
    y = _check_labels(labels, len(images), k)
    target = getattr(p, "target", None)
    if target is not None and target >= k:
        raise ParamError(
            f"{info.title}: 'target' must be a class index in [0, {k - 1}] for this model; "
            f"got {target}."
        )
    clean = _as_uint8(images)  # the rounded uint8 reference; attacks never see the caller's array
    for want, got in zip(comp.input_shape[:2], clean.shape[1:3], strict=True):
        if want is not None and want != got:
            raise ParamError(
                f"The model takes {comp.input_shape[0]}x{comp.input_shape[1]} images; "
                f"got {clean.shape[1]}x{clean.shape[2]}."
            )
    out = np.empty_like(clean)
    n = len(clean)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        out[sl] = _craft(info, lm, comp, clean[sl], y[sl], p, defence, adaptive, bpda)
        if progress is not None:
            progress(sl.stop, n)
    return out


def _craft(
    info: AttackInfo,
    lm: keras.Model,
    comp: GradientSource,
    clean: np.ndarray,
    y: np.ndarray,
    p: Any,
    defence: Defence | None,
    adaptive: AdaptiveParams,
    stand_in: StandIn,
) -> np.ndarray:
    """One batch: the attack (through ``defence``), each restart budget-enforced, worst kept."""
    best: np.ndarray | None = None
    fooled, loss = np.empty(0, bool), np.empty(0, np.float32)
    for r in range(adaptive.restarts):
        model: keras.Model | GradientSource = lm
        if defence is not None:
            seed = (adaptive.eot_seed, r)
            model = Through(
                comp, defence, eot_samples=adaptive.eot_samples, seed=seed, stand_in=stand_in
            )
        pr = p if r == 0 else replace(p, seed=restart_seed(p.seed, r))
        adv = enforce_budget(clean, info.fn(model, clean.astype(np.float32), y, pr), p.eps)
        if adaptive.restarts == 1:
            return adv
        judge = comp if defence is None else model
        f, lo = worse(judge, adv, y, getattr(p, "target", None))
        if best is None:
            best, fooled, loss = adv, f, lo
            continue
        better = (f & ~fooled) | ((f == fooled) & (lo > loss))
        best[better], fooled[better], loss[better] = adv[better], f[better], lo[better]
    assert best is not None
    return best
