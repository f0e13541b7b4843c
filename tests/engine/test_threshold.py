"""The patient view's decision threshold: Youden's J on the validation split."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ParamError
from engine.threshold import choose_threshold, decide, patient_at, sick_probability


def test_sick_probability_sums_the_positive_classes():
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    np.testing.assert_allclose(sick_probability(probs, [1, 2]), [0.8, 0.4])
    np.testing.assert_allclose(sick_probability(probs, [2, 2]), [0.3, 0.3])
    with pytest.raises(ParamError, match=r"positive must name classes in \[0, 3\)"):
        sick_probability(probs, [3])
    with pytest.raises(ParamError, match="positive must name"):
        sick_probability(probs, [])
    with pytest.raises(ParamError, match=r"probs must be \(N, K\)"):
        sick_probability(np.ones(3), [0])


def test_youden_picks_the_threshold_that_separates_the_classes():
    # healthy images score up to 0.7, sick ones from 0.8: argmax (0.5) calls two healthy sick
    p = np.array([0.1, 0.3, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95])
    sick = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    t = choose_threshold(p, sick)
    assert 0.7 < t < 0.8 and t == pytest.approx(0.75)
    at = patient_at(p, sick, t)
    assert (at["sensitivity"], at["specificity"]) == (1.0, 1.0)
    argmax = patient_at(p, sick, 0.5)
    assert argmax["specificity"] == 0.5 and argmax["confusion_binary"] == [[2, 2], [0, 4]]


def test_ties_go_to_the_threshold_nearest_one_half():
    # perfectly separated with a wide gap: every threshold in (0.2, 0.9) is as good
    p = np.array([0.1, 0.2, 0.9, 0.95])
    sick = np.array([0, 0, 1, 1], bool)
    assert choose_threshold(p, sick) == 0.5


def test_the_threshold_never_sits_on_an_image_and_needs_both_classes():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    sick = rng.uniform(size=200) < p  # informative but noisy
    t = choose_threshold(p, sick)
    assert t not in set(p)
    # no other threshold does better on these images
    j = [patient_at(p, sick, c)["sensitivity"] + patient_at(p, sick, c)["specificity"] for c in p]
    best = patient_at(p, sick, t)
    assert best["sensitivity"] + best["specificity"] >= max(j) - 1e-12
    with pytest.raises(ParamError, match="both sick and healthy"):
        choose_threshold(p, np.ones(200, bool))
    with pytest.raises(ParamError, match="equal-length"):
        choose_threshold(p, sick[:10])
    with pytest.raises(ParamError, match=r"threshold must be in \[0, 1\]"):
        patient_at(p, sick, 1.5)


def test_decide_chooses_on_val_and_reports_test_at_both_rules():
    rng = np.random.default_rng(1)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        # a model biased towards "sick" (class 1): healthy images score 0.3-0.8
        p1 = np.where(y == 1, rng.uniform(0.6, 1.0, n), rng.uniform(0.3, 0.8, n))
        return np.stack([1 - p1, p1], axis=1), y

    d = decide(split(300), split(400), positive=[1])
    assert d.chosen_on == "val" and d.criterion == "youden"
    assert d.threshold > 0.5, "the bias is corrected on the validation split"
    assert d.test["n_images"] == 400 and d.val["n_images"] == 300
    assert d.test["specificity"] > d.test_argmax["specificity"]
    assert d.test_argmax["sensitivity"] >= d.test["sensitivity"]
