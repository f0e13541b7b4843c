"""Metrics for one evaluation cell: classifier performance and patient risk.

Pure numpy. Three families:

* **Model performance** (seed 001, section 3.4.1), from a multi-class confusion
  matrix: accuracy, per-class and macro recall, per-class and macro
  specificity, plus the fooling rate of an attack.
* **Impact on health** (seed 001, section 3.4.2), from a 2x2 "patient"
  confusion matrix in which every class is either *sick* (positive, e.g.
  melanoma) or *healthy*: accuracy, sensitivity, specificity, NPV, PPV, FNR.
* **Perturbation size and image similarity**, in the project's 0-255 pixel
  units (see :mod:`engine`): L-infinity, L2, share of changed pixels, PSNR,
  SSIM. They live in :mod:`engine.distances` and are re-exported here, so a
  results row's metrics all come from one namespace.

Undefined values
----------------
A ratio whose denominator is zero (recall of a class with no true samples,
NPV when nothing is predicted healthy, fooling rate when no image was
originally correct, ...) is returned as ``NaN``, never as 0 or 1. Macro
averages skip ``NaN`` classes (``nanmean``) and are themselves ``NaN`` only
when every class is undefined. A ``NaN`` in a results table therefore always
means "not defined for this data", never "bad".

:func:`summarize` bundles everything for one evaluation cell in a flat,
JSON-able dict (the schema stored by the result tables).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from engine.distances import (
    image_distances,
    perturbation_norms,
    psnr,
    psnr_batch,
    ssim,
    ssim_batch,
)
from engine.errors import ParamError

__all__ = [
    "accuracy",
    "binary_confusion",
    "confusion_matrix",
    "fooling_rate",
    "image_distances",
    "macro_recall",
    "macro_specificity",
    "mean_confidence",
    "patient_metrics",
    "per_class_recall",
    "per_class_specificity",
    "perturbation_norms",
    "psnr",
    "psnr_batch",
    "ssim",
    "ssim_batch",
    "summarize",
    "true_class_confidence",
]


#: Tolerance on probabilities: values in [-tol, 1 + tol], rows summing to 1 +- ROW_SUM_TOL.
_PROB_TOL = 1e-6
_ROW_SUM_TOL = 1e-3


# --------------------------------------------------------------------------- validation


def _check_n_classes(n_classes: Any) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 1:
        raise ParamError(f"n_classes must be a positive integer; got {n_classes!r}.")
    return int(n_classes)


def _labels(y: ArrayLike, name: str, n_classes: int | None = None) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of class labels, or raise ParamError."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParamError(
            f"{name} must be a 1-D array of integer class labels; got shape {arr.shape}."
        )
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ParamError(f"{name} must hold integer class labels; got non-integer values.")
    elif arr.dtype.kind not in "iub":
        raise ParamError(f"{name} must hold integer class labels; got dtype {arr.dtype}.")
    out = arr.astype(np.int64)
    low, high = int(out.min()), int(out.max())
    if low < 0 or (n_classes is not None and high >= n_classes):
        bad = low if low < 0 else high
        bound = f"[0, {n_classes})" if n_classes is not None else "[0, n_classes)"
        raise ParamError(f"{name} has labels outside {bound}: found {bad}.")
    return out


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        names, values = list(lengths), [str(n) for n in lengths.values()]
        raise ParamError(
            f"{', '.join(names[:-1])} and {names[-1]} must have the same length; "
            f"got {', '.join(values[:-1])} and {values[-1]}."
        )


def _check_cm(cm: ArrayLike, name: str = "cm") -> np.ndarray:
    arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ParamError(f"{name} must be a square 2-D confusion matrix; got shape {arr.shape}.")
    if arr.dtype.kind not in "iuf" or np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ParamError(f"{name} must hold non-negative counts.")
    return arr.astype(np.float64)


def _probs(probs: ArrayLike) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ParamError(
            f"probs must be a 2-D array (n_images, n_classes) of class probabilities; "
            f"got shape {arr.shape}."
        )
    if arr.size and (
        not np.all(np.isfinite(arr))
        or arr.min() < -_PROB_TOL
        or arr.max() > 1 + _PROB_TOL
        or np.any(np.abs(arr.sum(axis=1) - 1.0) > _ROW_SUM_TOL)
    ):
        raise ParamError(
            "probs must be probabilities in [0, 1] whose rows sum to 1 (softmax outputs, "
            "not logits)."
        )
    return arr


def _ratio(num: float, den: float) -> float:
    """``num / den`` as a float, ``NaN`` when ``den == 0``."""
    return float(num) / float(den) if den > 0 else math.nan


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite entries; ``NaN`` (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


# --------------------------------------------------------------------------- model performance


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """Multi-class confusion matrix.

    ``cm[i, j]`` is the number of images of true class ``i`` predicted as class
    ``j`` (rows = true class, columns = predicted class).

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (N,)
        True and predicted class labels in ``[0, n_classes)``.
    n_classes : int
        Number of classes K.

    Returns
    -------
    numpy.ndarray of int64, shape (K, K)

    Raises
    ------
    ParamError
        If the lengths differ, a label is outside ``[0, n_classes)`` or
        ``n_classes`` is not a positive integer.

    Examples
    --------
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], n_classes=2)
    array([[1, 0],
           [1, 1]])
    """
    k = _check_n_classes(n_classes)
    t = _labels(y_true, "y_true", k)
    p = _labels(y_pred, "y_pred", k)
    _same_length(y_true=t, y_pred=p)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def accuracy(cm: ArrayLike) -> float:
    r"""Share of correct predictions.

    .. math:: \mathrm{Accuracy} = \frac{\sum_k cm_{kk}}{\sum_{i,j} cm_{ij}}

    Works for the K x K matrix and the 2 x 2 patient matrix alike.
    ``NaN`` for an empty matrix (no images).
    """
    m = _check_cm(cm)
    return _ratio(np.trace(m), m.sum())


def per_class_recall(cm: ArrayLike) -> np.ndarray:
    r"""Recall (sensitivity) of each class, one-vs-rest.

    .. math:: \mathrm{Recall}_k = \frac{TP_k}{TP_k + FN_k}
              = \frac{cm_{kk}}{\sum_j cm_{kj}}

    Returns
    -------
    numpy.ndarray of float64, shape (K,)
        ``NaN`` for a class with no true samples (row sum 0): its recall is
        undefined, not 0.
    """
    m = _check_cm(cm)
    rows = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(m) / np.where(rows > 0, rows, 1), np.nan)


def macro_recall(cm: ArrayLike) -> float:
    r"""Macro-average recall: every class weighs the same (seed 001).

    .. math:: \mathrm{MacroRecall} = \frac{1}{K'} \sum_{k} \mathrm{Recall}_k

    where the sum runs over the K' classes whose recall is defined (classes
    with no true samples are skipped, ``nanmean``). ``NaN`` if none is defined.
    """
    return _nanmean(per_class_recall(cm))


def per_class_specificity(cm: ArrayLike) -> np.ndarray:
    r"""Specificity of each class, one-vs-rest.

    .. math:: \mathrm{Specificity}_k = \frac{TN_k}{TN_k + FP_k}

    with :math:`FP_k = \sum_i cm_{ik} - cm_{kk}` (others predicted as k) and
    :math:`TN_k = N - \sum_j cm_{kj} - \sum_i cm_{ik} + cm_{kk}` (neither true
    nor predicted k). :math:`TN_k + FP_k` is the number of images *not* of
    class k.

    Returns
    -------
    numpy.ndarray of float64, shape (K,)
        ``NaN`` for a class when every image belongs to it (no negatives).
    """
    m = _check_cm(cm)
    total = m.sum()
    rows, cols, diag = m.sum(axis=1), m.sum(axis=0), np.diag(m)
    fp = cols - diag
    tn = total - rows - cols + diag
    neg = tn + fp
    return np.where(neg > 0, tn / np.where(neg > 0, neg, 1), np.nan)


def macro_specificity(cm: ArrayLike) -> float:
    r"""Macro-average specificity (seed 001).

    .. math:: \mathrm{MacroSpecificity} = \frac{1}{K'} \sum_k \mathrm{Specificity}_k

    over the K' classes whose specificity is defined (``nanmean``); ``NaN``
    if none is.
    """
    return _nanmean(per_class_specificity(cm))


def fooling_rate(y_true: ArrayLike, pred_clean: ArrayLike, pred_adv: ArrayLike) -> float:
    r"""Share of originally-correct images whose prediction the attack changed.

    .. math:: \mathrm{FR} = \frac{|\{i : \hat y_i = y_i,\ \hat y^{adv}_i \ne \hat y_i\}|}
                                 {|\{i : \hat y_i = y_i\}|}

    This is the usual "attack success rate" of robustness evaluations: only
    images the model got right can be fooled, so images it already got wrong
    are ignored even if the attack changes their prediction. (The UAP paper,
    Moosavi-Dezfooli et al. 2017, and ART's ``fooling_rate`` instead count
    changed predictions over *all* images.) Seed 001's tables appear to
    report ``1 - accuracy under attack`` as the fooling rate (e.g. 10.0 %
    accuracy next to 90.0 % fooling rate); that number also counts images
    that were wrong before the attack, so it exceeds ours whenever clean
    accuracy is below 100 %.

    Parameters
    ----------
    y_true, pred_clean, pred_adv : array-like of int, shape (N,)
        True labels, predictions on clean images, predictions on attacked
        images.

    Returns
    -------
    float
        In [0, 1]; ``NaN`` when no image was originally correct.
    """
    t = _labels(y_true, "y_true")
    c = _labels(pred_clean, "pred_clean")
    a = _labels(pred_adv, "pred_adv")
    _same_length(y_true=t, pred_clean=c, pred_adv=a)
    correct = c == t
    return _ratio(int(np.count_nonzero(a[correct] != c[correct])), int(np.count_nonzero(correct)))


# --------------------------------------------------------------------------- impact on health


def binary_confusion(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    positive: Sequence[int],
    *,
    n_classes: int | None = None,
) -> np.ndarray:
    """Patient view: collapse classes into sick (positive) and healthy.

    Layout (rows = truth, columns = prediction, negative first, like
    scikit-learn's binary confusion matrix)::

        [[TN, FP],      TN: healthy predicted healthy   FP: healthy predicted sick
         [FN, TP]]      FN: sick predicted healthy      TP: sick predicted sick

    A sick patient predicted as a *different* sick class (e.g. melanoma
    predicted as basal cell carcinoma) counts as **TP**: in this view only
    "sent for follow-up or not" matters. The multi-class matrix still shows
    the mix-up.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (N,)
        Class labels.
    positive : sequence of int
        Indices of the "sick" classes (e.g. mel, bcc, akiec). Must not be
        empty; duplicates are ignored.
    n_classes : int, optional
        If given, labels and ``positive`` are checked against ``[0, n_classes)``.

    Returns
    -------
    numpy.ndarray of int64, shape (2, 2)
    """
    k = None if n_classes is None else _check_n_classes(n_classes)
    pos = _labels(np.asarray(list(positive), dtype=np.int64), "positive", k)
    if pos.size == 0:
        raise ParamError("positive must name at least one (sick) class index.")
    t = _labels(y_true, "y_true", k)
    p = _labels(y_pred, "y_pred", k)
    _same_length(y_true=t, y_pred=p)
    t_sick = np.isin(t, pos).astype(np.int64)
    p_sick = np.isin(p, pos).astype(np.int64)
    return np.bincount(t_sick * 2 + p_sick, minlength=4).reshape(2, 2).astype(np.int64)


def patient_metrics(cm2: ArrayLike) -> dict[str, float]:
    r"""Impact-on-health metrics from a 2x2 ``[[TN, FP], [FN, TP]]`` matrix.

    =============  ===================================  ==========================
    key            formula                              meaning
    =============  ===================================  ==========================
    accuracy       (TP + TN) / N
    sensitivity    TP / (TP + FN)                       sick patients caught
    specificity    TN / (TN + FP)                       healthy patients cleared
    npv            TN / (TN + FN)                       trust in a "healthy" call
    ppv            TP / (TP + FP)                       trust in a "sick" call
    fnr            FN / (TP + FN) = 1 - sensitivity     sick patients missed
    =============  ===================================  ==========================

    Each value is ``NaN`` when its denominator is zero.

    Returns
    -------
    dict[str, float]
    """
    m = _check_cm(cm2, "cm2")
    if m.shape != (2, 2):
        raise ParamError(f"cm2 must be a 2x2 [[TN, FP], [FN, TP]] matrix; got shape {m.shape}.")
    (tn, fp), (fn, tp) = m
    return {
        "accuracy": _ratio(tp + tn, m.sum()),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "npv": _ratio(tn, tn + fn),
        "ppv": _ratio(tp, tp + fp),
        "fnr": _ratio(fn, tp + fn),
    }


# --------------------------------------------------------------------------- confidence


def mean_confidence(probs: ArrayLike) -> float:
    r"""Mean over images of the top class probability, :math:`\overline{\max_k p_{ik}}`.

    Parameters
    ----------
    probs : array-like, shape (N, K)
        Softmax outputs (rows sum to 1).

    Returns
    -------
    float
        ``NaN`` when N = 0.
    """
    p = _probs(probs)
    return float(p.max(axis=1).mean()) if p.shape[0] else math.nan


def true_class_confidence(probs: ArrayLike, y_true: ArrayLike) -> float:
    r"""Mean over images of the probability given to the true class, :math:`\overline{p_{i,y_i}}`.

    Unlike :func:`mean_confidence`, this falls when an attack makes the model
    confidently wrong. ``NaN`` when N = 0.
    """
    p = _probs(probs)
    t = _labels(y_true, "y_true", p.shape[1])
    _same_length(probs=p, y_true=t)
    return float(p[np.arange(len(t)), t].mean()) if len(t) else math.nan


# --------------------------------------------------------------------------- one evaluation cell


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


#: The keys of :func:`summarize`, in order (the metric columns of result tables).
SUMMARY_KEYS: tuple[str, ...] = (
    "n_images",
    "accuracy",
    "macro_recall",
    "macro_specificity",
    "recall_per_class",
    "specificity_per_class",
    "confusion",
    "fooling_rate",
    "mean_confidence",
    "true_class_confidence",
    "confusion_binary",
    "patient_accuracy",
    "sensitivity",
    "specificity",
    "npv",
    "ppv",
    "fnr",
)


def summarize(
    y_true: ArrayLike,
    probs: ArrayLike,
    *,
    n_classes: int,
    positive: Sequence[int] = (),
    pred_clean: ArrayLike | None = None,
) -> dict[str, Any]:
    """All classification metrics of one evaluation cell, as a flat JSON-able dict.

    Predictions are ``argmax(probs, axis=1)``. Every key is always present
    (a stable schema for the result tables); a value that is undefined or not
    requested is ``NaN`` (``None`` for ``confusion_binary``).

    Parameters
    ----------
    y_true : array-like of int, shape (N,)
        True labels in ``[0, n_classes)``.
    probs : array-like, shape (N, n_classes)
        Softmax outputs on the evaluated (e.g. attacked, defended) images.
    n_classes : int
        Number of classes K.
    positive : sequence of int, default=()
        "Sick" class indices for the patient view; empty means no patient
        view (its keys are ``NaN``/``None``).
    pred_clean : array-like of int, shape (N,), optional
        Predictions on the clean images, for the fooling rate.

    Returns
    -------
    dict
        ======================  ========================================================
        key                     value
        ======================  ========================================================
        n_images                int, N
        accuracy                :func:`accuracy` of the K x K matrix
        macro_recall            :func:`macro_recall`
        macro_specificity       :func:`macro_specificity`
        recall_per_class        list of K floats, :func:`per_class_recall`
        specificity_per_class   list of K floats, :func:`per_class_specificity`
        confusion               K x K list of lists of int (rows = true class)
        fooling_rate            :func:`fooling_rate`; NaN when ``pred_clean`` is None
        mean_confidence         :func:`mean_confidence`
        true_class_confidence   :func:`true_class_confidence`
        confusion_binary        [[TN, FP], [FN, TP]] (ints), None without ``positive``
        patient_accuracy        patient-view accuracy        } :func:`patient_metrics`;
        sensitivity             TP / (TP + FN)               } NaN without
        specificity             TN / (TN + FP)               } ``positive``
        npv                     TN / (TN + FN)               }
        ppv                     TP / (TP + FP)               }
        fnr                     FN / (TP + FN)               }
        ======================  ========================================================

        Floats are Python floats (``NaN`` where undefined, which
        :func:`json.dumps` writes as ``NaN``).
    """
    k = _check_n_classes(n_classes)
    p = _probs(probs)
    if p.shape[1] != k:
        raise ParamError(f"probs must have n_classes={k} columns; got {p.shape[1]}.")
    t = _labels(y_true, "y_true", k)
    _same_length(y_true=t, probs=p)
    y_pred = p.argmax(axis=1)
    cm = confusion_matrix(t, y_pred, k)

    if pred_clean is None:
        fr = math.nan
    else:
        clean = _labels(pred_clean, "pred_clean", k)
        _same_length(y_true=t, pred_clean=clean)
        fr = fooling_rate(t, clean, y_pred)

    out: dict[str, Any] = {
        "n_images": len(t),
        "accuracy": accuracy(cm),
        "macro_recall": macro_recall(cm),
        "macro_specificity": macro_specificity(cm),
        "recall_per_class": _floats(per_class_recall(cm)),
        "specificity_per_class": _floats(per_class_specificity(cm)),
        "confusion": cm.tolist(),
        "fooling_rate": fr,
        "mean_confidence": mean_confidence(p),
        "true_class_confidence": true_class_confidence(p, t),
    }
    if len(positive):
        cm2 = binary_confusion(t, y_pred, positive, n_classes=k)
        pm = patient_metrics(cm2)
        out["confusion_binary"] = cm2.tolist()
        out["patient_accuracy"] = pm.pop("accuracy")
        out.update(pm)
    else:
        out["confusion_binary"] = None
        out.update(
            dict.fromkeys(
                ("patient_accuracy", "sensitivity", "specificity", "npv", "ppv", "fnr"),
                math.nan,
            )
        )
    return {key: out[key] for key in SUMMARY_KEYS}
