"""The Live lab: attack one image, defend it, and show what the model sees at each stage.

:func:`run_lab` takes one image of any size, resizes it to the model's input,
crafts an adversarial version with a registered attack (through
:func:`engine.attacks.run_attack`, which enforces the budget), passes it
through a defence and reports the three predictions (:class:`Prediction`), the
perturbation (raw and amplified for display), its size and the image
similarity, with timings (:class:`LabResult`). See :mod:`engine.lab` for the
threat models (transfer, or ``adaptive=True``: crafted through the defence).

Like with like: a defence that mirrors the image (WebP + flip) would make
every comparison with the original measure the mirror, not the defence (on
the chest X-ray model's test image 0, FGSM ε 8 then WebP + flip at quality
90: 16.7 dB, SSIM 0.37 against the original as it is; 33.3 dB, SSIM 0.90
flipped back). :func:`mirrors` says whether a defence's net effect
is a mirror; the defended image is then flipped back before it is measured
against the original (:attr:`LabResult.defended_aligned`). The model still
sees what the defence outputs (:attr:`LabResult.defended`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import defences as dfn
from engine import metrics
from engine.attacks import DEFAULT_ATTACK
from engine.attacks.adaptive import threat_label
from engine.errors import ParamError
from engine.images import resize_image
from engine.lab.inputs import (
    DefenceLike,
    as_defence,
    attack_info,
    attack_values,
    check_classes,
    check_image,
    check_label,
    input_hw,
    live_attacker,
)
from engine.params import as_dict, build
from engine.threat import THREAT_CLEAN, THREAT_TRANSFER

if TYPE_CHECKING:  # TensorFlow loads when a function runs, never on import
    import keras

__all__ = [
    "LABEL_FROM_MODEL",
    "LABEL_TRUE",
    "MAX_GAIN",
    "TOP_K",
    "LabResult",
    "Prediction",
    "mirrors",
    "run_lab",
]

#: ``label_source`` when the caller gave the true class.
LABEL_TRUE = "true label"
#: ``label_source`` when the attack moved away from the model's own clean prediction.
LABEL_FROM_MODEL = "model's clean prediction"
#: Number of classes listed in :attr:`Prediction.top_k` (fewer if the model has fewer).
TOP_K = 5
#: Largest gain accepted for the perturbation view.
MAX_GAIN = 255.0


def mirrors(defence: dfn.Defence) -> bool:
    """Whether a defence's output is its input mirrored left-right.

    The defence says so itself (:attr:`engine.defences.Defence.mirrors`): a
    chain mirrors when an odd number of its members flip (two flips cancel).

    Examples
    --------
    >>> mirrors(dfn.WebPFlip()), mirrors(dfn.WebPFlip(flip=False))
    (True, False)
    >>> mirrors(dfn.Chain((dfn.WebPFlip(), dfn.MedianBlur(), dfn.WebPFlip())))
    False
    """
    return bool(defence.mirrors)


def _aligned(defended: np.ndarray, mirrored: bool) -> np.ndarray:
    """The defended image flipped back left-right when the defence mirrored it."""
    return np.ascontiguousarray(defended[:, ::-1]) if mirrored else defended


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True, eq=False)
class Prediction:
    """The model's output for one image.

    Attributes
    ----------
    probs : np.ndarray
        ``(C,)`` float32 softmax probabilities.
    label : int
        Index of the most probable class.
    confidence : float
        Probability of ``label``.
    top_k : list of (int, float)
        The :data:`TOP_K` most probable classes with their probabilities,
        most probable first.
    """

    probs: np.ndarray
    label: int
    confidence: float
    top_k: list[tuple[int, float]]

    @classmethod
    def from_probs(cls, probs: np.ndarray) -> Prediction:
        """Build from one row of probabilities."""
        p = np.asarray(probs, dtype=np.float32).reshape(-1)
        order = np.argsort(-p, kind="stable")[: min(TOP_K, len(p))]
        label = int(order[0])
        return cls(
            probs=p,
            label=label,
            confidence=float(p[label]),
            top_k=[(int(i), float(p[i])) for i in order],
        )


@dataclass(frozen=True, eq=False)
class LabResult:
    """Everything the Live lab shows for one attacked and defended image.

    Images are ``(H, W, 3)`` uint8 RGB at the model's input size. Distances
    are in 0-255 units and measured against :attr:`original` (the resized
    upload); the defended image's are measured like with like, flipped back
    first when the defence mirrors it (:attr:`mirrored`,
    :attr:`defended_aligned`).

    Attributes
    ----------
    original, adversarial, defended : np.ndarray
        The resized input, the attacked image, and the attacked image after
        the defence (what the model sees: mirrored when :attr:`mirrored`).
    perturbation_view : np.ndarray
        ``clip(128 + perturbation_gain * (adversarial - original), 0, 255)``
        as uint8: mid-grey where nothing changed.
    perturbation_gain : float
        Amplification of the view (a power of two chosen so that the largest
        change shows as about ±128, unless the caller fixed it).
    perturbation_scale : str
        How to read the view, e.g. ``"mid-grey = no change, lighter = raised,
        darker = lowered; ×16, so ±8 levels show as ±128"``.
    pred_clean, pred_adv, pred_defended : Prediction
        Model outputs on the three images.
    true_label : int or None
        The true class when the caller gave it.
    label_source : str
        :data:`LABEL_TRUE` or :data:`LABEL_FROM_MODEL`: which label an
        untargeted attack moved away from.
    attack_label : int
        That label.
    flipped : bool
        The attack changed the predicted class (``pred_adv.label !=
        pred_clean.label``).
    restored : bool
        The attack flipped the prediction and the defence gave the clean
        prediction back.
    linf, l2 : float
        L-infinity and L2 norms of ``adversarial - original``.
    l0_share : float
        Share of pixels with any channel changed, in [0, 1].
    psnr_adv, ssim_adv : float
        PSNR (dB, ``inf`` when identical) and SSIM of the adversarial image
        against the original.
    psnr_defended, ssim_defended : float
        The same for the defended image as it lines up with the original
        (:attr:`defended_aligned`: flipped back when :attr:`mirrored`).
    timings : dict of str to float
        Milliseconds spent in ``"resize"``, ``"attack"``, ``"defence"``,
        ``"predict"`` (all model forward passes) and ``"total"``.
    attack : str
        Attack id (a key of ``engine.attacks.REGISTRY``).
    attack_title : str
        Its display name.
    attack_params : dict
        Every declared parameter of the attack, defaults filled in.
    defence : str
        :func:`engine.defences.describe` of the defence (``"None"`` without one).
    defence_title : str
        Its short name, e.g. ``"NLM → Bilateral → Guided"``.
    defence_spec : dict or list
        :func:`engine.defences.to_spec` of the defence (JSON-able).
    threat_model : str
        :data:`THREAT_TRANSFER` (crafted on the undefended model), the
        adaptive label of :func:`engine.threat.adaptive_label` naming the
        defence's backward pass and EOT draws (crafted through the defence,
        e.g. ``"adaptive: crafted through the defence (bpda-identity)"``), or
        :data:`THREAT_CLEAN` when the budget is below one grey level (nothing
        can change).
    classes : list of str
        Class names, indexed like the probabilities.
    original_size : tuple of int
        ``(height, width)`` of the image before resizing.
    mirrored : bool
        The defence's net effect mirrors the image left-right
        (:func:`mirrors`).
    adaptive : bool
        The attack was crafted through the defence (the attacker knew it).
    eot_samples : int
        Draws of the defence averaged per gradient: more than 1 only for an
        adaptive attack through a randomised defence (EOT).
    """

    original: np.ndarray
    adversarial: np.ndarray
    defended: np.ndarray
    perturbation_view: np.ndarray
    perturbation_gain: float
    perturbation_scale: str
    pred_clean: Prediction
    pred_adv: Prediction
    pred_defended: Prediction
    true_label: int | None
    label_source: str
    attack_label: int
    flipped: bool
    restored: bool
    linf: float
    l2: float
    l0_share: float
    psnr_adv: float
    ssim_adv: float
    psnr_defended: float
    ssim_defended: float
    timings: dict[str, float]
    attack: str
    attack_title: str
    attack_params: dict[str, Any]
    defence: str
    defence_title: str
    defence_spec: dict[str, Any] | list[dict[str, Any]]
    threat_model: str
    classes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (0, 0)
    mirrored: bool = False
    adaptive: bool = False
    eot_samples: int = 1

    @property
    def defended_aligned(self) -> np.ndarray:
        """:attr:`defended` as it lines up with :attr:`original` (flipped back when mirrored).

        The image to compare with the original (the distances above, a
        before/after wipe); :attr:`defended` is what the model saw.
        """
        return _aligned(self.defended, self.mirrored)


# --------------------------------------------------------------------------- display helpers


def _auto_gain(linf: float) -> float:
    """Power of two (1 to 128) mapping a change of ``linf`` levels to about ±128."""
    if linf <= 0:
        return 1.0
    return float(2 ** min(7, max(0, math.floor(math.log2(128.0 / linf)))))


def _scale_text(gain: float, linf: float) -> str:
    head = "mid-grey = no change, lighter = raised, darker = lowered"
    if linf <= 0:
        return f"{head}; the attack changed no pixel"
    if gain == 1:
        return f"{head}; ×1 (not amplified)"
    return f"{head}; ×{gain:g}, so ±{128.0 / gain:g} levels show as ±128"


def _perturbation_view(delta: np.ndarray, gain: float) -> np.ndarray:
    view = 128.0 + gain * delta.astype(np.float32)
    return np.clip(np.rint(view), 0, 255).astype(np.uint8)


def _similarity(ref: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    p = metrics.psnr(ref, other)
    try:
        s = metrics.ssim(ref, other)
    except ParamError:  # smaller than the SSIM window: undefined, not an error
        s = math.nan
    return p, s


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _threat(eps: float, adaptive: bool, defence: dfn.Defence, draws: int) -> str:
    """The threat-model label of a live attack (clean below one grey level)."""
    if math.floor(eps) == 0:
        return THREAT_CLEAN
    return threat_label(defence, draws) if adaptive else THREAT_TRANSFER


# --------------------------------------------------------------------------- live lab


def run_lab(
    model: keras.Model,
    classes: Sequence[str],
    image: np.ndarray,
    *,
    label: int | None = None,
    attack: str = DEFAULT_ATTACK,
    attack_params: Mapping[str, Any] | Any | None = None,
    defence: DefenceLike = None,
    gain: float | None = None,
    adaptive: bool = False,
    eot_samples: int | None = None,
) -> LabResult:
    """Attack one image, defend it, and report what the model sees at each stage.

    Parameters
    ----------
    model : keras.Model
        A loaded classifier (e.g. ``engine.models.load_bundle(path).model``)
        with a fixed input size; its preprocessing is inside (0-255 RGB in).
        Never mutated.
    classes : sequence of str
        Class names, one per model output.
    image : np.ndarray
        One uint8 image of any size, ``(H, W, 3)`` RGB (or grey ``(H, W)``,
        ``(H, W, 1)``), resized to the model's input with
        :func:`engine.images.resize_image` (aspect ratio not kept).
    label : int or None, default=None
        True class index. ``None``: untargeted attacks move away from the
        model's own clean prediction instead (recorded in
        :attr:`LabResult.label_source`).
    attack : str, default=DEFAULT_ATTACK ("fgsm")
        A key of ``engine.attacks.REGISTRY``.
    attack_params : dict or parameter dataclass, optional
        The attack's parameters (e.g. ``{"eps": 8}``); missing ones take their
        declared defaults.
    defence : None, str, dict, list or Defence, default=None
        ``None`` for no defence, or anything :func:`engine.defences.from_spec`
        accepts (a dict for one defence, a list for a chain, an id string).
    gain : float, optional
        Amplification of :attr:`LabResult.perturbation_view` in [1, 255];
        default: a power of two that shows the largest change as about ±128.
    adaptive : bool, default=False
        Craft the attack through ``defence`` (the attacker knows it; see
        :class:`engine.lab.inputs.LiveAttacker`) instead of on the undefended
        model. Through no defence both are the same, bit for bit.
    eot_samples : int, optional
        EOT draws of a randomised defence per gradient when ``adaptive``;
        default: the declared :attr:`~engine.lab.inputs.LiveAttacker.eot_samples`.

    Returns
    -------
    LabResult

    Raises
    ------
    ImageError
        If ``image`` is not a uint8 image array.
    ParamError
        Unknown attack or defence, invalid parameters, a label or target
        outside the model's classes, ``classes`` not matching the model.
    ModelError
        If the model does not follow the classifier contract or has no fixed
        input size.
    """
    t_start = time.perf_counter()
    from engine.attacks import run_attack
    from engine.gradients import compiled

    # Validate everything cheap before any model work.
    info = attack_info(attack)
    params: Any = build(info.params_cls, attack_values(info, attack_params), owner=info.title)
    defence_obj = as_defence(defence)
    attacker = live_attacker(adaptive, eot_samples)
    draws = attacker.eot_samples if attacker.adaptive and defence_obj.randomised else 1
    image = check_image(image)
    if gain is not None and (
        isinstance(gain, bool)
        or not isinstance(gain, int | float)
        or not math.isfinite(gain)
        or not 1.0 <= gain <= MAX_GAIN
    ):
        raise ParamError(f"gain must be a number in [1, {MAX_GAIN:g}]; got {gain!r}.")
    comp = compiled(model)
    k = comp.num_classes
    names = check_classes(classes, k)
    true_label = check_label(label, k)
    h, w = input_hw(comp)
    no_defence = isinstance(defence_obj, dfn.Identity)
    mirrored = mirrors(defence_obj)

    t = time.perf_counter()
    original = resize_image(image, (h, w))
    t_resize = time.perf_counter() - t
    t_predict = 0.0

    # The attack's reference label: the true class, or else the clean prediction.
    p_clean = None
    if true_label is None:
        t = time.perf_counter()
        p_clean = comp.probs(original[None])[0]
        t_predict += time.perf_counter() - t
        attack_label = int(np.argmax(p_clean))
    else:
        attack_label = true_label

    t = time.perf_counter()
    through = defence_obj if attacker.adaptive else None  # None: on the undefended model
    y = np.array([attack_label])
    adversarial = run_attack(
        info.id, model, original[None], y, params, defence=through, eot_samples=draws
    )[0]
    t_attack = time.perf_counter() - t

    t = time.perf_counter()
    defended = adversarial.copy() if no_defence else defence_obj(adversarial)
    t_defence = time.perf_counter() - t

    # One forward pass for every image still to classify (bucket sizes 1-4).
    batch = [] if p_clean is not None else [original]
    batch.append(adversarial)
    if not no_defence:
        batch.append(defended)
    t = time.perf_counter()
    probs = comp.probs(np.stack(batch))
    t_predict += time.perf_counter() - t
    if p_clean is None:
        p_clean, probs = probs[0], probs[1:]
    p_adv = probs[0]
    p_def = p_adv if no_defence else probs[1]

    pred_clean = Prediction.from_probs(p_clean)
    pred_adv = Prediction.from_probs(p_adv)
    pred_def = Prediction.from_probs(p_def)
    flipped = pred_adv.label != pred_clean.label

    delta = adversarial.astype(np.int16) - original.astype(np.int16)
    norms = metrics.perturbation_norms(original, adversarial)
    linf = float(norms["linf"][0])
    g = float(gain) if gain is not None else _auto_gain(linf)
    psnr_adv, ssim_adv = _similarity(original, adversarial)
    psnr_def, ssim_def = _similarity(original, _aligned(defended, mirrored))

    timings = {
        "resize": _ms(t_resize),
        "attack": _ms(t_attack),
        "defence": _ms(t_defence),
        "predict": _ms(t_predict),
        "total": _ms(time.perf_counter() - t_start),
    }
    return LabResult(
        original=original,
        adversarial=adversarial,
        defended=defended,
        perturbation_view=_perturbation_view(delta, g),
        perturbation_gain=g,
        perturbation_scale=_scale_text(g, linf),
        pred_clean=pred_clean,
        pred_adv=pred_adv,
        pred_defended=pred_def,
        true_label=true_label,
        label_source=LABEL_FROM_MODEL if true_label is None else LABEL_TRUE,
        attack_label=attack_label,
        flipped=bool(flipped),
        restored=bool(flipped and pred_def.label == pred_clean.label),
        linf=linf,
        l2=float(norms["l2"][0]),
        l0_share=float(norms["l0_share"][0]),
        psnr_adv=psnr_adv,
        ssim_adv=ssim_adv,
        psnr_defended=psnr_def,
        ssim_defended=ssim_def,
        timings=timings,
        attack=info.id,
        attack_title=info.title,
        attack_params=as_dict(params),
        defence=dfn.describe(defence_obj),
        defence_title=defence_obj.TITLE,
        defence_spec=dfn.to_spec(defence_obj),
        threat_model=_threat(params.eps, attacker.adaptive, defence_obj, draws),
        classes=names,
        original_size=(int(image.shape[0]), int(image.shape[1])),
        mirrored=mirrored,
        adaptive=attacker.adaptive,
        eot_samples=draws,
    )
