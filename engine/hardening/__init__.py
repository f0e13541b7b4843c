"""Training-time defences: the ones that change the model, not its input.

``python -m engine.train ... --defence SPEC`` trains (usually fine-tunes a
``--base`` bundle) with one of them; the bundle's metadata and card record
it. ``SPEC`` is ``KIND:METHOD[,key=value,...]``:

* ``adversarial:fgsm,eps=2`` — seed 001's *adversarial retraining*: each
  training batch has a fraction ``mix`` (default 0.5) of its images replaced
  by FGSM images of themselves with their true labels, crafted on the model
  being trained (Goodfellow et al. 2015).
* ``adversarial:fgsm_rs,eps=2`` — *fast adversarial training* (Wong, Rice,
  Kolter 2020, "Fast is better than free"): one FGSM step of ``1.25 * eps``
  from a uniform random start in the eps-ball, every image (``mix=1``).
* ``adversarial:pgd,eps=2,steps=3`` — *PGD adversarial training* (Madry et
  al. 2018): PGD with a random start and step ``max(0.5, 2.5 * eps / steps)``
  unless ``step_size`` is given, every image.
* ``distill:defensive,temperature=20`` — *defensive distillation* (Papernot
  et al. 2016; seed 003): a student trained on the ``--base`` model's soft
  labels at temperature ``T`` and deployed at 1 (:func:`engine.hardening.fit.soft_labeller`). Its
  softmax saturates, so gradient-based attacks on the cross-entropy find no
  gradient: robustness that a margin (C&W-style) loss takes away (Carlini &
  Wagner 2016, "Defensive distillation is not robust to adversarial
  examples"). A sweep of it should trip the gradient-masking sanity check.
* ``filter:gaussian,sigma=1`` / ``filter:median,kernel=3`` — seed 004's
  *filter training*: the same filter at training and at test time, built into
  the model as its first layer (:mod:`engine.layers`), so every attack on the
  bundle goes through it with its exact gradient (white-box).

This module is the grammar and needs no TensorFlow; what runs while a model
trains is in :mod:`engine.hardening.fit`. Adversarial images are crafted by
:func:`engine.attacks.run_attack` (budget enforced, uint8) on the model in
inference mode, one batch at a time. A model
trained against one attack can look robust to it and fall to a stronger one
(catastrophic overfitting of FGSM training, Wong et al. 2020 section 5), so
every epoch :class:`engine.hardening.fit.RobustValidation` measures PGD-10 accuracy on a fixed
held-out batch; training keeps the checkpoint with the best *balanced* PGD
accuracy (macro recall: a model that calls everything "pneumonia" scores the
majority rate on plain accuracy) and stops with a warning when it collapses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.attacks.pgd import relative_step
from engine.errors import ParamError

__all__ = [
    "ADVERSARIAL",
    "DISTILL",
    "FILTERS",
    "TrainingDefence",
    "caveat",
    "check_steps",
    "parse",
    "robust_params",
    "robust_score",
]


@dataclass(frozen=True)
class _Method:
    """One training-time defence method: what it is, its attack, its defaults."""

    title: str
    short: str  # for pickers: what the model is, in a few words
    paper: str
    attack: str  # engine.attacks id used to craft the training images ("" for filters)
    allowed: tuple[str, ...]  # keys a spec may give
    mix: float = 1.0  # default fraction of each batch made adversarial
    caveat: str = ""  # what its robust numbers under gradient attacks do not mean


#: Adversarial training methods, by the METHOD of ``adversarial:METHOD,...``.
ADVERSARIAL: dict[str, _Method] = {
    "fgsm": _Method(
        "adversarial retraining (FGSM)",
        "adversarially retrained (FGSM)",
        "Goodfellow, Shlens, Szegedy, ICLR 2015; seed 001's adversarial retraining",
        "fgsm",
        ("eps", "mix"),
        mix=0.5,
    ),
    "fgsm_rs": _Method(
        "fast adversarial training (FGSM with random start)",
        "fast adversarial training (FGSM-RS)",
        "Wong, Rice, Kolter. Fast is better than free. ICLR 2020. arXiv:2001.03994",
        "pgd",
        ("eps", "mix", "alpha"),
    ),
    "pgd": _Method(
        "PGD adversarial training",
        "PGD adversarial training",
        "Madry et al. Towards Deep Learning Models Resistant to Adversarial "
        "Attacks. ICLR 2018. arXiv:1706.06083",
        "pgd",
        ("eps", "mix", "steps", "step_size"),
    ),
}

#: Filters a model can be trained with (``filter:METHOD,...``): engine.layers classes.
FILTERS: dict[str, _Method] = {
    "gaussian": _Method(
        "Gaussian-trained (the blur at training and test time)",
        "Gaussian-trained",
        "Jézéquel 2019 (seed 004), filter training",
        "",
        ("sigma",),
    ),
    "median": _Method(
        "median-trained (the filter at training and test time)",
        "median-trained",
        "Jézéquel 2019 (seed 004), filter training",
        "",
        ("kernel",),
    ),
}

#: Distillation (``distill:defensive,temperature=T``).
DISTILL: dict[str, _Method] = {
    "defensive": _Method(
        "defensive distillation",
        "defensive distillation",
        "Papernot, McDaniel, Wu, Jha, Swami. Distillation as a Defense to Adversarial "
        "Perturbations against Deep Neural Networks. IEEE S&P 2016. arXiv:1511.04508",
        "",
        ("temperature",),
        caveat=(
            "Defensive distillation saturates the softmax, so attacks that follow the "
            "cross-entropy gradient stall: gradient masking, not robustness (Carlini & "
            "Wagner 2016). Its accuracy under these attacks is an upper bound."
        ),
    ),
}
#: Largest distillation temperature accepted (Papernot et al. use up to 100).
MAX_TEMPERATURE = 100.0

_KINDS = {"adversarial": ADVERSARIAL, "filter": FILTERS, "distill": DISTILL}
_EXAMPLES = (
    "adversarial:fgsm,eps=2 | adversarial:fgsm_rs,eps=2 | adversarial:pgd,eps=2,steps=3 "
    "| filter:gaussian,sigma=1 | filter:median,kernel=3 | distill:defensive,temperature=20"
)


@dataclass(frozen=True)
class TrainingDefence:
    """A parsed ``--defence`` spec (see the module docstring).

    Attributes
    ----------
    kind : {"adversarial", "filter"}
    method : str
        Key of :data:`ADVERSARIAL` or :data:`FILTERS`.
    params : dict
        For ``adversarial``: the parameters of the crafting attack
        (:mod:`engine.attacks`), validated; for ``filter``: the layer's.
    mix : float
        Fraction of each training batch replaced by adversarial images.
    """

    kind: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    mix: float = 1.0

    @property
    def info(self) -> _Method:
        return _KINDS[self.kind][self.method]

    @property
    def eps(self) -> float:
        """The adversarial budget (0 for a filter)."""
        return float(self.params.get("eps", 0.0))

    def label(self) -> str:
        """One line for cards and logs, e.g. ``PGD adversarial training (eps 2, 3 steps)``."""
        p = self.params
        if self.kind == "filter":
            args = ", ".join(f"{k} {v:g}" for k, v in p.items())
            return f"{self.info.title}: {self.method} {args}"
        if self.kind == "distill":
            return f"{self.info.title} at temperature {p['temperature']:g}"
        bits = [f"eps {p['eps']:g}/255"]
        if self.method == "pgd":
            bits.append(f"{p['steps']} steps of {p['step_size']:g}")
        if self.method == "fgsm_rs":
            bits.append(f"step {p['step_size']:g} from a random start")
        bits.append(f"{self.mix:.0%} of each batch")
        return f"{self.info.title} ({', '.join(bits)})"

    def short(self) -> str:
        """A few words for pickers, e.g. ``fast adversarial training (FGSM-RS), eps 4``."""
        if self.kind == "distill":
            return f"{self.info.short}, T {self.params['temperature']:g}"
        if self.kind == "filter":
            (k, v), *_ = self.params.items()
            return f"{self.info.short}, {'σ' if k == 'sigma' else k} {v:g}"
        return f"{self.info.short}, ε {self.eps:g}"

    @property
    def variant(self) -> str:
        """The model-folder suffix of a bundle trained with it, e.g. ``adversarial_fgsm_rs``."""
        return f"{self.kind}_{self.method}"

    def to_dict(self) -> dict[str, Any]:
        """What the bundle's metadata records (``training.defence``)."""
        return {
            "kind": self.kind,
            "method": self.method,
            "params": dict(self.params),
            "mix": self.mix,
            "label": self.label(),
            "short": self.short(),
            "paper": self.info.paper,
        }


def caveat(kind: str, method: str) -> str:
    """What a defence's robust numbers under gradient attacks do not mean ("" if nothing)."""
    m = _KINDS.get(kind, {}).get(method)
    return m.caveat if m is not None else ""


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParamError(f"--defence: '{key}' must be a number; got {text!r}.") from None


def parse(text: str | None) -> TrainingDefence | None:
    """Parse a ``--defence`` spec; ``None`` or ``""`` means no training-time defence.

    Raises
    ------
    ParamError
        Unknown kind, method or key, or a value out of its declared range.
    """
    if not text:
        return None
    head, _, rest = text.partition(":")
    kind = head.strip()
    if kind not in _KINDS:
        raise ParamError(
            f"--defence: unknown kind {kind!r}; use one of {', '.join(_KINDS)} (e.g. {_EXAMPLES})."
        )
    parts = [s.strip() for s in rest.split(",") if s.strip()]
    methods = _KINDS[kind]
    if not parts or parts[0] not in methods:
        got = parts[0] if parts else ""
        raise ParamError(
            f"--defence {kind}: unknown method {got!r}; use one of {', '.join(methods)} "
            f"(e.g. {_EXAMPLES})."
        )
    method, info = parts[0], methods[parts[0]]
    values: dict[str, float] = {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in info.allowed:
            raise ParamError(
                f"--defence {kind}:{method}: {part!r} is not key=value with a key in "
                f"{', '.join(info.allowed)}."
            )
        values[key] = _number(key, value.strip())
    if kind == "filter":
        return TrainingDefence(kind, method, _filter_params(method, values), mix=1.0)
    if kind == "distill":
        t = values.get("temperature", 20.0)
        if not 1.0 <= t <= MAX_TEMPERATURE:
            raise ParamError(
                f"--defence distill: 'temperature' must be a number in [1, "
                f"{MAX_TEMPERATURE:g}]; got {t:g}."
            )
        return TrainingDefence(kind, method, {"temperature": float(t)}, mix=1.0)
    return _adversarial(method, info, values)


def _filter_params(method: str, values: Mapping[str, float]) -> dict[str, Any]:
    from engine.defences import make_defence

    params: dict[str, Any] = {k: (int(v) if method == "median" else v) for k, v in values.items()}
    # the input defence of the same name validates the values (one declaration)
    make_defence(method, params)
    if method == "gaussian":
        return {"sigma": float(params.get("sigma", 1.0))}
    return {"kernel": int(params.get("kernel", 3))}


def _adversarial(method: str, info: _Method, values: dict[str, float]) -> TrainingDefence:
    from engine.attacks import REGISTRY
    from engine.params import as_dict, build

    mix = values.pop("mix", info.mix)
    if not 0.0 < mix <= 1.0:
        raise ParamError(f"--defence adversarial: 'mix' must be in (0, 1]; got {mix:g}.")
    if "eps" not in values or values["eps"] <= 0:
        raise ParamError(
            f"--defence adversarial:{method}: give a budget eps > 0 (0-255 units), e.g. eps=2."
        )
    eps = values["eps"]
    attack: dict[str, Any] = {"eps": eps}
    if method == "fgsm_rs":
        # Wong et al. 2020: alpha = 1.25 eps from a uniform random start
        alpha = values.pop("alpha", 1.25)
        attack.update(steps=1, step_size=max(0.1, alpha * eps), random_start=True)
    elif method == "pgd":
        steps = int(values.get("steps", 3))
        step = values.get("step_size", relative_step(eps, steps))
        attack.update(steps=steps, step_size=step, random_start=True)
    params_cls = REGISTRY[info.attack].params_cls
    checked = as_dict(build(params_cls, attack, owner=f"--defence adversarial:{method}"))
    keep = {k: checked[k] for k in attack}
    return TrainingDefence("adversarial", method, keep, mix=float(mix))


def robust_params(eps: float, steps: int = 10) -> dict[str, Any]:
    """PGD settings of the per-epoch robustness check: the sweeps' PGD-10 step rule."""
    return {
        "eps": float(eps),
        "steps": int(steps),
        "step_size": relative_step(eps, steps),
        "random_start": True,
        "seed": 0,
    }


#: Clean balanced accuracy below which a model counts as having no skill (chance is 1/K).
SKILL_MARGIN = 0.1


#: Weight of clean balanced accuracy in :func:`robust_score`: it only breaks ties, being
#: below any difference of balanced PGD accuracy on a check set of under 500 images.
TIE_BREAK = 1e-3


def robust_score(clean_balanced: float, pgd_balanced: float, n_classes: int) -> float:
    """What adversarial training keeps the best checkpoint by: balanced PGD accuracy, if skilled.

    A model that answers one class for everything is "robust" (its answers
    never change) with balanced accuracy ``1 / K`` under attack, more than a
    real model that an attack breaks. So an epoch whose *clean* balanced
    accuracy is within :data:`SKILL_MARGIN` of chance scores 0 (seen here: PGD-3
    fine-tuning of the chest model ended on a model that calls every X-ray
    pneumonia, 62.5 % accuracy and 50 % balanced accuracy on the test split).
    Among skilled epochs with the same balanced PGD accuracy, the one with the
    higher clean balanced accuracy wins (:data:`TIE_BREAK`; seen here: seed-001
    FGSM retraining of the chest model scored 0 under PGD at every epoch).
    """
    if clean_balanced < 1.0 / n_classes + SKILL_MARGIN:
        return 0.0
    return float(pgd_balanced) + TIE_BREAK * float(clean_balanced)


def check_steps(history: list[float], *, drop: float = 0.1) -> bool:
    """Whether the last value of a robust-accuracy history has *collapsed*.

    Catastrophic overfitting (Wong et al. 2020): PGD accuracy falls within an
    epoch from its best to near zero while FGSM accuracy stays high. Here:
    the last value is more than ``drop`` below the best so far *and* below
    half of it. (Seen here: FGSM-RS at eps 4 on the chest X-ray model, balanced
    PGD accuracy 15.1 % after the first epoch, 2.2 % after the second, with
    FGSM accuracy 68 % then 66 %.)
    """
    if len(history) < 2:
        return False
    best, last = max(history[:-1]), history[-1]
    return best - last > drop and last < 0.5 * best
