"""The patient view's decision threshold, chosen on the validation split.

A classifier's argmax calls an image sick when the sick classes' probability
beats the healthy ones'; on an imbalanced set trained from scratch that
threshold is rarely the one a clinician would want (the shipped chest X-ray
model calls 47 % of healthy children sick). The patient view (sick = any
``positive`` class, :func:`engine.metrics.binary_confusion`) can instead call
an image sick when ``P(sick) = sum of the positive classes' probabilities``
reaches a threshold ``t``, chosen on the **validation** split (never the test
split, whose numbers must stay an honest estimate) by Youden's J statistic
(W. J. Youden, "Index for rating diagnostic tests", Cancer 3(1), 1950):
``J(t) = sensitivity(t) + specificity(t) - 1``, the threshold of the ROC
curve farthest above chance. Ties go to the threshold nearest 0.5.

Run on a bundle (records the choice in its ``meta.json`` under ``decision``,
with the validation and test numbers at the threshold and at argmax)::

    python -m engine.threshold --model assets/models/chest_xray__mobilenet_v3_large

Only the patient view uses it: the per-class metrics, the sweeps and the
attacks keep the argmax prediction.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import metrics
from engine.errors import ParamError

__all__ = [
    "CRITERION",
    "Decision",
    "choose_threshold",
    "decide",
    "patient_at",
    "sick_probability",
]

#: How the threshold is chosen (the only criterion offered).
CRITERION = "youden"


def sick_probability(probs: np.ndarray, positive: Sequence[int]) -> np.ndarray:
    """``(N,)`` probability that each image shows a sick (positive) class.

    Raises
    ------
    ParamError
        ``probs`` not ``(N, K)``, or ``positive`` empty or outside ``[0, K)``.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ParamError(f"probs must be (N, K) with K >= 2; got shape {p.shape}.")
    pos = sorted({int(c) for c in positive})
    if not pos or pos[0] < 0 or pos[-1] >= p.shape[1]:
        raise ParamError(
            f"positive must name classes in [0, {p.shape[1]}); got {list(positive)!r}."
        )
    return p[:, pos].sum(axis=1)


def _pair(p_sick: np.ndarray, sick: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, s = np.asarray(p_sick, dtype=np.float64), np.asarray(sick, dtype=bool)
    if p.shape != s.shape or p.ndim != 1:
        raise ParamError(
            f"p_sick and sick must be equal-length 1-D arrays; got {p.shape} and {s.shape}."
        )
    return p, s


def _sick_truth(y_true: np.ndarray, positive: Sequence[int]) -> np.ndarray:
    return np.isin(np.asarray(y_true, dtype=np.int64), [int(c) for c in positive])


def patient_at(
    p_sick: np.ndarray, sick: np.ndarray, threshold: float
) -> dict[str, float | list[list[int]]]:
    """Patient-view numbers when an image is called sick at ``P(sick) >= threshold``.

    Returns :func:`engine.metrics.patient_metrics` plus ``confusion_binary``
    (``[[TN, FP], [FN, TP]]``) and ``n_images``.
    """
    p, s = _pair(p_sick, sick)
    if not 0.0 <= threshold <= 1.0:
        raise ParamError(f"threshold must be in [0, 1]; got {threshold!r}.")
    called = (p >= threshold).astype(np.int64)
    return _patient(metrics.confusion_matrix(s.astype(np.int64), called, 2))


def _patient(cm2: np.ndarray) -> dict[str, float | list[list[int]]]:
    """:func:`engine.metrics.patient_metrics` of a 2x2 matrix, with it and its image count."""
    return {
        **metrics.patient_metrics(cm2),
        "confusion_binary": np.asarray(cm2).astype(int).tolist(),
        "n_images": int(np.asarray(cm2).sum()),
    }


def choose_threshold(p_sick: np.ndarray, sick: np.ndarray) -> float:
    """The threshold on ``P(sick)`` that maximises Youden's J on these images.

    Candidates are the midpoints between consecutive distinct probabilities
    (and 0.5), so the chosen threshold does not sit on an image. Ties go to
    the candidate nearest 0.5 (argmax for two classes).

    Raises
    ------
    ParamError
        Fewer than one sick and one healthy image: J is undefined.
    """
    p, s = _pair(p_sick, sick)
    if s.all() or not s.any():
        raise ParamError("Choosing a threshold needs both sick and healthy images.")
    values = np.unique(p)
    candidates = np.unique(np.concatenate([(values[:-1] + values[1:]) / 2, [0.5]]))
    called = p[None, :] >= candidates[:, None]  # (T, N)
    sens = (called & s).sum(axis=1) / s.sum()
    spec = (~called & ~s).sum(axis=1) / (~s).sum()
    j = sens + spec - 1.0
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0.0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


@dataclass(frozen=True)
class Decision:
    """A bundle's patient-view decision rule (``meta.json``'s ``decision``).

    Attributes
    ----------
    threshold : float
        Call an image sick at ``P(sick) >= threshold``.
    criterion : str
        How it was chosen (:data:`CRITERION`).
    chosen_on : str
        The split it was chosen on (``"val"``).
    val, test : dict
        :func:`patient_at` on each split at ``threshold``.
    val_argmax, test_argmax : dict
        The same at the argmax decision, for comparison.
    """

    threshold: float
    criterion: str
    chosen_on: str
    val: dict[str, Any]
    test: dict[str, Any]
    val_argmax: dict[str, Any]
    test_argmax: dict[str, Any]


def decide(
    val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], positive: Sequence[int]
) -> Decision:
    """Choose the threshold on ``val`` (probabilities, labels) and report both splits."""
    out: dict[str, Any] = {}
    p_val, s_val = sick_probability(val[0], positive), _sick_truth(val[1], positive)
    t = choose_threshold(p_val, s_val)
    for name, (probs, y) in (("val", val), ("test", test)):
        p, s = sick_probability(probs, positive), _sick_truth(y, positive)
        out[name] = patient_at(p, s, t)
        k = np.asarray(probs).shape[1]
        cm2 = metrics.binary_confusion(y, np.asarray(probs).argmax(axis=1), positive, n_classes=k)
        out[f"{name}_argmax"] = _patient(cm2)
    return Decision(threshold=t, criterion=CRITERION, chosen_on="val", **out)


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.threshold --model BUNDLE``: choose and record the threshold."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model bundle folder")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)

    from engine import datasets as ds
    from engine.bundle import BUNDLE_META
    from engine.evaluation._io import split_seed
    from engine.fileio import atomic_write_text, json_default
    from engine.gradients import predict
    from engine.models import load_bundle

    bundle = Path(args.model)
    loaded = load_bundle(bundle)
    meta = loaded.meta
    if not meta.positive:
        raise SystemExit(f"{bundle}: the dataset has no sick classes; no patient view.")
    splits = ds.load_splits(meta.dataset_id, root=args.data_root, seed=split_seed(meta))
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ("val", "test"):
        x, y = ds.load_arrays(splits[name], meta.input_size)
        probs = predict(loaded.model, x, batch_size=args.batch_size)
        found[name] = (probs, np.asarray(y))
    positive = [meta.classes.index(c) for c in meta.positive]
    decision = decide(found["val"], found["test"], positive)
    path = bundle / BUNDLE_META
    record = json.loads(path.read_text())  # every key kept, the model untouched
    record["decision"] = asdict(decision)
    atomic_write_text(path, json.dumps(record, indent=2, default=json_default))
    d = decision
    print(
        f"threshold P(sick) >= {d.threshold:.3f} (Youden's J on {d.val['n_images']} validation "
        f"images)\n  test: sensitivity {d.test['sensitivity']:.1%}, specificity "
        f"{d.test['specificity']:.1%}, accuracy {d.test['accuracy']:.1%}"
        f"\n  test at argmax: sensitivity {d.test_argmax['sensitivity']:.1%}, specificity "
        f"{d.test_argmax['specificity']:.1%}, accuracy {d.test_argmax['accuracy']:.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
