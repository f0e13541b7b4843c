"""Property tests of the Live lab (:func:`engine.lab.run_lab`) and the mini sweep.

An untrained tiny classifier (engine.models' ``"tiny"`` backbone at 32x32,
3 classes) is enough: every property checked here holds for any model.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import defences as dfn
from engine.errors import ImageError, ParamError
from engine.images import resize_image
from engine.lab import (
    IMAGES_PER_BATCH,
    LABEL_FROM_MODEL,
    LABEL_TRUE,
    THREAT_CLEAN,
    THREAT_TRANSFER,
    LabResult,
    LiveAttacker,
    Prediction,
    combine_mini_sweep,
    mirrors,
    plan_mini_sweep,
    run_lab,
    run_mini_sweep,
    run_sweep_batch,
)
from engine.threat import adaptive_label, is_adaptive
from tests.engine.test_adaptive import _two_features, two_features  # noqa: F401 (a fixture)

SIZE = 32
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def model():
    import keras

    from engine.models import build_classifier

    keras.utils.set_random_seed(0)
    return build_classifier("tiny", len(CLASSES), weights="none", input_size=SIZE)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 45x60 image in 40-215, so an eps of up to 40 never meets the [0, 255] clip."""
    return np.random.default_rng(0).integers(40, 216, (45, 60, 3), dtype=np.uint8)


def _check_prediction(p: Prediction) -> None:
    assert p.probs.dtype == np.float32 and p.probs.shape == (len(CLASSES),)
    assert abs(float(p.probs.sum()) - 1.0) < 1e-5
    assert p.label == int(np.argmax(p.probs))
    assert p.confidence == pytest.approx(float(p.probs.max()))
    assert p.top_k[0][0] == p.label
    probs = [v for _, v in p.top_k]
    assert probs == sorted(probs, reverse=True) and len(p.top_k) == len(CLASSES)


def test_result_shapes_dtypes_and_fields(model, image):
    res = run_lab(model, CLASSES, image, attack="fgsm", attack_params={"eps": 8})
    assert isinstance(res, LabResult)
    for arr in (res.original, res.adversarial, res.defended, res.perturbation_view):
        assert arr.dtype == np.uint8 and arr.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(res.original, resize_image(image, SIZE))
    assert res.original_size == (45, 60)
    for p in (res.pred_clean, res.pred_adv, res.pred_defended):
        _check_prediction(p)
    assert set(res.timings) == {"resize", "attack", "defence", "predict", "total"}
    assert all(v >= 0 for v in res.timings.values())
    assert res.timings["total"] >= res.timings["attack"]
    assert res.classes == CLASSES
    assert res.attack == "fgsm" and res.attack_params == {"eps": 8.0, "target": None}
    assert res.threat_model == THREAT_TRANSFER
    assert res.flipped == (res.pred_adv.label != res.pred_clean.label)
    assert res.restored == (res.flipped and res.pred_defended.label == res.pred_clean.label)


def test_eps_zero_changes_nothing(model, image):
    res = run_lab(model, CLASSES, image, attack="pgd", attack_params={"eps": 0})
    np.testing.assert_array_equal(res.adversarial, res.original)
    assert not res.flipped and not res.restored
    assert res.linf == 0 and res.l2 == 0 and res.l0_share == 0
    assert math.isinf(res.psnr_adv) and res.ssim_adv == pytest.approx(1.0)
    assert np.all(res.perturbation_view == 128)
    assert "changed no pixel" in res.perturbation_scale
    assert res.threat_model == THREAT_CLEAN


@pytest.mark.parametrize(
    ("attack", "params"),
    [
        ("fgsm", {"eps": 4}),
        ("pgd", {"eps": 4, "steps": 3}),
        ("targeted_l2", {"eps": 4, "target": 1}),
    ],
)
def test_budget_is_respected(model, image, attack, params):
    res = run_lab(model, CLASSES, image, attack=attack, attack_params=params)
    delta = res.adversarial.astype(int) - res.original.astype(int)
    assert np.abs(delta).max() <= 4
    assert res.linf == np.abs(delta).max()
    assert res.l2 == pytest.approx(float(np.sqrt((delta.astype(float) ** 2).sum())))


def test_perturbation_view_is_the_amplified_difference(model, image):
    res = run_lab(model, CLASSES, image, attack="fgsm", attack_params={"eps": 8})
    assert res.linf == 8  # every pixel moves by eps; none is clipped in 40-215
    assert res.perturbation_gain == 16
    assert "×16, so ±8 levels show as ±128" in res.perturbation_scale
    delta = res.adversarial.astype(float) - res.original.astype(float)
    np.testing.assert_array_equal(res.perturbation_view, np.clip(128 + 16 * delta, 0, 255))
    fixed = run_lab(model, CLASSES, image, attack="fgsm", attack_params={"eps": 8}, gain=2)
    assert fixed.perturbation_gain == 2 and fixed.perturbation_view.max() <= 128 + 16


def test_chain_defence_from_spec(model, image):
    chain = dfn.seed_chain()
    spec = dfn.to_spec(chain)
    res = run_lab(model, CLASSES, image, attack="fgsm", attack_params={"eps": 8}, defence=spec)
    np.testing.assert_array_equal(res.defended, chain(res.adversarial))
    assert res.defence_spec == spec
    assert res.defence == dfn.describe(chain)
    assert res.defence_title == "NLM → Bilateral → Guided"
    from engine.gradients import predict

    probs = predict(model, np.stack([res.original, res.adversarial, res.defended]))
    np.testing.assert_allclose(res.pred_clean.probs, probs[0], atol=1e-5)
    np.testing.assert_allclose(res.pred_adv.probs, probs[1], atol=1e-5)
    np.testing.assert_allclose(res.pred_defended.probs, probs[2], atol=1e-5)


def test_no_defence_reuses_the_adversarial_prediction(model, image):
    res = run_lab(model, CLASSES, image, attack="fgsm", attack_params={"eps": 8}, defence=None)
    np.testing.assert_array_equal(res.defended, res.adversarial)
    np.testing.assert_array_equal(res.pred_defended.probs, res.pred_adv.probs)
    assert res.defence == "None" and res.defence_spec == {"id": "none", "params": {}}
    assert not res.restored


def test_label_none_attacks_the_clean_prediction(model, image):
    res = run_lab(model, CLASSES, image, attack="fgsm", attack_params={"eps": 8})
    assert res.true_label is None and res.label_source == LABEL_FROM_MODEL
    assert res.attack_label == res.pred_clean.label
    given = run_lab(model, CLASSES, image, label=2, attack="fgsm", attack_params={"eps": 8})
    assert given.true_label == 2 and given.attack_label == 2 and given.label_source == LABEL_TRUE
    np.testing.assert_allclose(given.pred_clean.probs, res.pred_clean.probs, atol=1e-6)


def test_grey_input_is_made_rgb(model):
    grey = np.full((20, 30), 100, np.uint8)
    res = run_lab(model, CLASSES, grey, attack="fgsm", attack_params={"eps": 2})
    assert res.original.shape == (SIZE, SIZE, 3) and np.all(res.original == 100)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": np.zeros((8, 8, 3), np.float32)}, ImageError, "uint8 pixels in 0-255"),
        ({"image": np.zeros((2, 8, 8, 3), np.uint8)}, ImageError, r"one image shaped"),
        ({"image": [[1, 2]]}, ImageError, "numpy uint8 RGB array"),
        ({"attack": "nope"}, ParamError, r"Unknown attack 'nope'; known: fgsm"),
        ({"attack_params": {"eps": -1}}, ParamError, r"FGSM: 'eps' must be"),
        ({"attack_params": {"epsilon": 1}}, ParamError, r"unknown parameter\(s\) epsilon"),
        ({"attack_params": 8}, ParamError, "attack_params must be a dict"),
        ({"label": 3}, ParamError, r"label must be a class index in \[0, 2\]"),
        ({"label": True}, ParamError, r"label must be a class index"),
        ({"defence": "blur"}, ParamError, r"Unknown defence 'blur'"),
        ({"defence": {"id": "nlm", "params": {"h": 99}}}, ParamError, r"'h' must be"),
        ({"classes": ["a", "b"]}, ParamError, "classes must name the model's 3 outputs"),
        ({"gain": 0}, ParamError, r"gain must be a number in \[1, 255\]"),
        ({"adaptive": 1}, ParamError, r"Live lab attacker: 'adaptive' must be true or false"),
        (
            {"adaptive": True, "eot_samples": 0},
            ParamError,
            r"Live lab attacker: 'eot_samples' must be an integer in \[1, 32\]; got 0",
        ),
        (
            {"attack": "targeted_l2", "attack_params": {"target": 7}},
            ParamError,
            r"'target' must be a class index in \[0, 2\]",
        ),
    ],
)
def test_bad_inputs_raise_engine_errors(model, image, kwargs, error, match):
    args = {"classes": CLASSES, "image": image, **kwargs}
    with pytest.raises(error, match=match):
        run_lab(model, args.pop("classes"), args.pop("image"), **args)


# --------------------------------------------------------------------------- adaptive attacker


@pytest.mark.parametrize(
    ("attack", "params"),
    [("fgsm", {"eps": 8}), ("pgd", {"eps": 6, "steps": 3}), ("targeted_l2", {"target": 1})],
)
def test_adaptive_through_no_defence_is_the_transfer_attack_bit_for_bit(
    model, image, attack, params
):
    transfer = run_lab(model, CLASSES, image, attack=attack, attack_params=params)
    for defence in (None, "none", dfn.Chain((dfn.Identity(), dfn.Identity()))):
        res = run_lab(
            model,
            CLASSES,
            image,
            attack=attack,
            attack_params=params,
            defence=defence,
            adaptive=True,
        )
        np.testing.assert_array_equal(res.adversarial, transfer.adversarial)
        np.testing.assert_array_equal(res.defended, transfer.defended)
        np.testing.assert_array_equal(res.pred_defended.probs, transfer.pred_defended.probs)
        assert res.adaptive and not transfer.adaptive and res.eot_samples == 1
        assert res.threat_model == adaptive_label("exact") and is_adaptive(res.threat_model)
    assert transfer.threat_model == THREAT_TRANSFER
    zero = run_lab(model, CLASSES, image, attack_params={"eps": 0}, defence="jpeg", adaptive=True)
    assert zero.threat_model == THREAT_CLEAN


def test_adaptive_through_a_blur_flips_at_least_as_often_as_transfer(two_features):  # noqa: F811
    """The linear model of test_adaptive: a transfer attack leans on what a blur erases."""
    x, y = _two_features(24, seed=2, with_board=1.0)
    blur = {"id": "gaussian", "params": {"sigma": 2.0}}
    p = {"eps": 8.0, "steps": 10, "step_size": 2.0}
    lost = {}
    for adaptive in (False, True):
        results = [
            run_lab(
                two_features,
                ["dark", "bright"],
                im,
                label=int(t),
                attack="pgd",
                attack_params=p,
                defence=blur,
                adaptive=adaptive,
            )
            for im, t in zip(x, y, strict=True)
        ]
        # wrong after the defence, among the images the model got right unattacked
        lost[adaptive] = sum(
            r.pred_clean.label == r.true_label != r.pred_defended.label for r in results
        )
        label = results[0].threat_model
        assert label == (adaptive_label("exact") if adaptive else THREAT_TRANSFER)
    # measured: transfer 8, adaptive 21 of 24
    assert lost[True] >= lost[False] + 6, lost


def test_eot_draws_only_for_a_randomised_defence(model, image):
    pad = {"id": "resize_pad", "params": {"min_scale": 0.8}}
    p = {"eps": 4, "steps": 2}
    res = run_lab(model, CLASSES, image, attack="pgd", attack_params=p, defence=pad, adaptive=True)
    declared_eot = LiveAttacker().eot_samples
    assert res.eot_samples == declared_eot > 1
    assert res.threat_model == adaptive_label("exact", eot=declared_eot)
    two = run_lab(
        model,
        CLASSES,
        image,
        attack="pgd",
        attack_params=p,
        defence=pad,
        adaptive=True,
        eot_samples=2,
    )
    assert two.eot_samples == 2 and two.threat_model == adaptive_label("exact", eot=2)
    assert np.abs(two.adversarial.astype(int) - two.original.astype(int)).max() <= 4
    # the defender's draw is its own (seeded), whoever attacked
    np.testing.assert_array_equal(
        two.defended, dfn.make_defence("resize_pad", pad["params"])(two.adversarial)
    )
    plain = run_lab(model, CLASSES, image, attack="pgd", attack_params=p, defence=pad)
    assert plain.eot_samples == 1 and plain.threat_model == THREAT_TRANSFER
    jpeg = run_lab(model, CLASSES, image, attack_params={"eps": 4}, defence="jpeg", adaptive=True)
    assert jpeg.eot_samples == 1 and jpeg.threat_model == adaptive_label("bpda-identity")


def test_the_lab_attacker_is_declared_once():
    defaults = inspect.signature(run_lab).parameters
    assert defaults["adaptive"].default is LiveAttacker().adaptive is False
    assert defaults["eot_samples"].default is None  # None: the declared default
    assert {p.name for p in LiveAttacker.PARAMS} == {"adaptive", "eot_samples"}


# --------------------------------------------------------------------------- like with like


def test_mirrors_counts_the_flips_of_a_chain():
    web, plain = dfn.WebPFlip(), dfn.WebPFlip(flip=False)
    assert mirrors(web) and not mirrors(plain)
    assert not mirrors(dfn.Identity()) and not mirrors(dfn.seed_chain())
    assert mirrors(dfn.Chain((dfn.MedianBlur(), web)))
    assert mirrors(dfn.Chain((plain, dfn.MedianBlur(), web)))
    assert not mirrors(dfn.Chain((web, dfn.MedianBlur(), web)))  # two flips cancel
    assert mirrors(dfn.Chain((web, plain, web, web)))
    # only WebP + flip mirrors among the registered defences, at their defaults
    assert {i for i, cls in dfn.REGISTRY.items() if cls().mirrors} == {"webp_flip"}


@pytest.fixture(scope="module")
def ramp() -> np.ndarray:
    """Dark on the left, bright on the right: its mirror image is far from it."""
    row = np.linspace(40, 215, SIZE).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], SIZE, axis=0), 3, axis=2)


def test_a_mirroring_defence_is_measured_like_with_like(model, ramp):
    from engine import metrics
    from engine.gradients import predict

    def lab(defence):
        return run_lab(
            model, CLASSES, ramp, attack="fgsm", attack_params={"eps": 8}, defence=defence
        )

    flip = lab({"id": "webp_flip", "params": {"quality": 90}})
    same = lab({"id": "webp_flip", "params": {"quality": 90, "flip": False}})
    assert flip.mirrored and not same.mirrored
    np.testing.assert_array_equal(flip.adversarial, same.adversarial)
    # the model sees what the defence outputs: the mirrored image
    np.testing.assert_array_equal(flip.defended, dfn.WebPFlip(quality=90)(flip.adversarial))
    np.testing.assert_array_equal(flip.defended, same.defended[:, ::-1])
    np.testing.assert_allclose(
        flip.pred_defended.probs, predict(model, flip.defended[None])[0], atol=1e-5
    )
    # the comparisons see it flipped back: the codec's output, as WebP without the flip
    np.testing.assert_array_equal(flip.defended_aligned, same.defended)
    np.testing.assert_array_equal(same.defended_aligned, same.defended)
    assert (flip.psnr_defended, flip.ssim_defended) == (same.psnr_defended, same.ssim_defended)
    # measured as it is, the mirror alone would look like a large change
    assert metrics.psnr(flip.original, flip.defended) < flip.psnr_defended - 10
    assert metrics.ssim(flip.original, flip.defended) < flip.ssim_defended - 0.2


def test_a_chain_that_flips_twice_is_not_flipped_back(model, ramp):
    web = {"id": "webp_flip", "params": {"quality": 90}}
    res = run_lab(model, CLASSES, ramp, attack="fgsm", attack_params={"eps": 8}, defence=[web, web])
    assert not res.mirrored
    np.testing.assert_array_equal(res.defended_aligned, res.defended)
    assert res.defended[0, 0, 0] < res.defended[0, -1, 0]  # still dark on the left
    one = run_lab(
        model, CLASSES, ramp, attack="fgsm", attack_params={"eps": 8}, defence=[web, "median"]
    )
    assert one.mirrored and one.defended_aligned[0, 0, 0] < one.defended_aligned[0, -1, 0]


# --------------------------------------------------------------------------- mini sweep


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8), np.array([0, 1, 2, 0, 1, 2])


def test_mini_sweep_rows_and_progress(model, batch):
    x, y = batch
    calls = []
    eps_values = [0, 2, 6]
    defences = [None, "median", dfn.to_spec(dfn.seed_chain())]
    rows = run_mini_sweep(
        model,
        CLASSES,
        x,
        y,
        attack="fgsm",
        eps_values=eps_values,
        defences=defences,
        positive=[2],
        progress=lambda done, total, msg: calls.append((done, total, msg)),
    )
    assert len(rows) == len(eps_values) * len(defences)
    total = 1 + len(eps_values) * (1 + len(defences))
    assert [c[0] for c in calls] == list(range(1, total + 1))
    assert all(c[1] == total and isinstance(c[2], str) for c in calls)
    assert [r["eps"] for r in rows] == [e for e in eps_values for _ in defences]
    keys = {"eps", "defence_key", "defence_label", "n_images", "accuracy", "macro_recall"}
    for r in rows:
        assert keys <= set(r) and r["n_images"] == len(x)
        assert 0.0 <= r["accuracy"] <= 1.0
        assert not math.isnan(r["sensitivity"])  # class 2 is present and positive
    assert rows[0]["defence_key"] == "None" and rows[0]["threat_model"] == THREAT_CLEAN
    assert rows[0]["accuracy"] == rows[0]["clean_accuracy"]
    assert rows[0]["fooling_rate"] == 0.0 or math.isnan(rows[0]["fooling_rate"])
    assert rows[-1]["defence_label"] == "NLM → Bilateral → Guided"
    assert rows[-1]["threat_model"] == THREAT_TRANSFER
    assert rows[-1]["attack_params"] == {"eps": 6.0, "target": None}


def test_mini_sweep_matches_run_lab_for_one_image(model, batch):
    """Same attack on the same image gives the same prediction either way."""
    x, y = batch
    rows = run_mini_sweep(
        model, CLASSES, x[:1], y[:1], attack="fgsm", eps_values=[8], defences=["median"]
    )
    res = run_lab(
        model,
        CLASSES,
        x[0],
        label=int(y[0]),
        attack="fgsm",
        attack_params={"eps": 8},
        defence="median",
    )
    assert rows[0]["accuracy"] == float(res.pred_defended.label == y[0])
    assert math.isnan(rows[0]["sensitivity"])  # no positive classes given


def test_mini_sweep_resizes_a_list_of_images(model):
    images = [np.full((40, 50, 3), 90, np.uint8), np.full((20, 20), 160, np.uint8)]
    rows = run_mini_sweep(
        model,
        CLASSES,
        images,
        [0, 1],
        attack="pgd",
        eps_values=[2],
        defences=[None],
        attack_params={"steps": 2},
    )
    assert rows[0]["n_images"] == 2 and rows[0]["attack_params"]["steps"] == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps_values": []}, "eps_values must hold at least one budget"),
        ({"eps_values": [2, -1]}, r"FGSM: 'eps' must be"),
        ({"defences": []}, "defences must hold at least one defence"),
        ({"defences": ["nope"]}, r"Unknown defence 'nope'"),
        ({"labels": [0, 1]}, "labels must be one class index per image"),
        ({"attack": "nope"}, "Unknown attack"),
    ],
)
def test_mini_sweep_bad_inputs(model, batch, kwargs, match):
    x, y = batch
    args = {"labels": y, "attack": "fgsm", "eps_values": [2], "defences": [None], **kwargs}
    with pytest.raises(ParamError, match=match):
        run_mini_sweep(model, CLASSES, x, args.pop("labels"), **args)


# --------------------------------------------------------------------------- sweep batches


def test_plan_cuts_images_at_the_engine_batch_and_one_budget_per_batch():
    plan = plan_mini_sweep(150, [0, 2, 4], [None, "median"])
    assert [(b.start, b.stop) for b in plan] == [(0, 64)] * 3 + [(64, 128)] * 3 + [(128, 150)] * 3
    assert [b.eps_index for b in plan] == [(0,), (1,), (2,)] * 3
    assert [b.clean for b in plan] == [True, False, False] * 3
    total = 3 * (1 + 3 * (1 + 2))
    assert {b.total for b in plan} == {total} and {b.n_images for b in plan} == {150}
    units = [int(b.clean) + 3 for b in plan]
    assert [b.done_before for b in plan] == [sum(units[:i]) for i in range(len(plan))]
    assert len(plan_mini_sweep(5, [1], [None])) == 1
    assert all(b.defence_index == (0, 1) and not b.adaptive for b in plan)


def test_an_adaptive_plan_is_one_budget_and_one_defence_setting_per_batch():
    """Images crafted through one defence setting cannot serve another: one attack per batch."""
    plan = plan_mini_sweep(70, [0, 2], [None, "median", "jpeg"], adaptive=True)
    assert [(b.start, b.stop) for b in plan] == [(0, 64)] * 6 + [(64, 70)] * 6
    assert [(b.eps_index, b.defence_index) for b in plan] == 2 * [
        ((i,), (j,)) for i in range(2) for j in range(3)
    ]
    assert [b.clean for b in plan] == 2 * ([True] + [False] * 5)
    assert all(b.adaptive for b in plan)
    total = 2 * (1 + 2 * 3 * 2)  # per group: the clean pass, then an attack and an evaluation
    assert {b.total for b in plan} == {total} == {sum(b.units for b in plan)}
    units = [int(b.clean) + 2 for b in plan]
    assert [b.done_before for b in plan] == [sum(units[:i]) for i in range(len(plan))]
    with pytest.raises(ParamError, match="'adaptive' must be true or false"):
        plan_mini_sweep(5, [1], [None], adaptive="yes")
    with pytest.raises(ParamError, match="n_images must be a positive integer"):
        plan_mini_sweep(0, [1], [None])
    with pytest.raises(ParamError, match="eps_values must hold at least one budget"):
        plan_mini_sweep(5, [], [None])


def test_images_per_batch_is_where_the_engine_splits():
    import inspect

    from engine.attacks import run_attack
    from engine.gradients import MAX_BATCH, predict

    assert IMAGES_PER_BATCH == MAX_BATCH
    for fn in (run_attack, predict):
        assert inspect.signature(fn).parameters["batch_size"].default == IMAGES_PER_BATCH


def _unbatched(model, x, y, attack, eps_values, defences, attack_params, positive, adaptive):
    """The sweep's metrics computed in one pass over all images, the reference."""
    from engine import metrics
    from engine.attacks import run_attack
    from engine.gradients import predict

    clean = predict(model, x)
    out = []
    for e in eps_values:
        p = {**attack_params, "eps": e}
        shared = x if math.floor(e) == 0 else run_attack(attack, model, x, y, p)
        for d in defences:
            d = dfn.from_spec(d) if d is not None else dfn.Identity()
            adv = shared
            if adaptive and math.floor(e) > 0:  # crafted through this defence setting
                adv = run_attack(attack, model, x, y, p, defence=d)
            probs = predict(model, d(adv))
            pred = clean.argmax(axis=1)
            out.append(metrics.summarize(y, probs, n_classes=3, positive=positive, pred_clean=pred))
    return out


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize(
    ("attack", "attack_params"),
    [("fgsm", {}), ("pgd", {"steps": 2, "random_start": True, "seed": 3})],
)
def test_batched_sweep_equals_one_pass_over_every_image(model, attack, attack_params, adaptive):
    """70 images: two groups of images, one batch per budget (and defence when adaptive),
    the same numbers exactly."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (70, SIZE, SIZE, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 70)
    settings = {
        "attack": attack,
        "eps_values": [0, 3, 8],
        "defences": [None, "median"],
        "attack_params": attack_params,
        "adaptive": adaptive,
    }
    calls = []
    rows = run_mini_sweep(
        model, CLASSES, x, y, positive=[2], progress=lambda *a: calls.append(a), **settings
    )
    ref = _unbatched(model, x, y, positive=[2], **settings)
    assert len(rows) == len(ref) == 6
    for row, want in zip(rows, ref, strict=True):
        assert row["n_images"] == 70
        assert {k: row[k] for k in want} == want  # exactly equal, NaNs aside
    total = 2 * (1 + 3 * (2 * 2 if adaptive else 1 + 2))
    assert [c[0] for c in calls] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    assert "(images 65-70)" in calls[-1][2]
    want = {adaptive_label("exact"), adaptive_label("bpda-identity")} if adaptive else set()
    assert {r["threat_model"] for r in rows if r["eps"] > 0} == (want or {THREAT_TRANSFER})
    plan = plan_mini_sweep(70, settings["eps_values"], settings["defences"], adaptive=adaptive)
    assert len(plan) == 2 * 3 * (2 if adaptive else 1)
    parts = [
        run_sweep_batch(model, CLASSES, x[b.start : b.stop], y[b.start : b.stop], b, **settings)
        for b in reversed(plan)  # the order the parts come back in does not matter
    ]
    again = combine_mini_sweep(parts, y, positive=[2])
    for a, b in zip(again, rows, strict=True):
        assert a.keys() == b.keys()
        assert {k: v for k, v in a.items() if not k.endswith("_seconds")} == {
            k: v for k, v in b.items() if not k.endswith("_seconds")
        }


def test_combine_refuses_parts_that_do_not_cover_the_sweep(model, batch):
    x, y = batch
    settings = {"attack": "fgsm", "eps_values": [2, 4], "defences": [None]}
    plan = plan_mini_sweep(len(x), settings["eps_values"], settings["defences"])
    parts = [run_sweep_batch(model, CLASSES, x, y, b, **settings) for b in plan]
    assert len(combine_mini_sweep(parts, y)) == 2
    for bad in (parts[:1], parts[1:], [*parts, parts[1]]):
        with pytest.raises(ParamError, match="do not cover its 6 images"):
            combine_mini_sweep(bad, y)
    with pytest.raises(ParamError, match="needs the parts of every batch"):
        combine_mini_sweep([], y)
    with pytest.raises(ParamError, match="batch covers images 0-5"):
        run_sweep_batch(model, CLASSES, x[:3], y[:3], plan[0], **settings)
    with pytest.raises(ParamError, match="FGSM: 'eps' must be"):  # every budget is checked
        run_sweep_batch(model, CLASSES, x, y, plan[0], **{**settings, "eps_values": [2, -1]})


# --------------------------------------------------------------------------- adaptive mini sweep


def _comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "threat_model" and not k.endswith("_seconds")}


@pytest.mark.parametrize(
    ("attack", "attack_params"),
    [("fgsm", {}), ("pgd", {"steps": 2, "random_start": True, "seed": 3})],
)
def test_adaptive_sweep_through_no_defence_is_the_transfer_sweep_bit_for_bit(
    model, batch, attack, attack_params
):
    x, y = batch
    settings = {
        "attack": attack,
        "eps_values": [0, 4, 8],
        "defences": [None, "none", [{"id": "none"}, {"id": "none"}]],
        "attack_params": attack_params,
        "positive": [2],
    }
    transfer = run_mini_sweep(model, CLASSES, x, y, **settings)
    adaptive = run_mini_sweep(model, CLASSES, x, y, adaptive=True, **settings)
    assert len(adaptive) == len(transfer) == 9
    for a, t in zip(adaptive, transfer, strict=True):
        assert a.keys() == t.keys()
        assert _comparable(a) == _comparable(t)  # exactly equal, NaNs aside
        if a["eps"] == 0:
            assert a["threat_model"] == t["threat_model"] == THREAT_CLEAN
        else:
            assert t["threat_model"] == THREAT_TRANSFER
            assert a["threat_model"] == adaptive_label("exact") and is_adaptive(a["threat_model"])


def test_adaptive_sweep_through_a_blur_is_never_more_accurate_than_transfer(two_features):  # noqa: F811
    """The linear model of test_adaptive: a transfer attack leans on what a blur erases."""
    x, y = _two_features(24, seed=2, with_board=1.0)
    blur = {"id": "gaussian", "params": {"sigma": 2.0}}
    settings = {"attack": "fgsm", "eps_values": [0, 4, 8], "defences": [None, blur]}
    rows = {
        adaptive: run_mini_sweep(
            two_features, ["dark", "bright"], x, y, adaptive=adaptive, **settings
        )
        for adaptive in (False, True)
    }
    acc = {k: [r["accuracy"] for r in v] for k, v in rows.items()}
    # measured: transfer [1, .875, .583, .75, 0, .667], adaptive [1, .875, .583, .583, 0, .125]
    assert all(a <= t for a, t in zip(acc[True], acc[False], strict=True)), acc
    assert acc[True][5] <= acc[False][5] - 0.4, acc  # eps 8 through the blur
    assert acc[True][:3] == acc[False][:3] and acc[True][4] == acc[False][4]  # no blur, or eps 0
    labels = [r["threat_model"] for r in rows[True]]
    assert labels == [THREAT_CLEAN] * 2 + [adaptive_label("exact")] * 4


def test_adaptive_sweep_draws_eot_only_through_a_randomised_defence(model, batch):
    x, y = batch
    pad = {"id": "resize_pad", "params": {"min_scale": 0.8}}
    settings = {"attack": "pgd", "eps_values": [4], "attack_params": {"steps": 2}}
    rows = run_mini_sweep(model, CLASSES, x, y, defences=[pad, "jpeg"], adaptive=True, **settings)
    declared_eot = LiveAttacker().eot_samples
    assert [r["threat_model"] for r in rows] == [
        adaptive_label("exact", eot=declared_eot),
        adaptive_label("bpda-identity"),
    ]
    two = run_mini_sweep(
        model, CLASSES, x, y, defences=[pad], adaptive=True, eot_samples=2, **settings
    )
    assert two[0]["threat_model"] == adaptive_label("exact", eot=2)
    plain = run_mini_sweep(model, CLASSES, x, y, defences=[pad], eot_samples=2, **settings)
    assert plain[0]["threat_model"] == THREAT_TRANSFER  # EOT draws: the adaptive attacker's only


def test_the_sweep_attacker_is_the_lab_attacker():
    for fn in (run_mini_sweep, run_sweep_batch):
        defaults = inspect.signature(fn).parameters
        assert defaults["adaptive"].default is LiveAttacker().adaptive is False
        assert defaults["eot_samples"].default is None  # None: the declared default


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"adaptive": "yes"}, "Live lab attacker: 'adaptive' must be true or false"),
        ({"adaptive": True, "eot_samples": 99}, r"Live lab attacker: 'eot_samples' must be"),
        ({"adaptive": True, "defences": []}, "defences must hold at least one defence"),
    ],
)
def test_adaptive_sweep_bad_inputs(model, batch, kwargs, match):
    x, y = batch
    args = {"attack": "fgsm", "eps_values": [2], "defences": [None], **kwargs}
    with pytest.raises(ParamError, match=match):
        run_mini_sweep(model, CLASSES, x, y, **args)


def test_a_batch_runs_only_for_the_attacker_it_was_planned_for(model, batch):
    x, y = batch
    settings = {"attack": "fgsm", "eps_values": [2], "defences": [None, "median"]}
    transfer = plan_mini_sweep(len(x), [2], settings["defences"])
    adaptive = plan_mini_sweep(len(x), [2], settings["defences"], adaptive=True)
    with pytest.raises(ParamError, match="planned for an attacker who does not know the defence"):
        run_sweep_batch(model, CLASSES, x, y, transfer[0], adaptive=True, **settings)
    with pytest.raises(ParamError, match="planned for an attacker who knows the defence"):
        run_sweep_batch(model, CLASSES, x, y, adaptive[0], **settings)
    with pytest.raises(ParamError, match="not indices into defences"):
        run_sweep_batch(
            model, CLASSES, x, y, adaptive[1], adaptive=True, **{**settings, "defences": [None]}
        )
    parts = [run_sweep_batch(model, CLASSES, x, y, b, adaptive=True, **settings) for b in adaptive]
    assert len(combine_mini_sweep(parts, y)) == 2
    other = run_sweep_batch(model, CLASSES, x, y, transfer[0], **settings)
    for bad in (parts[:1], [*parts, parts[1]], [parts[0], other]):
        with pytest.raises(ParamError, match="do not cover its 6 images"):
            combine_mini_sweep(bad, y)


def test_threat_labels_are_the_projects():
    from engine import evaluation as recap

    assert THREAT_TRANSFER == recap.THREAT_TRANSFER
    assert THREAT_CLEAN == recap.THREAT_CLEAN


def test_importing_lab_and_worker_does_not_import_tensorflow():
    code = (
        "import sys, engine.lab, app.worker, app.worker.server; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)
