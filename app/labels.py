"""Names, units and formats of what the dashboard shows: one registry of titles.

* :data:`METRICS`: every metric column of ``results.csv``, with its display
  name, direction, unit and a sentence for a non-expert; :data:`MODEL_PANEL`
  and :data:`PATIENT_PANEL` are seed 001's two recap panels.
* Titles come from the engine's registries and nowhere else: an attack's from
  :data:`engine.attacks.REGISTRY` (:func:`attack_title`), a defence family's
  from :data:`engine.defences.REGISTRY` (:func:`family_title`).
* :func:`format_value`, :func:`format_metric` and :func:`setting_label` turn
  values, metrics and defence keys (:mod:`engine.evaluation.keys`) into text.

Nothing here reads a results table; nothing imports plotly or streamlit.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from engine.attacks import REGISTRY as ATTACKS
from engine.defences import REGISTRY as DEFENCES
from engine.errors import ParamError
from engine.evaluation import keys
from engine.evaluation.query import family_title
from engine.params import format_number

__all__ = [
    "EPS_AXIS",
    "METRICS",
    "MODEL_PANEL",
    "PATIENT_PANEL",
    "MetricInfo",
    "attack_title",
    "check_metric",
    "family_title",
    "format_metric",
    "format_value",
    "param_help",
    "setting_label",
    "setting_phrase",
]

#: Axis title for attack budgets (the engine's one pixel convention, see :mod:`engine`).
EPS_AXIS = "ε (L∞, 0–255 pixel levels)"


class MetricInfo(NamedTuple):
    """How to show one metric column of ``results.csv``.

    Attributes
    ----------
    label : str
        Display name.
    higher_is_better : bool
        Whether a defender wants it high.
    patient : bool
        Whether it belongs to the patient (sick vs healthy) view; ``NaN`` for
        datasets without "sick" classes.
    help : str
        One or two sentences for a non-expert.
    unit : str
        ``"share"`` (a fraction in [0, 1], shown as a percentage), ``"dB"``,
        ``"levels"`` (0-255 pixel units) or ``"index"`` (unitless).
    """

    label: str
    higher_is_better: bool
    patient: bool
    help: str
    unit: str = "share"


#: Metric id (a column of ``results.csv``) -> how to show it, in display order.
METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo(
        "Accuracy", True, False, "Share of images whose class the model got right."
    ),
    "macro_recall": MetricInfo(
        "Macro recall",
        True,
        False,
        "For each class, the share of its images the model recognised, averaged over classes: "
        "a rare class counts as much as a common one.",
    ),
    "macro_specificity": MetricInfo(
        "Macro specificity",
        True,
        False,
        "For each class, the share of the other images the model correctly kept out of it, "
        "averaged over classes.",
    ),
    "fooling_rate": MetricInfo(
        "Fooling rate",
        False,
        False,
        "Of the images the undefended model got right on clean inputs, the share whose answer "
        "is now wrong.",
    ),
    "mean_confidence": MetricInfo(
        "Mean confidence",
        True,
        False,
        "Average probability the model gives its own answer. High confidence is not "
        "correctness: attacked models are often confidently wrong.",
    ),
    "true_class_confidence": MetricInfo(
        "Confidence in the true class",
        True,
        False,
        "Average probability the model gives the correct class; it falls when an attack makes "
        "the model confidently wrong.",
    ),
    "patient_accuracy": MetricInfo(
        "Patient accuracy",
        True,
        True,
        "Share of patients correctly called sick or healthy (classes collapsed to sick vs "
        "healthy).",
    ),
    "sensitivity": MetricInfo(
        "Sensitivity", True, True, "Share of sick patients the model flags as sick."
    ),
    "specificity": MetricInfo(
        "Specificity", True, True, "Share of healthy patients the model clears as healthy."
    ),
    "npv": MetricInfo(
        "NPV",
        True,
        True,
        "Negative predictive value: when the model says “healthy”, how often the patient really "
        "is healthy.",
    ),
    "ppv": MetricInfo(
        "PPV",
        True,
        True,
        "Positive predictive value: when the model says “sick”, how often the patient really is "
        "sick.",
    ),
    "fnr": MetricInfo(
        "False-negative rate",
        False,
        True,
        "Share of sick patients the model calls healthy: missed diagnoses.",
    ),
    "psnr_mean": MetricInfo(
        "PSNR",
        True,
        False,
        "How close the defended image is to the clean one, in decibels (higher is closer; "
        "infinite when identical).",
        "dB",
    ),
    "ssim_mean": MetricInfo(
        "SSIM",
        True,
        False,
        "Structural similarity of the defended image to the clean one (1 = identical).",
        "index",
    ),
    "pert_linf_mean": MetricInfo(
        "Perturbation L∞",
        False,
        False,
        "Largest change the attack made to any pixel, in 0–255 levels (before the defence), "
        "averaged over images.",
        "levels",
    ),
    "pert_l2_mean": MetricInfo(
        "Perturbation L2",
        False,
        False,
        "Overall size of the attack's change (square root of the summed squared pixel changes), "
        "in 0–255 levels, averaged over images.",
        "levels",
    ),
}

#: Seed 001's "model performance" panel.
MODEL_PANEL: tuple[str, ...] = ("accuracy", "macro_recall", "macro_specificity", "fooling_rate")
#: Seed 001's "impact on health" (patient) panel.
PATIENT_PANEL: tuple[str, ...] = ("patient_accuracy", "sensitivity", "npv", "fnr")


def check_metric(metric: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``metric``.

    Raises
    ------
    ParamError
        ``metric`` is not a key of :data:`METRICS`.
    """
    info = METRICS.get(metric) if isinstance(metric, str) else None
    if info is None:
        raise ParamError(f"Unknown metric {metric!r}; known: {', '.join(METRICS)}.")
    return info


def attack_title(attack: str) -> str:
    """Display name of an attack id, from :data:`engine.attacks.REGISTRY` (``"PGD"``).

    An id the registry does not know is shown upper-cased.
    """
    info = ATTACKS.get(attack)
    return info.title if info is not None else str(attack).upper()


def format_value(value: Any) -> str:
    """A parameter value for display: ``5``, ``0.5``, ``on``/``off``.

    Floats with at most six significant digits
    (:func:`engine.params.format_number`), the rest as in a defence key
    (:func:`engine.evaluation.keys.format_value`), flags as ``on``/``off``.
    """
    if isinstance(value, bool | np.bool_):
        return "on" if value else "off"
    if isinstance(value, float | np.floating):
        return format_number(float(value))
    return keys.format_value(value)


def format_metric(metric: str, value: Any, *, digits: int = 1) -> str:
    """A metric value for display: ``"81.9 %"``, ``"29.8 dB"``, ``"n/a"`` for NaN.

    Parameters
    ----------
    metric : str
        A key of :data:`METRICS`.
    value : float
        The value as stored (shares as fractions in [0, 1]).
    digits : int, default=1
        Digits after the decimal point.
    """
    unit = check_metric(metric).unit
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞ dB (identical)" if unit == "dB" else "∞"
    if unit == "share":
        return f"{100 * v:.{digits}f} %"
    if unit == "dB":
        return f"{v:.{digits}f} dB"
    if unit == "levels":
        return f"{v:.{digits}f} levels"
    return f"{v:.{max(digits, 3)}f}"


def setting_label(key: str) -> str:
    """Short display name of a setting: ``"No defence"``, ``"NLM h=5, h_color=5"``.

    Chains join their members' short names with arrows.
    """
    members = keys.parse_key(str(key))
    if len(members) == 1 and members[0].id == keys.NO_DEFENCE:
        return "No defence"
    parts = []
    for m in members:
        name = family_title(m.id, short=True)
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in m.params.items())
        parts.append(f"{name} {inner}" if inner else name)
    return " → ".join(parts)


def setting_phrase(key: str) -> str:
    """A setting's name inside a sentence: ``"no defence"``, else :func:`setting_label`."""
    label = setting_label(key)
    return "no defence" if label == "No defence" else label


def param_help(family: str, name: str) -> str:
    """The one-line help of a parameter from its defence's declaration (``""`` if none).

    ``name`` is as :func:`engine.evaluation.keys.flat_params` writes it: ``"h"``
    for a single defence, ``"nlm.h"`` or ``"median#2.kernel"`` in a chain.
    """
    member, _, pname = name.rpartition(".")
    fam = member.split("#")[0] if member else family
    cls = DEFENCES.get(fam)
    for p in getattr(cls, "PARAMS", ()):
        if p.name == pname:
            return str(p.help)
    return ""
