"""Threat models as data: who knew what when an adversarial image was made.

Every robustness number the project shows carries a threat-model label, stored
in the ``threat_model`` column of every results row. A defence that looks
strong against attacks crafted on the undefended model can fall to an
adaptive attack that knows it (Athalye, Carlini and Wagner, 2018), so the
label is data, never a sentence only in the docs.

The vocabulary is one frozen :class:`ThreatModel` record per threat model
(:data:`THREAT_MODELS`, by id):

========== ================================================================
id         stored label
========== ================================================================
clean      ``clean (no attack)``
transfer   ``crafted on the undefended model, tested through the defence``
adaptive   ``adaptive: crafted through the defence`` plus the attacker's
           backward pass and EOT samples, e.g. ``adaptive: crafted through
           the defence (BPDA identity, EOT 8)`` (:func:`adaptive_label`)
black_box  ``black-box: crafted from the model's answers only`` (no attack
           of the engine produces it yet)
========== ================================================================

The clean and transfer labels are stored in the shipped results tables: they
never change. :func:`parse` turns any stored label back into its record, and
:func:`parse_adaptive` into the adaptive attacker's stand-in and EOT samples.

Example
-------
>>> label = adaptive_label("BPDA identity", eot=8)
>>> label
'adaptive: crafted through the defence (BPDA identity, EOT 8)'
>>> parse(label).id, parse_adaptive(label)
('adaptive', AdaptiveAttacker(backward='BPDA identity', eot=8))
>>> parse(THREAT_TRANSFER).title
'Transfer'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import ParamError

__all__ = [
    "ADAPTIVE",
    "BLACK_BOX",
    "CLEAN",
    "THREAT_ADAPTIVE",
    "THREAT_BLACK_BOX",
    "THREAT_CLEAN",
    "THREAT_MODELS",
    "THREAT_TRANSFER",
    "TRANSFER",
    "AdaptiveAttacker",
    "ThreatModel",
    "adaptive_label",
    "explain",
    "is_adaptive",
    "parse",
    "parse_adaptive",
]


@dataclass(frozen=True)
class ThreatModel:
    """One threat model: what the attacker knew when the adversarial images were made.

    Attributes
    ----------
    id : str
        Short key: ``"clean"``, ``"transfer"``, ``"adaptive"``, ``"black_box"``.
    label : str
        The exact text stored in a results row's ``threat_model`` column (for
        ``adaptive``, the stem that :func:`adaptive_label` extends).
    title : str
        A one-word name for legends and tables (``"Transfer"``).
    description : str
        What the setting is, for researchers, with its references.
    explanation : str
        One plain-language sentence for stakeholders who are not ML experts.
    """

    id: str
    label: str
    title: str
    description: str
    explanation: str


CLEAN = ThreatModel(
    id="clean",
    label="clean (no attack)",
    title="Clean",
    description="No perturbation (ε = 0): the accuracy of the model behind each defence "
    "on unmodified test images.",
    explanation="Unmodified test images: the price a defence costs when nobody attacks.",
)
TRANSFER = ThreatModel(
    id="transfer",
    label="crafted on the undefended model, tested through the defence",
    title="Transfer",
    description="Non-adaptive (grey-box) setting: white-box adversarial examples crafted on "
    "the undefended model, then passed through the defence. An upper bound on the defence's "
    "robust accuracy, never evidence of robustness on its own (Athalye, Carlini & Wagner "
    "2018; Carlini et al. 2019).",
    explanation="The attacker knew the model but not the defence, so read these numbers as "
    "the best case for the defence: an attacker who knows it (adaptive attack) usually does "
    "better.",
)
ADAPTIVE = ThreatModel(
    id="adaptive",
    label="adaptive: crafted through the defence",
    title="Adaptive",
    description="White-box through the defence: the forward pass runs the exact defence, the "
    "backward pass its exact gradient where it is differentiable or a stand-in where it is "
    "not (BPDA, Athalye, Carlini & Wagner 2018), averaged over the defence's randomness for "
    "a randomised defence (EOT, Athalye et al. 2018). The label names the backward pass and "
    "the EOT samples.",
    explanation="The attacker knew the defence and attacked straight through it: the honest "
    "test of what a defence is worth.",
)
BLACK_BOX = ThreatModel(
    id="black_box",
    label="black-box: crafted from the model's answers only",
    title="Black-box",
    description="Query-only setting: the attacker sees the defended model's outputs (scores "
    "or decisions), not its weights or gradients. No attack of the engine produces it yet.",
    explanation="The attacker could only ask the model questions and read its answers, "
    "without seeing inside it or knowing the defence.",
)

#: Every threat model, by id.
THREAT_MODELS: dict[str, ThreatModel] = {t.id: t for t in (CLEAN, TRANSFER, ADAPTIVE, BLACK_BOX)}

THREAT_CLEAN = CLEAN.label
THREAT_TRANSFER = TRANSFER.label
THREAT_ADAPTIVE = ADAPTIVE.label
THREAT_BLACK_BOX = BLACK_BOX.label

_ADAPTIVE_RE = re.compile(
    re.escape(ADAPTIVE.label) + r"(?: \((?P<backward>[^()]+?)(?:, EOT (?P<eot>[1-9]\d*))?\))?"
)


@dataclass(frozen=True)
class AdaptiveAttacker:
    """What an adaptive attacker's label says about it.

    Attributes
    ----------
    backward : str
        The backward pass through the defence, as the defence names it
        (:attr:`engine.defences.Defence.backward`: ``"exact"`` where it is
        differentiable, ``"bpda-identity"`` for the straight-through identity, a
        chain's kinds joined by ``+``) or another stand-in (``"Gaussian stand-in"``);
        ``""`` when the label names none.
    eot : int
        Samples of the defence's randomness averaged per gradient (1: no EOT).
    """

    backward: str
    eot: int = 1


def adaptive_label(backward: str = "", eot: int = 1) -> str:
    """The stored label of an adaptive attack through its backward pass.

    Parameters
    ----------
    backward : str, default=""
        The backward pass or gradient stand-in (see :class:`AdaptiveAttacker`); ``""``
        gives the bare stem :data:`THREAT_ADAPTIVE`.
    eot : int, default=1
        Expectation over Transformation samples; 1 (no EOT) is not written.

    Returns
    -------
    str
        E.g. ``"adaptive: crafted through the defence (BPDA identity, EOT 8)"`` or
        ``"adaptive: crafted through the defence (exact)"``.

    Raises
    ------
    ParamError
        When ``backward`` contains parentheses, ", EOT" or a line break, or ``eot`` is
        not a positive integer (or EOT is given without a backward pass).
    """
    if not isinstance(backward, str) or re.search(r"[()\n]|, EOT", backward):
        raise ParamError(
            "adaptive_label: 'backward' must be a string without parentheses, ', EOT' or "
            f"line breaks; got {backward!r}."
        )
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise ParamError(f"adaptive_label: 'eot' must be a positive integer; got {eot!r}.")
    backward = backward.strip()
    if not backward:
        if eot != 1:
            raise ParamError("adaptive_label: EOT samples need a named backward pass.")
        return THREAT_ADAPTIVE
    inner = backward if eot == 1 else f"{backward}, EOT {eot}"
    return f"{THREAT_ADAPTIVE} ({inner})"


def _match(label: object) -> ThreatModel | None:
    if not isinstance(label, str):
        return None
    for model in THREAT_MODELS.values():
        if label == model.label:
            return model
    return ADAPTIVE if _ADAPTIVE_RE.fullmatch(label) else None


def parse(label: str) -> ThreatModel:
    """The threat model of a stored ``threat_model`` label.

    Raises
    ------
    ParamError
        When the label belongs to no threat model of :data:`THREAT_MODELS`.
    """
    model = _match(label)
    if model is None:
        known = "; ".join(repr(t.label) for t in THREAT_MODELS.values())
        raise ParamError(
            f"Unknown threat-model label {label!r}; known: {known} "
            "(adaptive labels may name their backward pass and EOT samples)."
        )
    return model


def parse_adaptive(label: str) -> AdaptiveAttacker | None:
    """The backward pass and EOT samples an adaptive label names (``None`` if not adaptive)."""
    m = _ADAPTIVE_RE.fullmatch(label) if isinstance(label, str) else None
    if m is None:
        return None
    return AdaptiveAttacker(m["backward"] or "", int(m["eot"] or 1))


def is_adaptive(label: str) -> bool:
    """Whether a stored label is an adaptive attack's (whatever its backward pass)."""
    return _match(label) is ADAPTIVE


def explain(label: str) -> str:
    """The plain-language sentence of a stored label's threat model (``""`` if unknown)."""
    model = _match(label)
    return model.explanation if model is not None else ""
