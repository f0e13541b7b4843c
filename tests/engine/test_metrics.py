"""Known-answer tests for engine.metrics (hand-computed values, exact fractions)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from engine import metrics as M
from engine.errors import ParamError

# --------------------------------------------------------------------------- 3-class example
#
# Worked by hand. 10 images, confusion matrix (rows = true, columns = predicted):
#
#              pred 0  pred 1  pred 2   | row (true count)
#   true 0        3       1       0     |  4
#   true 1        1       2       0     |  3
#   true 2        0       1       2     |  3
#   col           4       4       2        N = 10
#
# accuracy = (3 + 2 + 2) / 10 = 7/10
# recall_k = cm_kk / row_k = 3/4, 2/3, 2/3         -> macro = (9/12 + 8/12 + 8/12) / 3 = 25/36
# FP_k = col_k - cm_kk = 1, 2, 0
# TN_k = N - row_k - col_k + cm_kk = 10-4-4+3 = 5, 10-3-4+2 = 5, 10-3-2+2 = 7
# specificity_k = TN/(TN+FP) = 5/6, 5/7, 7/7       -> macro = (35 + 30 + 42) / 42 / 3 = 107/126

PAIRS_3 = [(0, 0)] * 3 + [(0, 1)] + [(1, 0)] + [(1, 1)] * 2 + [(2, 1)] + [(2, 2)] * 2
CM_3 = [[3, 1, 0], [1, 2, 0], [0, 1, 2]]


def _labels_from_pairs(pairs, seed=0):
    order = np.random.default_rng(seed).permutation(len(pairs))  # order must not matter
    arr = np.array(pairs)[order]
    return arr[:, 0], arr[:, 1]


def test_confusion_matrix_hand_example():
    y_true, y_pred = _labels_from_pairs(PAIRS_3)
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM_3)


def test_model_metrics_hand_example():
    cm = np.array(CM_3)
    assert M.accuracy(cm) == pytest.approx(7 / 10)
    assert M.per_class_recall(cm) == pytest.approx([3 / 4, 2 / 3, 2 / 3])
    assert M.macro_recall(cm) == pytest.approx(25 / 36)
    assert M.per_class_specificity(cm) == pytest.approx([5 / 6, 5 / 7, 1.0])
    assert M.macro_specificity(cm) == pytest.approx(107 / 126)


def test_class_without_samples_is_nan_and_skipped():
    # class 2 never occurs as truth: cm = [[1,0,1],[0,2,0],[0,0,0]]
    # recall = 1/2, 2/2, undefined -> macro over defined classes = 3/4 (not 1.5/3)
    # specificity: TN = 4-2-1+1 = 2, 4-2-2+2 = 2, 4-0-1+0 = 3; FP = 0, 0, 1 -> 1, 1, 3/4
    cm = M.confusion_matrix([0, 0, 1, 1], [0, 2, 1, 1], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" / divide warnings
        recall = M.per_class_recall(cm)
        assert recall[:2] == pytest.approx([0.5, 1.0])
        assert math.isnan(recall[2])
        assert M.macro_recall(cm) == pytest.approx(3 / 4)
        assert M.per_class_specificity(cm) == pytest.approx([1.0, 1.0, 3 / 4])
        assert M.macro_specificity(cm) == pytest.approx(11 / 12)


def test_single_class_data_has_undefined_specificity_and_empty_data_is_nan():
    cm = M.confusion_matrix([0, 0, 0], [0, 1, 0], 2)
    spec = M.per_class_specificity(cm)
    assert math.isnan(spec[0])  # no negatives for class 0
    assert spec[1] == pytest.approx(2 / 3)  # negatives for class 1: TN = 2, FP = 1
    empty = M.confusion_matrix([], [], 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(M.accuracy(empty))
        assert math.isnan(M.macro_recall(empty))
        assert math.isnan(M.macro_specificity(empty))


# --------------------------------------------------------------------------- fooling rate


def test_fooling_rate_hand_example():
    y_true = [0, 1, 2, 0, 1, 2]
    clean = [0, 1, 2, 1, 1, 0]  # correct: images 0, 1, 2, 4 (3 and 5 already wrong)
    adv = [1, 1, 0, 2, 1, 0]  # changed among correct: 0 and 2; image 3 changes but was wrong
    assert M.fooling_rate(y_true, clean, adv) == pytest.approx(2 / 4)
    # seed 001's "1 - accuracy under attack" would give 4/6: a different number
    acc_adv = M.accuracy(M.confusion_matrix(y_true, adv, 3))
    assert 1 - acc_adv == pytest.approx(4 / 6)


def test_fooling_rate_nan_when_nothing_was_correct():
    assert math.isnan(M.fooling_rate([0, 1], [1, 0], [1, 1]))


# --------------------------------------------------------------------------- patient view


def test_patient_metrics_two_class_hand_example():
    # TN = 50, FP = 10, FN = 5, TP = 35 (class 1 = sick)
    pairs = [(0, 0)] * 50 + [(0, 1)] * 10 + [(1, 0)] * 5 + [(1, 1)] * 35
    y_true, y_pred = _labels_from_pairs(pairs)
    cm2 = M.binary_confusion(y_true, y_pred, [1], n_classes=2)
    np.testing.assert_array_equal(cm2, [[50, 10], [5, 35]])
    pm = M.patient_metrics(cm2)
    assert pm == pytest.approx(
        {
            "accuracy": 85 / 100,
            "sensitivity": 35 / 40,
            "specificity": 50 / 60,
            "npv": 50 / 55,
            "ppv": 35 / 45,
            "fnr": 5 / 40,
        }
    )
    assert pm["fnr"] == pytest.approx(1 - pm["sensitivity"])


HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # HAM10000 order
SICK = [HAM.index(c) for c in ("mel", "bcc", "akiec")]


def test_ham_like_collapse():
    m = {c: i for i, c in enumerate(HAM)}
    pairs = [
        (m["mel"], m["mel"]),  # TP
        (m["mel"], m["bcc"]),  # TP: sick predicted as another sick class
        (m["bcc"], m["bcc"]),  # TP
        (m["mel"], m["nv"]),  # FN
        (m["akiec"], m["bkl"]),  # FN
        (m["nv"], m["nv"]),  # TN
        (m["nv"], m["nv"]),  # TN
        (m["bkl"], m["df"]),  # TN: healthy predicted as another healthy class
        (m["df"], m["df"]),  # TN
        (m["nv"], m["mel"]),  # FP
        (m["vasc"], m["akiec"]),  # FP
    ]
    y_true, y_pred = _labels_from_pairs(pairs)
    cm2 = M.binary_confusion(y_true, y_pred, SICK, n_classes=7)
    np.testing.assert_array_equal(cm2, [[4, 2], [2, 3]])
    pm = M.patient_metrics(cm2)
    assert pm["accuracy"] == pytest.approx(7 / 11)
    assert pm["sensitivity"] == pytest.approx(3 / 5)
    assert pm["specificity"] == pytest.approx(4 / 6)
    assert pm["npv"] == pytest.approx(4 / 6)
    assert pm["ppv"] == pytest.approx(3 / 5)
    assert pm["fnr"] == pytest.approx(2 / 5)


def test_patient_metrics_nan_on_zero_denominator():
    pm = M.patient_metrics([[7, 0], [0, 0]])  # nobody sick, nobody predicted sick
    assert pm["accuracy"] == 1.0
    assert pm["specificity"] == 1.0
    assert pm["npv"] == 1.0
    for key in ("sensitivity", "ppv", "fnr"):
        assert math.isnan(pm[key]), key


# --------------------------------------------------------------------------- confidence


def test_confidences():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])
    assert M.mean_confidence(probs) == pytest.approx((0.7 + 0.6 + 0.5) / 3)
    assert M.true_class_confidence(probs, [0, 1, 2]) == pytest.approx((0.7 + 0.3 + 0.25) / 3)


# --------------------------------------------------------------------------- summarize


def _probs_for(y_pred, n_classes, top=0.7):
    p = np.full((len(y_pred), n_classes), (1 - top) / (n_classes - 1))
    p[np.arange(len(y_pred)), y_pred] = top
    return p


SUMMARY_KEYS = {
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
}


def test_summarize_consistent_with_individual_functions():
    y_true, y_pred = _labels_from_pairs(PAIRS_3)
    probs = _probs_for(y_pred, 3)
    pred_clean = y_true.copy()
    pred_clean[0] = (pred_clean[0] + 1) % 3
    s = M.summarize(y_true, probs, n_classes=3, positive=[2], pred_clean=pred_clean)
    assert set(s) == SUMMARY_KEYS
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert s["n_images"] == 10 and isinstance(s["n_images"], int)
    assert s["confusion"] == CM_3
    assert s["accuracy"] == pytest.approx(7 / 10)
    assert s["macro_recall"] == pytest.approx(25 / 36)
    assert s["macro_specificity"] == pytest.approx(107 / 126)
    assert s["recall_per_class"] == pytest.approx(list(M.per_class_recall(cm)))
    assert s["specificity_per_class"] == pytest.approx(list(M.per_class_specificity(cm)))
    assert s["fooling_rate"] == pytest.approx(M.fooling_rate(y_true, pred_clean, y_pred))
    assert s["mean_confidence"] == pytest.approx(0.7)
    assert s["true_class_confidence"] == pytest.approx((7 * 0.7 + 3 * 0.15) / 10)
    cm2 = M.binary_confusion(y_true, y_pred, [2])
    assert s["confusion_binary"] == cm2.tolist() == [[7, 0], [1, 2]]
    pm = M.patient_metrics(cm2)
    assert s["patient_accuracy"] == pytest.approx(pm["accuracy"])
    for key in ("sensitivity", "specificity", "npv", "ppv", "fnr"):
        assert s[key] == pytest.approx(pm[key]), key
    # flat, JSON-able, plain Python types
    json.dumps(s)
    assert all(
        type(s[k]) is float for k in SUMMARY_KEYS - {"n_images"} if not isinstance(s[k], list)
    )


def test_summarize_without_optional_parts():
    s = M.summarize([0, 1], _probs_for([0, 0], 2), n_classes=2)
    assert set(s) == SUMMARY_KEYS
    assert math.isnan(s["fooling_rate"])
    assert s["confusion_binary"] is None
    for key in ("patient_accuracy", "sensitivity", "specificity", "npv", "ppv", "fnr"):
        assert math.isnan(s[key]), key
    assert s["accuracy"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: M.confusion_matrix([0, 1, 2], [0, 1], 3),
            r"y_true and y_pred must have the same length; got 3 and 2",
        ),
        (
            lambda: M.confusion_matrix([0, 1], [0, 3], 3),
            r"y_pred has labels outside \[0, 3\): found 3",
        ),
        (
            lambda: M.confusion_matrix([-1, 1], [0, 1], 3),
            r"y_true has labels outside \[0, 3\): found -1",
        ),
        (lambda: M.confusion_matrix([0.5, 1], [0, 1], 3), r"y_true must hold integer class labels"),
        (lambda: M.confusion_matrix([[0, 1]], [0, 1], 3), r"y_true must be a 1-D array"),
        (lambda: M.confusion_matrix([0], [0], 0), r"n_classes must be a positive integer; got 0"),
        (lambda: M.accuracy([[1, 2, 3]]), r"cm must be a square 2-D confusion matrix"),
        (lambda: M.accuracy([[1, -2], [0, 1]]), r"cm must hold non-negative counts"),
        (lambda: M.patient_metrics(np.eye(3)), r"cm2 must be a 2x2"),
        (
            lambda: M.fooling_rate([0, 1], [0, 1], [0]),
            r"y_true, pred_clean and pred_adv must have the same length; got 2, 2 and 1",
        ),
        (lambda: M.binary_confusion([0], [0], []), r"positive must name at least one"),
        (
            lambda: M.binary_confusion([0], [0], [7], n_classes=7),
            r"positive has labels outside \[0, 7\)",
        ),
        (lambda: M.mean_confidence([0.2, 0.8]), r"probs must be a 2-D array"),
        (lambda: M.mean_confidence([[2.0, -1.0]]), r"not logits"),
        (
            lambda: M.true_class_confidence([[0.5, 0.5]], [0, 1]),
            r"probs and y_true must have the same length; got 1 and 2",
        ),
        (
            lambda: M.summarize([0], [[1.0, 0.0]], n_classes=3),
            r"probs must have n_classes=3 columns; got 2",
        ),
        (
            lambda: M.summarize([0, 1], [[1.0, 0.0]], n_classes=2),
            r"y_true and probs must have the same length",
        ),
        (
            lambda: M.summarize([0], [[1.0, 0.0]], n_classes=2, pred_clean=[2]),
            r"pred_clean has labels outside \[0, 2\)",
        ),
        (
            lambda: M.perturbation_norms(np.zeros((4, 4, 3)), np.zeros((4, 4))),
            r"clean and adv must have the same shape",
        ),
        (
            lambda: M.psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=0),
            r"data_range must be a positive number",
        ),
        (
            lambda: M.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3))),
            r"ssim needs images of at least 11x11",
        ),
        (lambda: M.ssim(np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 3))), r"use ssim_batch"),
        (lambda: M.ssim_batch(np.zeros((16, 16, 3)), np.zeros((16, 16, 3))), r"a must be a batch"),
    ],
)
def test_param_errors(call, message):
    with pytest.raises(ParamError, match=message):
        call()
