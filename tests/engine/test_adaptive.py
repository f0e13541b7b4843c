"""Adaptive attacks: backward passes through defences, BPDA, EOT, restarts, the budget.

Three tiny models, each trained or set in a second:

* the brightness-band CNN of ``test_attacks`` (bit-for-bit and budget checks);
* a linear classifier trained on images whose class shows both in their
  brightness (robust, survives a blur) and in a faint checkerboard (a
  non-robust feature, Ilyas et al. 2019, that a blur erases). An attack on
  the undefended model leans on the checkerboard, which a Gaussian blur
  removes; an attack through the blur must move the brightness instead;
* a linear classifier with set weights: brightness of the centre (robust to
  random resize-and-pad) plus a strong random pattern over the same pixels
  (brittle: a random resize moves it). An attacker who differentiates
  through one fixed draw of the defence exploits the pattern and fails on
  the defender's draws; EOT averages the pattern away and moves the
  brightness.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine.attacks import REGISTRY, enforce_budget, pgd, run_attack
from engine.attacks.adaptive import (
    STAND_INS,
    AdaptiveParams,
    StandIn,
    Through,
    backward_label,
    restart_seed,
    threat_label,
)
from engine.attacks.source import GradientSource
from engine.defences import (
    BACKWARD_BPDA,
    BACKWARD_EXACT,
    JPEG,
    SEED_CHAIN,
    Chain,
    GaussianBlur,
    Identity,
    MedianBlur,
    RandomResizePad,
    ResizePadDraw,
    WebPFlip,
    make_defence,
)
from engine.defences.linear import apply_separable, gaussian_matrix, resize_pad_matrix
from engine.errors import ParamError
from engine.gradients import compiled, predict
from engine.threat import ADAPTIVE, AdaptiveAttacker, parse, parse_adaptive
from tests.engine.test_attacks import make_data, trained_classifier


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict(model, images).argmax(axis=1) == labels))


def inner(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a.astype(np.float64) * b.astype(np.float64)))


@pytest.fixture(scope="module")
def bands() -> keras.Model:
    return trained_classifier()


@pytest.fixture(scope="module")
def band_data() -> tuple[np.ndarray, np.ndarray]:
    return make_data(10, seed=2)


# --------------------------------------------------------------------------- backward passes


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 5.0])
def test_gaussian_backward_is_the_adjoint_of_the_blur(sigma):
    import cv2

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 20, 24, 3)).astype(np.float32)  # not square: rows != columns
    y = rng.normal(size=x.shape).astype(np.float32)
    d = GaussianBlur(sigma=sigma)
    k = d.kernel
    blur = np.stack([cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma) for img in x])
    # the matrices are OpenCV's blur, border included ...
    mh, mw = gaussian_matrix(20, sigma, k), gaussian_matrix(24, sigma, k)
    np.testing.assert_allclose(apply_separable(x, mh, mw), blur, atol=2e-3)
    # ... the deployed uint8 blur is within one grey level of it ...
    x8 = np.rint(x).astype(np.uint8)
    exact8 = np.stack([cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma) for img in x8])
    assert np.abs(d(x8).astype(int) - exact8.astype(int)).max() == 0
    # ... and the backward pass is its adjoint: <A x, y> = <x, A^T y>
    back = d.estimate_gradient(x, y)
    assert back.shape == y.shape and back.dtype == np.float32
    assert inner(blur, y) == pytest.approx(inner(x, back), rel=1e-5)


def test_gaussian_backward_matches_finite_differences():
    import cv2

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (1, 12, 12, 3)).astype(np.float64)
    w = rng.normal(size=x.shape)
    d = GaussianBlur(sigma=1.5)
    k = d.kernel

    def loss(z: np.ndarray) -> float:  # L(x) = <w, blur(x)>, float64 all the way
        return inner(w, cv2.GaussianBlur(z[0], (k, k), sigmaX=1.5, sigmaY=1.5)[None])

    grad = d.estimate_gradient(x, w)
    for idx in [(0, 0, 0, 0), (0, 5, 7, 1), (0, 11, 3, 2), (0, 0, 11, 0)]:  # corners: the border
        e = np.zeros_like(x)
        e[idx] = 1.0
        fd = (loss(x + e) - loss(x - e)) / 2.0
        assert grad[idx] == pytest.approx(fd, rel=1e-4, abs=1e-5)


def test_flip_and_resize_pad_backward_are_adjoints():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, (3, 16, 18, 3)).astype(np.float32)
    y = rng.normal(size=x.shape).astype(np.float32)
    flip = WebPFlip()
    assert inner(np.flip(x, axis=2), y) == pytest.approx(inner(x, flip.estimate_gradient(x, y)))
    draw = ResizePadDraw(min_scale=0.7, seed=5)
    maps = draw.maps(3, 16, 18)
    fwd = np.stack([apply_separable(x[i], mh, mw) for i, (mh, mw) in enumerate(maps)])
    x8 = np.rint(x).astype(np.uint8)
    fwd8 = np.stack([apply_separable(x8[i], mh, mw) for i, (mh, mw) in enumerate(maps)])
    np.testing.assert_array_equal(draw(x8), np.clip(np.rint(fwd8), 0, 255).astype(np.uint8))
    assert inner(fwd, y) == pytest.approx(inner(x, draw.estimate_gradient(x, y)), rel=1e-5)


def test_resize_pad_matrix_known_answer():
    m = resize_pad_matrix(4, 2, 1)  # 4 -> 2 pixels, one row of padding above
    np.testing.assert_allclose(m, [[0, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 0]])
    np.testing.assert_array_equal(resize_pad_matrix(5, 5, 0), np.eye(5))
    with pytest.raises(ValueError, match="offset <= n - size"):
        resize_pad_matrix(4, 3, 2)


def test_chain_backward_composes_in_reverse_order():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    a, b, c = GaussianBlur(sigma=1.0), WebPFlip(), ResizePadDraw(min_scale=0.8, seed=1)
    chain = Chain((a, b, c))
    expected = a.estimate_gradient(x, b.estimate_gradient(x, c.estimate_gradient(x, g)))
    np.testing.assert_array_equal(chain.estimate_gradient(x, g), expected)
    # a chain of exact linear maps is the adjoint of their composition
    linear = Chain((a, ResizePadDraw(min_scale=0.8, seed=1)))
    mh, mw = gaussian_matrix(16, 1.0, a.kernel), gaussian_matrix(16, 1.0, a.kernel)
    ((rh, rw),) = linear.defences[1].maps(1, 16, 16)
    fwd = apply_separable(apply_separable(x[0], mh, mw), rh, rw)
    assert inner(fwd, g[0]) == pytest.approx(
        inner(x[0], linear.estimate_gradient(x[:1], g[:1])[0]), rel=1e-5
    )
    assert linear.backward == BACKWARD_EXACT and chain.backward == BACKWARD_BPDA
    assert SEED_CHAIN.backward == BACKWARD_BPDA and not SEED_CHAIN.randomised


def test_backward_labels_and_forward_passes():
    assert Identity.backward == GaussianBlur.backward == RandomResizePad.backward == BACKWARD_EXACT
    for d in (MedianBlur(), JPEG(), WebPFlip(), make_defence("nlm")):
        assert d.backward == BACKWARD_BPDA and not d.differentiable
    x = np.random.default_rng(4).uniform(0, 255, (2, 12, 12, 3)).astype(np.float32)
    assert Identity().forward(x) is x  # no rounding through the identity
    x8 = np.rint(x).astype(np.uint8)
    np.testing.assert_array_equal(MedianBlur().forward(x), MedianBlur()(x8).astype(np.float32))
    chain = Chain((Identity(), MedianBlur(), GaussianBlur()))
    np.testing.assert_array_equal(chain.forward(x), chain(x8).astype(np.float32))
    assert threat_label(JPEG(), 8) == "adaptive: crafted through the defence (bpda-identity)"
    assert (
        threat_label(RandomResizePad(), 8) == "adaptive: crafted through the defence (exact, EOT 8)"
    )


# --------------------------------------------------------------------------- the randomised defence


def test_random_resize_pad_is_reproducible_and_differs_across_seeds():
    x = np.random.default_rng(5).integers(1, 256, (6, 24, 24, 3), dtype=np.uint8)
    d = RandomResizePad(min_scale=0.8, seed=3)
    out = d(x)
    np.testing.assert_array_equal(out, d(x))
    np.testing.assert_array_equal(out, RandomResizePad(min_scale=0.8, seed=3)(x))
    assert not np.array_equal(out, RandomResizePad(min_scale=0.8, seed=4)(x))
    # each image of a batch gets its own draw; the first draw is the single image's
    pads = [(img == 0).all(axis=-1).sum() for img in out]
    assert len(set(pads)) > 1
    np.testing.assert_array_equal(d(x[2]), d(x[2:3])[0])
    # the padding is zero, the rest a resized image; min_scale=1 is the identity
    assert (out == 0).any() and out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(RandomResizePad(min_scale=1.0)(x), x)
    # the draws the defender uses are those its sample with the same seed applies
    np.testing.assert_array_equal(ResizePadDraw(min_scale=0.8, seed=3)(x), out)
    # an attacker's draws are deterministic for its generator, and not randomised
    a = d.sample(np.random.default_rng(0))
    b = d.sample(np.random.default_rng(0))
    assert a == b and not a.randomised and d.randomised
    assert a != d.sample(np.random.default_rng(1))
    chain = Chain((d, MedianBlur()))
    assert chain.randomised and not chain.sample(np.random.default_rng(0)).randomised
    np.testing.assert_array_equal(chain(x), MedianBlur()(d(x)))


def test_random_resize_pad_is_registered_with_declared_parameters():
    d = make_defence("resize_pad", {"min_scale": 0.85, "seed": 7})
    assert d == RandomResizePad(min_scale=0.85, seed=7)
    with pytest.raises(
        ParamError, match=r"Random resize and pad: 'min_scale' must be a number in \[0.5, 1\]"
    ):
        RandomResizePad(min_scale=0.3)


# --------------------------------------------------------------------------- BPDA and the budget


@pytest.mark.parametrize("attack_id", list(REGISTRY))
def test_bpda_through_the_identity_is_the_plain_attack_bit_for_bit(bands, band_data, attack_id):
    x, y = band_data
    params = {"eps": 6.0, "target": 1} if attack_id == "targeted_l2" else {"eps": 6.0}
    plain = run_attack(attack_id, bands, x, y, params)
    for d in (Identity(), Chain((Identity(), Identity()))):
        np.testing.assert_array_equal(run_attack(attack_id, bands, x, y, params, defence=d), plain)


def test_through_identity_gradients_equal_the_models(bands, band_data):
    x, y = band_data
    comp = compiled(bands)
    xf = x.astype(np.float32) + 0.25
    for got, want in zip(
        Through(comp, Identity()).value_and_grad(xf, y), comp.value_and_grad(xf, y), strict=True
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "defence",
    [
        GaussianBlur(sigma=2.0),
        MedianBlur(kernel=5),
        JPEG(quality=50),
        RandomResizePad(),
        Chain((RandomResizePad(min_scale=0.8), WebPFlip())),
    ],
    ids=lambda d: d.ID,
)
@pytest.mark.parametrize("attack_id", ["fgsm", "pgd"])
def test_every_adaptive_output_respects_the_budget(bands, band_data, defence, attack_id):
    x, y = band_data
    before = x.copy()
    params = {"eps": 5.0, "steps": 3} if attack_id == "pgd" else {"eps": 5.0}
    restarts = 2 if attack_id == "pgd" else 1
    adv = run_attack(
        attack_id, bands, x, y, params, defence=defence, eot_samples=2, restarts=restarts
    )
    np.testing.assert_array_equal(x, before)
    assert adv.dtype == np.uint8 and adv.shape == x.shape
    delta = np.abs(adv.astype(int) - x.astype(int))
    assert 0 < delta.max() <= 5
    np.testing.assert_array_equal(
        run_attack(attack_id, bands, x, y, {"eps": 0.0}, defence=defence), x
    )


def test_restarts_keep_the_worst_case_and_are_seeded(bands, band_data):
    x, y = band_data
    p = {"eps": 4.0, "steps": 3, "step_size": 1.5}
    one = run_attack("pgd", bands, x, y, p)
    three = run_attack("pgd", bands, x, y, p, restarts=3)
    np.testing.assert_array_equal(three, run_attack("pgd", bands, x, y, p, restarts=3))
    assert accuracy(bands, three, y) <= accuracy(bands, one, y)
    # per image, the kept restart is at least as bad for the defender as the first
    comp = compiled(bands)
    _, loss_one, _ = comp.value_and_grad(one.astype(np.float32), y)
    _, loss_three, _ = comp.value_and_grad(three.astype(np.float32), y)
    wrong_one = predict(bands, one).argmax(1) != y
    wrong_three = predict(bands, three).argmax(1) != y
    assert np.all(wrong_three | ~wrong_one)
    assert np.all((loss_three >= loss_one - 1e-5) | (wrong_three & ~wrong_one))
    assert restart_seed(7, 0) == 7 and restart_seed(7, 1) != restart_seed(7, 2)


class Counting(GradientSource):
    """A gradient source that counts the images it is asked about."""

    def __init__(self, comp: GradientSource) -> None:
        self.comp, self.images = comp, 0
        self.input_shape, self.num_classes = comp.input_shape, comp.num_classes

    def logits(self, x):
        return self.comp.logits(x)

    def value_and_grad(self, x, labels):
        self.images += len(x)
        return self.comp.value_and_grad(x, labels)


def test_early_stop_keeps_each_images_worst_iterate_and_stops_it(bands, band_data):
    x, y = band_data
    p = {"eps": 8.0, "steps": 6, "step_size": 2.5}
    last = run_attack("pgd", bands, x, y, p)
    early = run_attack("pgd", bands, x, y, {**p, "early_stop": True})
    assert np.abs(early.astype(int) - x.astype(int)).max() <= 8
    wrong_last = predict(bands, last).argmax(1) != y
    wrong_early = predict(bands, early).argmax(1) != y
    assert wrong_early.sum() >= wrong_last.sum() > 0
    # more steps along the same trajectory (same step size) never give an image back
    longer = run_attack("pgd", bands, x, y, {**p, "steps": 12, "early_stop": True})
    assert np.all((predict(bands, longer).argmax(1) != y) | ~wrong_early)
    # the steps go to the images still classified correctly
    src = Counting(compiled(bands))
    pgd.attack(src, x, y, pgd.PGDParams(**p, early_stop=True))
    assert src.images < (p["steps"] + 1) * len(x)
    full = Counting(compiled(bands))
    pgd.attack(full, x, y, pgd.PGDParams(**p))
    assert full.images == p["steps"] * len(x)
    # through the identity it is the plain early-stopping attack, bit for bit
    np.testing.assert_array_equal(
        run_attack("pgd", bands, x, y, {**p, "early_stop": True}, defence=Identity()), early
    )


def test_step_decay_halves_the_step_once_per_phase(bands, band_data):
    p = pgd.PGDParams(eps=8.0, steps=8, step_size=4.0, step_decay=3)
    assert [pgd.step_at(p, t) for t in range(8)] == [4, 4, 2, 2, 1, 1, 0.5, 0.5]
    flat = pgd.PGDParams(eps=8.0, steps=8, step_size=4.0)
    assert {pgd.step_at(flat, t) for t in range(8)} == {4.0}
    x, y = band_data
    q = {"eps": 8.0, "steps": 8, "step_size": 4.0}
    decayed = run_attack("pgd", bands, x, y, {**q, "step_decay": 3})
    assert np.abs(decayed.astype(int) - x.astype(int)).max() <= 8
    assert not np.array_equal(decayed, run_attack("pgd", bands, x, y, q))
    with pytest.raises(ParamError, match=r"'step_decay' must be an integer in \[0, 8\]"):
        pgd.PGDParams(step_decay=9)


def test_no_early_stop_through_a_randomised_defence(bands, band_data):
    """There 'fooled' is the attacker's own draws' average: stopping on it would leave
    the image on the boundary for the defender's draws, so EOT runs every step."""
    x, y = band_data
    p = {"eps": 8.0, "steps": 4, "step_size": 2.5}
    kw = {"defence": RandomResizePad(), "eot_samples": 2}
    assert not Through(compiled(bands), RandomResizePad()).deterministic
    assert Through(compiled(bands), MedianBlur()).deterministic
    np.testing.assert_array_equal(
        run_attack("pgd", bands, x, y, {**p, "early_stop": True}, **kw),
        run_attack("pgd", bands, x, y, p, **kw),
    )


def test_targeted_early_stop_stops_at_the_target(bands, band_data):
    x, y = band_data
    p = {"eps": 8.0, "steps": 5, "step_size": 2.5, "target": 2}
    last = run_attack("pgd", bands, x, y, p)
    early = run_attack("pgd", bands, x, y, {**p, "early_stop": True})
    hit_last = predict(bands, last).argmax(1) == 2
    hit_early = predict(bands, early).argmax(1) == 2
    assert hit_early.sum() >= hit_last.sum() > 0


def test_adaptive_parameter_errors(bands, band_data):
    x, y = band_data
    with pytest.raises(
        ParamError, match=r"Adaptive attack: 'eot_samples' must be an integer in \[1, 1000\]; got 0"
    ):
        run_attack("pgd", bands, x, y, None, defence=RandomResizePad(), eot_samples=0)
    with pytest.raises(ParamError, match=r"'restarts' > 1 needs an attack with a random start"):
        run_attack("fgsm", bands, x, y, None, restarts=2)
    with pytest.raises(ParamError, match=r"'restarts' > 1 needs an attack with a random start"):
        run_attack("pgd", bands, x, y, {"random_start": False}, restarts=2)
    with pytest.raises(
        ParamError, match=r"defence must be a defence \(e.g. JPEG\(\)\); got 'jpeg'"
    ):
        run_attack("fgsm", bands, x, y, None, defence="jpeg")  # type: ignore[arg-type]
    assert {p.name for p in AdaptiveParams.PARAMS} == {"eot_samples", "restarts", "eot_seed"}


# --------------------------------------------------------------------------- BPDA stand-ins

GAUSS = StandIn(stand_in="gaussian")


class _StraightThrough(GradientSource):
    """BPDA written out by hand: the model at ``D(x)``, its gradient passed back unchanged."""

    def __init__(self, comp: GradientSource, defence) -> None:
        self.comp, self.defence = comp, defence
        self.input_shape, self.num_classes = comp.input_shape, comp.num_classes

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.comp.logits(self.defence.forward(x))

    def value_and_grad(self, x, labels):
        return self.comp.value_and_grad(self.defence.forward(np.asarray(x, np.float32)), labels)


def test_default_stand_in_is_the_identity_bit_for_bit(bands, band_data):
    x, y = band_data
    params = {"eps": 6.0, "steps": 5}
    median = MedianBlur()
    # what PGD through the median did before stand-ins existed: the identity on the way back
    by_hand = _StraightThrough(compiled(bands), median)
    p = pgd.PGDParams(**params)
    before = enforce_budget(x, pgd.attack(by_hand, x.astype(np.float32), y, p), p.eps)
    default = run_attack("pgd", bands, x, y, params, defence=median)
    np.testing.assert_array_equal(default, before)
    # naming the identity changes nothing, whatever sigma says (unused)
    for sigma in (1.0, 3.0):
        np.testing.assert_array_equal(
            run_attack(
                "pgd",
                bands,
                x,
                y,
                params,
                defence=median,
                stand_in="identity",
                stand_in_sigma=sigma,
            ),
            default,
        )
    assert StandIn() == StandIn(stand_in="identity", stand_in_sigma=1.0)
    assert StandIn().surrogate() is None and STAND_INS[0] == "identity"
    # the Gaussian stand-in is another attack
    gauss = run_attack("pgd", bands, x, y, params, defence=median, stand_in="gaussian")
    assert not np.array_equal(gauss, default)
    assert 0 < np.abs(gauss.astype(int) - x.astype(int)).max() <= 6


def test_gaussian_stand_in_through_median_is_the_blurs_adjoint(bands, band_data):
    x, y = band_data
    comp = compiled(bands)
    xf = x.astype(np.float32) + 0.25
    median = MedianBlur()
    logits, loss, grad = Through(comp, median, stand_in=GAUSS).value_and_grad(xf, y)
    want_logits, want_loss, upstream = comp.value_and_grad(median.forward(xf), y)
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(loss, want_loss)
    # the Gaussian's own backward pass applied to the gradient at the median's output ...
    np.testing.assert_array_equal(grad, GaussianBlur(sigma=1.0).estimate_gradient(xf, upstream))
    assert grad.dtype == np.float32 and not np.array_equal(grad, upstream)
    # ... which is the exact adjoint of the blur: <B v, u> = <v, B^T u>
    v = np.random.default_rng(6).normal(size=xf.shape).astype(np.float32)
    k = GaussianBlur(sigma=1.0).kernel
    mh = mw = gaussian_matrix(xf.shape[1], 1.0, k)
    assert inner(apply_separable(v, mh, mw), upstream) == pytest.approx(inner(v, grad), rel=1e-5)
    # another sigma is another blur's adjoint
    wide = Through(comp, median, stand_in=StandIn(stand_in="gaussian", stand_in_sigma=2.5))
    np.testing.assert_array_equal(
        wide.value_and_grad(xf, y)[2], GaussianBlur(sigma=2.5).estimate_gradient(xf, upstream)
    )


@pytest.mark.parametrize(
    "defence",
    [GaussianBlur(sigma=2.0), ResizePadDraw(min_scale=0.8, seed=1), Identity()],
    ids=lambda d: d.ID,
)
def test_an_exact_backward_pass_is_kept_whatever_the_stand_in(bands, band_data, defence):
    x, y = band_data
    comp = compiled(bands)
    xf = x.astype(np.float32) + 0.25
    own = Through(comp, defence).value_and_grad(xf, y)
    for got, want in zip(
        Through(comp, defence, stand_in=GAUSS).value_and_grad(xf, y), own, strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert backward_label(defence, GAUSS) == BACKWARD_EXACT


def test_gaussian_stand_in_replaces_only_the_bpda_members_of_a_chain(bands, band_data):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (2, 16, 18, 3)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    blur, draw, s = GaussianBlur(sigma=2.0), ResizePadDraw(min_scale=0.8, seed=1), GaussianBlur()
    chain = Chain((blur, MedianBlur(), draw, JPEG()))
    comp = compiled(bands)
    got = Through(comp, chain, stand_in=GAUSS).backward(chain, x, g)
    # last to first: JPEG -> Gaussian stand-in, the draw and the blur their own, median -> stand-in
    want = blur.estimate_gradient(
        x, s.estimate_gradient(x, draw.estimate_gradient(x, s.estimate_gradient(x, g)))
    )
    np.testing.assert_array_equal(got, want)
    # the identity stand-in is the chain's own backward pass
    np.testing.assert_array_equal(
        Through(comp, chain).backward(chain, x, g), chain.estimate_gradient(x, g)
    )
    # a randomised chain: each draw is a chain of draws, its BPDA members replaced
    random_chain = Chain((RandomResizePad(min_scale=0.8), MedianBlur()))
    d = random_chain.sample(np.random.default_rng(0))
    np.testing.assert_array_equal(
        Through(comp, random_chain, stand_in=GAUSS).backward(d, x, g),
        d.defences[0].estimate_gradient(x, s.estimate_gradient(x, g)),
    )
    # end to end: through the seed chain the two stand-ins are different attacks
    xs, ys = band_data
    p = {"eps": 4.0, "steps": 2}
    ident = run_attack("pgd", bands, xs[:4], ys[:4], p, defence=SEED_CHAIN)
    gauss = run_attack("pgd", bands, xs[:4], ys[:4], p, defence=SEED_CHAIN, stand_in="gaussian")
    assert not np.array_equal(ident, gauss)
    assert np.abs(gauss.astype(int) - xs[:4].astype(int)).max() <= 4


def test_stand_in_labels_name_it_and_parse_back():
    stem = "adaptive: crafted through the defence"
    cases = [
        (MedianBlur(), GAUSS, 1, f"{stem} (bpda-gaussian σ1)"),
        (
            SEED_CHAIN,
            StandIn(stand_in="gaussian", stand_in_sigma=0.5),
            1,
            f"{stem} (bpda-gaussian σ0.5)",
        ),
        (Chain((JPEG(), RandomResizePad())), GAUSS, 8, f"{stem} (bpda-gaussian σ1, EOT 8)"),
        (GaussianBlur(), GAUSS, 1, f"{stem} (exact)"),
        (RandomResizePad(), GAUSS, 8, f"{stem} (exact, EOT 8)"),
        (MedianBlur(), GAUSS, 8, f"{stem} (bpda-gaussian σ1)"),  # deterministic: no EOT
        # the identity, named or not, keeps the labels the shipped results carry
        (MedianBlur(), StandIn(), 1, f"{stem} (bpda-identity)"),
        (MedianBlur(), None, 1, f"{stem} (bpda-identity)"),
        (SEED_CHAIN, StandIn(stand_in_sigma=2.0), 1, f"{stem} (bpda-identity)"),
    ]
    for defence, stand_in, eot, label in cases:
        made = threat_label(defence, eot, stand_in)
        assert made == label, (defence.ID, made)
        assert parse(made) is ADAPTIVE
        backward = backward_label(defence, stand_in)
        assert parse_adaptive(made) == AdaptiveAttacker(backward, eot if defence.randomised else 1)
    assert threat_label(JPEG(), 8) == threat_label(JPEG(), 8, StandIn())
    assert GAUSS.backward == "bpda-gaussian σ1" and StandIn().backward == BACKWARD_BPDA


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"stand_in": "sobel"},
            r"Adaptive attack: 'stand_in' must be one of identity, gaussian; "
            r"got 'sobel'\.",
        ),
        ({"stand_in": "Gaussian"}, r"'stand_in' must be one of identity, gaussian; got 'Gaussian'"),
        ({"stand_in": 3}, r"Adaptive attack: 'stand_in' must be a string; got 3\."),
        (
            {"stand_in": "gaussian", "stand_in_sigma": 0.0},
            r"Adaptive attack: 'stand_in_sigma' must be a number in \[0.1, 5\]; got 0\.",
        ),
        ({"stand_in_sigma": 6.0}, r"'stand_in_sigma' must be a number in \[0.1, 5\]; got 6\."),
        ({"stand_in": "gaussian", "stand_in_sigma": float("nan")}, r"'stand_in_sigma' must be"),
    ],
)
def test_bad_stand_ins_are_refused(bands, band_data, kwargs, match):
    x, y = band_data
    with pytest.raises(ParamError, match=match):
        run_attack("pgd", bands, x, y, None, defence=MedianBlur(), **kwargs)
    with pytest.raises(ParamError, match=match):
        StandIn(**kwargs)


def test_stand_in_is_declared_apart_from_the_spec_options():
    assert {p.name for p in StandIn.PARAMS} == {"stand_in", "stand_in_sigma"}
    sigma = next(p for p in StandIn.PARAMS if p.name == "stand_in_sigma")
    blur = next(p for p in GaussianBlur.PARAMS if p.name == "sigma")
    assert (sigma.low, sigma.high, sigma.step, sigma.default) == (
        blur.low,
        blur.high,
        blur.step,
        blur.default,
    )


# ------------------------------------------------------------------ adaptive beats transfer

SIDE = 16


def _checkerboard() -> np.ndarray:
    return ((np.indices((SIDE, SIDE)).sum(0) % 2) * 2 - 1)[None, :, :, None].astype(np.float64)


def _two_features(n: int, seed: int, with_board: float) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 brighter (by 24 levels, spread 18) and with a +8 checkerboard; class 0 with -8."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    sign = np.where(y == 1, 1.0, -1.0)[:, None, None, None]
    board = sign * 8.0 * _checkerboard() * (rng.random((n, 1, 1, 1)) < with_board)
    base = 128.0 + 12.0 * sign + rng.uniform(-18, 18, (n, 1, 1, 1))
    img = base + board + rng.normal(0, 2, (n, SIDE, SIDE, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), y


def _linear(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIDE, SIDE, 3))
    h = keras.layers.Rescaling(1.0 / 32.0, offset=-4.0)(inputs)
    logits = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(h))
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probs")(logits))


@pytest.fixture(scope="module")
def two_features() -> keras.Model:
    m = _linear()
    x, y = _two_features(400, seed=1, with_board=0.7)
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    m.fit(x.astype("float32"), y, epochs=60, batch_size=50, verbose=0, shuffle=True)
    return m


def test_adaptive_attack_beats_the_transfer_attack_through_a_blur(two_features):
    x, y = _two_features(60, seed=2, with_board=1.0)
    blur = GaussianBlur(sigma=2.0)
    assert accuracy(two_features, x, y) >= 0.95
    assert accuracy(two_features, blur(x), y) >= 0.6  # the blur costs the checkerboard only
    p = {"eps": 8.0, "steps": 10, "step_size": 2.0}
    transfer = run_attack("pgd", two_features, x, y, p)
    adaptive = run_attack("pgd", two_features, x, y, p, defence=blur)
    assert accuracy(two_features, transfer, y) <= 0.1  # the undefended model falls ...
    acc_transfer = accuracy(two_features, blur(transfer), y)  # ... the blur "restores" it ...
    acc_adaptive = accuracy(two_features, blur(adaptive), y)  # ... until the attack knows it
    # measured: transfer 0.58, adaptive 0.13
    assert acc_transfer >= 0.45, acc_transfer
    assert acc_adaptive <= acc_transfer - 0.3, (acc_transfer, acc_adaptive)


# --------------------------------------------------------------------------- EOT


def _centre_model(alpha: float, beta: float) -> keras.Model:
    """logit(1) - logit(0) = <alpha * centre + beta * pattern, (x - 128) / 32>: set, not trained."""
    rng = np.random.default_rng(0)
    centre = np.zeros((SIDE, SIDE, 3))
    centre[4:12, 4:12] = 1.0
    pattern = np.zeros((SIDE, SIDE, 3))
    signs = np.repeat([-1.0, 1.0], 96)
    pattern[4:12, 4:12] = rng.permutation(signs).reshape(8, 8, 3)  # zero sum: blind to brightness
    w = (alpha * centre + beta * pattern).reshape(-1)
    m = _linear()
    m.get_layer("logits").set_weights([np.stack([-w / 2, w / 2], axis=1), np.zeros(2)])
    return m


def _centre_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    b = 128.0 + np.where(y == 1, 1.0, -1.0) * rng.uniform(2, 10, n)
    img = b[:, None, None, None] + rng.normal(0, 2, (n, SIDE, SIDE, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), y


def test_eot_breaks_the_randomised_defence_where_one_fixed_draw_does_not():
    model = _centre_model(alpha=1.0, beta=2.0)
    x, y = _centre_data(80, seed=3)
    defender = RandomResizePad(min_scale=0.8, seed=11)  # the attacker does not know this seed
    assert accuracy(model, defender(x), y) >= 0.95
    p = {"eps": 8.0, "steps": 10, "step_size": 2.0, "random_start": False}
    # the pattern carries the undefended model: a transfer attack wins there ...
    transfer = run_attack("pgd", model, x, y, p)
    assert accuracy(model, transfer, y) <= 0.05
    # ... but neither it nor an attack through one fixed draw survives the defender's draws
    fixed = run_attack("pgd", model, x, y, p, defence=defender.sample(np.random.default_rng(5)))
    acc_transfer = accuracy(model, defender(transfer), y)
    acc_fixed = accuracy(model, defender(fixed), y)
    # EOT: fresh draws every step, 16 averaged
    eot = run_attack("pgd", model, x, y, p, defence=defender, eot_samples=16, eot_seed=1)
    acc_eot = accuracy(model, defender(eot), y)
    # measured: transfer 0.72, one fixed draw 0.71, EOT 0.44
    assert acc_transfer >= 0.65 and acc_fixed >= 0.65, (acc_transfer, acc_fixed)
    assert acc_eot <= min(acc_transfer, acc_fixed) - 0.2, (acc_transfer, acc_fixed, acc_eot)
    # seeded: the same attacker's draws give the same images
    again = run_attack("pgd", model, x, y, p, defence=defender, eot_samples=16, eot_seed=1)
    np.testing.assert_array_equal(eot, again)
