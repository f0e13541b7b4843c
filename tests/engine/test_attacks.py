"""Property tests of the attacks, the budget enforcement and the compiled helper.

A tiny CNN is trained in a few seconds on a generated 3-class problem: the
class is the mean brightness band of a slightly noisy 32x32 image (dark / mid /
bright, with a per-image offset so that images sit at various distances from
the class boundaries). Clean accuracy is ~100 %, and an L-inf perturbation of
eps moves the mean brightness by at most eps, so accuracy must fall as eps
grows.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from engine.attacks import REGISTRY, enforce_budget, fgsm, pgd, run_attack, targeted_l2
from engine.errors import ModelError, ParamError
from engine.gradients import BUCKETS, Compiled, _bucket, compiled, logits_model, predict

SIZE = 32
CLASSES = 3
CENTRES = (104.0, 128.0, 152.0)  # class boundaries at 116 and 140


def make_data(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c, centre in enumerate(CENTRES):
        offset = rng.uniform(-8.0, 8.0, size=(n_per_class, 1, 1, 1))
        noise = rng.normal(0.0, 3.0, size=(n_per_class, SIZE, SIZE, 3))
        images.append(np.clip(np.rint(centre + offset + noise), 0, 255))
        labels.append(np.full(n_per_class, c))
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


def tiny_classifier(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Rescaling(1.0 / 32.0, offset=-4.0)(inputs)  # preprocessing inside
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    logits = keras.layers.Dense(CLASSES, name="logits")(h)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    return keras.Model(inputs, probs)


def trained_classifier() -> keras.Model:
    """The tiny classifier trained on the brightness bands (a few seconds)."""
    m = tiny_classifier()
    x, y = make_data(200, seed=1)
    m.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    m.fit(x.astype("float32"), y, epochs=15, batch_size=50, verbose=0, shuffle=True)
    return m


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return trained_classifier()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data(20, seed=2)


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict(model, images).argmax(axis=1) == labels))


def test_clean_accuracy_is_high(model, data):
    assert accuracy(model, *data) >= 0.95


# -- budget, range, dtype, shape, no mutation ------------------------------------------------
@pytest.mark.parametrize("attack_id", list(REGISTRY))
def test_eps_zero_returns_input_exactly(model, data, attack_id):
    x, y = data
    adv = run_attack(attack_id, model, x, y, {"eps": 0.0})
    assert adv.dtype == np.uint8
    np.testing.assert_array_equal(adv, x)


@pytest.mark.parametrize("attack_id", list(REGISTRY))
def test_budget_range_dtype_shape_and_no_mutation(model, data, attack_id):
    x, y = data
    x_before, y_before = x.copy(), y.copy()
    adv = run_attack(attack_id, model, x, y, {"eps": 6.0}, batch_size=25)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert adv.shape == x.shape and adv.dtype == np.uint8
    delta = np.abs(adv.astype(int) - x.astype(int))
    assert delta.max() <= 6
    assert delta.max() > 0  # it did something


@pytest.mark.parametrize("module", [fgsm, pgd, targeted_l2])
def test_attack_functions_keep_dtype_and_do_not_mutate(model, data, module):
    params_cls = next(i.params_cls for i in REGISTRY.values() if i.fn is module.attack)
    x, y = data
    xf = x[:7].astype(np.float32)
    xf_before = xf.copy()
    out_f = module.attack(model, xf, y[:7], params_cls(eps=4.0))
    np.testing.assert_array_equal(xf, xf_before)
    assert out_f.dtype == np.float32 and out_f.shape == xf.shape
    assert out_f.min() >= 0 and out_f.max() <= 255
    out_u = module.attack(model, x[:7], y[:7], params_cls(eps=4.0))
    assert out_u.dtype == np.uint8 and out_u.shape == (7, SIZE, SIZE, 3)


def test_float_input_is_rounded_and_budget_measured_from_rounded(model, data):
    x, y = data
    xf = x[:5].astype(np.float64) + 0.3
    np.testing.assert_array_equal(run_attack("fgsm", model, xf, y[:5], {"eps": 0}), x[:5])
    adv = run_attack("fgsm", model, xf, y[:5], {"eps": 3})
    assert np.abs(adv.astype(int) - x[:5].astype(int)).max() <= 3


# -- strength ----------------------------------------------------------------------------------
def test_accuracy_falls_as_eps_grows(model, data):
    x, y = data
    accs = [accuracy(model, run_attack("fgsm", model, x, y, {"eps": e}), y) for e in (0, 4, 8, 16)]
    assert accs[3] < accs[0] - 0.3, accs
    for small, large in itertools.pairwise(accs):
        assert large <= small + 0.05, accs


def test_pgd_at_least_as_strong_as_fgsm(model, data):
    x, y = data
    for eps in (8.0, 12.0):
        acc_fgsm = accuracy(model, run_attack("fgsm", model, x, y, {"eps": eps}), y)
        acc_pgd = accuracy(
            model, run_attack("pgd", model, x, y, {"eps": eps, "steps": 10, "step_size": 2.5}), y
        )
        assert acc_pgd <= acc_fgsm + 0.05, (eps, acc_fgsm, acc_pgd)


@pytest.mark.parametrize(
    ("attack_id", "params"),
    [
        ("fgsm", {"eps": 24.0, "target": 1}),
        ("pgd", {"eps": 24.0, "target": 1, "steps": 10, "step_size": 3.0}),
        ("targeted_l2", {"eps": 24.0, "target": 1, "steps": 20}),
    ],
)
def test_targeted_attacks_hit_the_target(model, data, attack_id, params):
    x, y = data
    others = y != params["target"]  # images that must be moved to another class
    adv = run_attack(attack_id, model, x[others], y[others], params)
    hit = float(np.mean(predict(model, adv).argmax(axis=1) == params["target"]))
    assert hit >= 0.8, hit  # chance is 1/3


def test_pgd_is_deterministic_for_a_seed(model, data):
    x, y = data
    p = {"eps": 8.0, "steps": 3, "random_start": True}
    a = run_attack("pgd", model, x, y, {**p, "seed": 0})
    b = run_attack("pgd", model, x, y, {**p, "seed": 0})
    c = run_attack("pgd", model, x, y, {**p, "seed": 1})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_progress_is_reported(model, data):
    x, y = data
    calls: list[tuple[int, int]] = []
    run_attack("fgsm", model, x, y, None, batch_size=25, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(25, 60), (50, 60), (60, 60)]


# -- enforce_budget ----------------------------------------------------------------------------
def test_enforce_budget_known_answer():
    clean = np.array([[0, 100, 250], [7, 128, 255]], dtype=np.uint8)
    adv = np.array([[-20.0, 100.4, 300.0], [np.nan, 119.0, 240.6]])
    out = enforce_budget(clean, adv, eps=8.0)
    np.testing.assert_array_equal(out, [[0, 100, 255], [7, 120, 247]])
    assert out.dtype == np.uint8


def test_enforce_budget_rounding_never_exceeds_eps():
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(4, 8, 8, 3)).astype(np.uint8)
    adv = clean + rng.uniform(-20, 20, size=clean.shape)
    for eps in (0.0, 0.4, 0.5, 2.5, 8.7):
        out = enforce_budget(clean, adv, eps)
        assert np.abs(out.astype(int) - clean.astype(int)).max() <= eps
    np.testing.assert_array_equal(enforce_budget(clean, adv, 0.0), clean)


# -- compiled helper ---------------------------------------------------------------------------
def test_logits_model_strips_softmax(model, data):
    x, _ = data
    lm = logits_model(model)
    assert logits_model(model) is lm  # cached per model object
    assert logits_model(lm) is lm  # a logits-only model passes through
    logits = np.asarray(lm(x[:8].astype("float32")))
    probs = np.asarray(model(x[:8].astype("float32")))
    diff = np.log(probs) - logits
    np.testing.assert_allclose(diff - diff.mean(axis=1, keepdims=True), 0.0, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(1), probs.argmax(1))
    assert compiled(model) is compiled(lm)


def test_logits_model_rejects_unnamed_softmax():
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.GlobalAveragePooling2D()(inputs)
    out = keras.layers.Dense(2, activation="softmax")(h)
    with pytest.raises(ModelError, match="attacks need logits"):
        logits_model(keras.Model(inputs, out))


def test_bucket_sizes():
    assert [_bucket(n) for n in (1, 2, 3, 5, 9, 33, 64)] == [1, 2, 4, 8, 16, 64, 64]
    assert BUCKETS[-1] == 64


def test_compiled_does_not_retrace_per_batch_size(data):
    x, y = data
    comp = Compiled(logits_model(tiny_classifier(seed=3)))  # fresh, untraced
    xs = np.concatenate([x, x])[:70]
    ys = np.concatenate([y, y])[:70]
    for n in (1, 5, 64, 70):
        logits = comp.logits(xs[:n])
        loss, grad = comp.loss_grad(xs[:n], ys[:n], targeted=False)
        assert logits.shape == (n, CLASSES) and loss.shape == (n,) and grad.shape == xs[:n].shape
    assert comp.tracing_count <= 2  # one trace per compiled function, whatever the batch
    probs = comp.probs(xs[:5])
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


def test_padding_does_not_change_results(model, data):
    x, y = data
    comp = compiled(model)
    _, g_all = comp.loss_grad(x[:5], y[:5], targeted=False)
    _, g_one = comp.loss_grad(x[2:3], y[2:3], targeted=False)
    np.testing.assert_allclose(g_all[2:3], g_one, rtol=1e-4, atol=1e-6)


# -- errors ------------------------------------------------------------------------------------
def test_param_errors(model, data):
    x, y = data
    with pytest.raises(ParamError, match=r"FGSM: 'eps' must be a number in \[0, 255\]; got 300\."):
        fgsm.FGSMParams(eps=300)
    with pytest.raises(ParamError, match=r"FGSM: 'eps' must be a number in \[0, 255\]; got 300\."):
        run_attack("fgsm", model, x, y, {"eps": 300})
    with pytest.raises(
        ParamError, match=r"PGD: 'steps' must be an integer in \[1, 1000\]; got 0\."
    ):
        pgd.PGDParams(steps=0)
    with pytest.raises(ParamError, match=r"'target' must be a class index in \[0, 2\].*got 5\."):
        run_attack("targeted_l2", model, x, y, {"target": 5})
    with pytest.raises(ParamError, match=r"Got 60 images but 59 labels"):
        run_attack("fgsm", model, x, y[:-1])
    with pytest.raises(ParamError, match=r"shaped \(N, H, W, 3\); got shape \(32, 32, 3\)"):
        run_attack("fgsm", model, x[0], y[:1])
    with pytest.raises(ParamError, match=r"labels must be class indices in \[0, 2\]"):
        run_attack("fgsm", model, x, y + 3)
    with pytest.raises(ParamError, match=r"float in \[0, 255\]"):
        run_attack("fgsm", model, x.astype(np.float32) * 2, y)
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) epsilon"):
        run_attack("fgsm", model, x, y, {"epsilon": 8})
    with pytest.raises(ParamError, match=r"Unknown attack 'cw'"):
        run_attack("cw", model, x, y)
    with pytest.raises(TypeError):
        fgsm.FGSMParams(8.0)  # keyword-only


def test_registry_entries_are_complete():
    for key, info in REGISTRY.items():
        assert info.id == key and info.distance == "Linf" and info.paper
        assert "white-box" in info.threat_model
        assert info.targeted in {"never", "optional", "always"}
        assert {p.name for p in info.params_cls.PARAMS} >= {"eps"}


def test_each_parameter_is_declared_once_on_its_field():
    from dataclasses import fields

    from engine.params import declaration, params_of

    for info in REGISTRY.values():
        cls = info.params_cls
        by_field = {f.name: f.default for f in fields(cls)}
        assert (
            by_field
            == {p.name: p.default for p in params_of(cls)}
            == {p.name: p.default for p in cls.PARAMS}
        )
        eps = declaration(cls, "eps")
        # the live lab's ε choices belong to the declaration and are valid budgets
        assert eps.default in eps.choices and eps.choices == tuple(sorted(eps.choices))
        assert all(eps.check(e, info.title) == e for e in eps.choices)
        assert eps.step == 0.5 and (eps.low, eps.high) == (0, 255)
    # the widgets a wide range gets are declared, not decided by the UI
    assert declaration(pgd.PGDParams, "steps").widget == "number"
    assert declaration(pgd.PGDParams, "seed").widget == "number"
    assert declaration(pgd.PGDParams, "target").widget == "class"
    assert declaration(targeted_l2.TargetedL2Params, "alpha").slider_high == 2000.0
    with pytest.raises(ParamError, match=r"^PGD: 'seed' must be an integer in \[0, 2147483647\]"):
        pgd.PGDParams(seed=2**31)
