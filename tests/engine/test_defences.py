"""Tests for engine.defences: known answers, shapes, batching, specs, validation."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from engine.defences import (
    JPEG,
    NLM,
    REGISTRY,
    SEED_CHAIN,
    Bilateral,
    BitDepth,
    Chain,
    GaussianBlur,
    GuidedFilter,
    Identity,
    MedianBlur,
    WebPFlip,
    apply_batch,
    describe,
    from_spec,
    make_defence,
    to_spec,
)
from engine.errors import ImageError, ParamError
from engine.params import defaults

# Small, cheap settings so every defence runs in milliseconds on 24x24 images.
FAST = {
    "nlm": {"template_window": 3, "search_window": 7},
    "bilateral": {"d": 5},
}


def fast(defence_id: str):
    return make_defence(defence_id, FAST.get(defence_id))


ALL_IDS = list(REGISTRY)


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    """A batch of 3 random RGB images, 24x24."""
    return np.random.default_rng(0).integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def smooth() -> np.ndarray:
    """A smooth colour gradient, 32x32."""
    y, x = np.mgrid[0:32, 0:32].astype(np.float64)
    img = np.stack([x * 8, y * 8, (x + y) * 4], axis=-1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("defence_id", ["gaussian", "median", "bilateral", "nlm", "guided"])
def test_constant_image_is_a_fixed_point(defence_id):
    img = np.empty((20, 20, 3), np.uint8)
    img[:] = (200, 50, 120)
    out = fast(defence_id)(img)
    assert np.abs(out.astype(int) - img).max() <= 1


def test_median_removes_a_single_salt_pixel_exactly():
    img = np.full((9, 9, 3), 40, np.uint8)
    salted = img.copy()
    salted[4, 4] = 255
    assert np.array_equal(MedianBlur(kernel=3)(salted), img)


def test_bit_depth_one_bit_thresholds_at_128():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = BitDepth(bits=1)(x)
    assert set(np.unique(out)) == {0, 255}
    assert np.all(out[x <= 127] == 0) and np.all(out[x >= 128] == 255)


def test_bit_depth_levels_and_identity():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(BitDepth(bits=8)(x), x)
    assert np.array_equal(np.unique(BitDepth(bits=2)(x)), [0, 85, 170, 255])


def test_jpeg_quality_100_is_close_on_smooth_image(smooth):
    out = JPEG(quality=100)(smooth)
    err = np.abs(out.astype(int) - smooth)
    assert err.mean() < 1.5 and err.max() <= 8
    assert np.abs(JPEG(quality=5)(smooth).astype(int) - smooth).mean() > err.mean()


@pytest.mark.parametrize(
    "defence", [JPEG(quality=75), WebPFlip(quality=75, flip=False), NLM()], ids=str
)
def test_colour_aware_defences_treat_input_as_rgb(defence):
    # Fine detail in red only. Read as RGB, red weighs 0.299 in luma (kept at full
    # resolution); misread as blue (0.114, mostly subsampled chroma) it is lost more.
    img = np.full((32, 32, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:32, 0:32]
    img[..., 0] = np.where((yy + xx) % 2, 200, 56)
    as_rgb = np.abs(defence(img).astype(int) - img)[..., 0].mean()
    as_bgr = np.abs(defence(img[..., ::-1])[..., ::-1].astype(int) - img)[..., 0].mean()
    assert as_rgb < as_bgr


def test_webp_flip_is_flip_of_webp(noisy):
    plain = WebPFlip(quality=50, flip=False)(noisy)
    flipped = WebPFlip(quality=50, flip=True)(noisy)
    assert np.array_equal(flipped, np.flip(plain, axis=2))
    assert not np.array_equal(flipped, plain)


def test_gaussian_kernel_from_sigma():
    assert GaussianBlur(sigma=1.0).kernel == 7
    assert GaussianBlur(sigma=0.1).kernel == 3


def test_guided_eps_is_a_variance_in_0_255_units():
    # a 0/200 step edge: local variance ~1e4. Small eps keeps it, large eps blurs it.
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, 8:] = 200
    keep = GuidedFilter(radius=2, eps=10.0)(img)
    blur = GuidedFilter(radius=2, eps=10000.0)(img)
    assert np.abs(keep.astype(int) - img).max() <= 1
    assert np.abs(blur.astype(int) - img).max() > 15


def _box(x, r):
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def test_guided_matches_float64_reference_on_grey(smooth):
    # He et al.'s self-guided filter, eps in (0-255)^2 units, float64; OpenCV box uses REFLECT.
    img = smooth[..., 1] // 2 + smooth[..., 0] // 3
    r, eps = 3, 400.0
    x = img.astype(np.float64)
    mean, var = _box(x, r), _box(x * x, r) - _box(x, r) ** 2
    a = var / (var + eps)
    b = mean - a * mean
    expected = _box(a, r) * x + _box(b, r)
    out = GuidedFilter(radius=r, eps=eps)(img)
    assert np.abs(out - expected).max() <= 0.51  # OpenCV rounds the same result


def test_chain_equals_sequential_application(noisy):
    a, b, c = fast("nlm"), fast("bilateral"), GuidedFilter()
    expected = c(b(a(noisy)))
    assert np.array_equal(Chain((a, b, c))(noisy), expected)
    assert not np.array_equal(expected, noisy)


def test_chain_naming_and_flattening():
    assert SEED_CHAIN.ID == "nlm+bilateral+guided"
    assert SEED_CHAIN.TITLE == "NLM → Bilateral → Guided"
    assert SEED_CHAIN.defences == (NLM(), Bilateral(), GuidedFilter())
    nested = Chain((Chain((NLM(), JPEG())), BitDepth()))
    assert nested.ID == "nlm+jpeg+bit_depth"


def test_identity_returns_equal_copy(noisy):
    out = Identity()(noisy)
    assert np.array_equal(out, noisy) and out is not noisy
    assert not np.shares_memory(out, noisy)


# --------------------------------------------------------------------------- shapes & inputs


@pytest.mark.parametrize("defence_id", ALL_IDS)
def test_shapes_dtypes_and_no_mutation(defence_id, noisy):
    d = fast(defence_id)
    grey = noisy[0, ..., 0]
    for x in (noisy, noisy[0], grey, grey[..., None], noisy[..., :1]):
        before = x.copy()
        out = d(x)
        assert out.shape == x.shape and out.dtype == np.uint8
        assert np.array_equal(x, before)
    # grey images are processed as grey: same as the single-channel OpenCV result
    if defence_id == "median":
        assert np.array_equal(d(grey), cv2.medianBlur(grey, 3))


def test_non_contiguous_input(noisy):
    view = noisy[:, ::-1]
    assert np.array_equal(MedianBlur()(view), MedianBlur()(view.copy()))


def test_rejects_non_uint8():
    with pytest.raises(ImageError, match=r"expected uint8 pixels.*got dtype float32"):
        MedianBlur()(np.zeros((8, 8, 3), np.float32))


def test_rejects_bad_shape():
    with pytest.raises(ImageError, match=r"got shape \(8, 8, 2\)"):
        MedianBlur()(np.zeros((8, 8, 2), np.uint8))


def test_rejects_non_array():
    with pytest.raises(ImageError, match="got list"):
        MedianBlur()([[0, 1], [2, 3]])


# --------------------------------------------------------------------------- batches


@pytest.mark.parametrize("defence_id", ["nlm", "webp_flip", "bit_depth"])
def test_apply_batch_equals_serial_loop(defence_id):
    images = np.random.default_rng(1).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    d = fast(defence_id)
    serial = np.stack([d(img) for img in images])
    assert np.array_equal(apply_batch(d, images, workers=2), serial)
    assert np.array_equal(apply_batch(d, images, workers=1), serial)


def test_apply_batch_restores_opencv_threads(noisy):
    before = cv2.getNumThreads()
    apply_batch(MedianBlur(), noisy, workers=2)
    assert cv2.getNumThreads() == before


def test_apply_batch_rejects_bad_workers(noisy):
    with pytest.raises(ParamError, match="'workers' must be a positive integer; got 0"):
        apply_batch(MedianBlur(), noisy, workers=0)


def test_empty_batch():
    out = MedianBlur()(np.zeros((0, 8, 8, 3), np.uint8))
    assert out.shape == (0, 8, 8, 3)


# --------------------------------------------------------------------------- BPDA


def test_bpda_stand_ins(noisy):
    grad = np.random.default_rng(2).normal(size=noisy.shape)
    assert JPEG().estimate_gradient(noisy, grad) is grad
    assert np.array_equal(WebPFlip().estimate_gradient(noisy, grad), np.flip(grad, axis=2))
    assert np.array_equal(WebPFlip(flip=False).estimate_gradient(noisy, grad), grad)
    chain = Chain((WebPFlip(), NLM(), WebPFlip()))
    assert np.array_equal(chain.estimate_gradient(noisy, grad), grad)  # two flips cancel
    assert Identity.differentiable and not NLM.differentiable and not SEED_CHAIN.differentiable


# --------------------------------------------------------------------------- registry & specs


@pytest.mark.parametrize("defence_id", ALL_IDS)
def test_registry_defaults_and_spec_round_trip(defence_id):
    cls = REGISTRY[defence_id]
    assert defence_id == cls.ID
    d = make_defence(defence_id)
    assert d == cls(**defaults(cls))
    for p in cls.PARAMS:
        assert p.help, p.name
    spec = json.loads(json.dumps(to_spec(d)))
    assert from_spec(spec) == d


def test_chain_spec_round_trip():
    chain = Chain((NLM(h=5), MedianBlur(kernel=5), WebPFlip(quality=30, flip=False)))
    spec = json.loads(json.dumps(to_spec(chain)))
    assert isinstance(spec, list) and len(spec) == 3
    assert from_spec(spec) == chain
    assert make_defence("nlm+median", {"median": {"kernel": 5}}) == Chain(
        (NLM(), MedianBlur(kernel=5))
    )


def test_describe():
    assert describe(NLM()) == "NLM(h=10, h_color=10, template_window=7, search_window=21)"
    assert describe(WebPFlip(quality=50)) == "WebP+flip(quality=50, flip=on)"
    assert describe(Identity()) == "None"
    assert describe(Chain((MedianBlur(), GaussianBlur(sigma=0.5)))) == (
        "Median(kernel=3) → Gaussian(sigma=0.5)"
    )


def test_frozen():
    with pytest.raises(AttributeError):
        NLM().h = 3.0  # type: ignore[misc]


# --------------------------------------------------------------------------- validation messages


def test_out_of_range():
    with pytest.raises(
        ParamError, match=r"^Non-local means: 'h' must be a number in \[1, 30\]; got 50\.$"
    ):
        NLM(h=50)


def test_not_odd():
    with pytest.raises(
        ParamError, match=r"Median blur: 'kernel' must be an odd integer in \[3, 15\]; got 4\."
    ):
        MedianBlur(kernel=4)


def test_template_larger_than_search():
    with pytest.raises(
        ParamError, match="'template_window' must be at most 'search_window' \\(9\\); got 11"
    ):
        NLM(template_window=11, search_window=9)


def test_wrong_type():
    with pytest.raises(
        ParamError, match=r"JPEG: 'quality' must be an integer in \[1, 100\]; got '75'\."
    ):
        JPEG(quality="75")


def test_bool_for_int():
    with pytest.raises(
        ParamError, match=r"Bit-depth reduction: 'bits' must be an integer in \[1, 8\]; got True\."
    ):
        BitDepth(bits=True)


def test_int_for_bool():
    with pytest.raises(ParamError, match=r"WebP \+ flip: 'flip' must be true or false; got 1\."):
        WebPFlip(flip=1)


def test_nan():
    with pytest.raises(
        ParamError, match=r"Gaussian blur: 'sigma' must be a number in \[0\.1, 5\]; got nan\."
    ):
        GaussianBlur(sigma=float("nan"))


def test_unknown_id():
    with pytest.raises(ParamError, match=r"Unknown defence 'blur'; known: none, nlm, bilateral"):
        make_defence("blur")


def test_unknown_parameter():
    with pytest.raises(
        ParamError, match=r"Bilateral filter: unknown parameter\(s\) sigma; known: d, sigma_color"
    ):
        make_defence("bilateral", {"sigma": 3})


def test_parameter_for_identity():
    with pytest.raises(ParamError, match="No defence: takes no parameters; got h"):
        make_defence("none", {"h": 3})


def test_chain_params_for_absent_member():
    with pytest.raises(ParamError, match="parameters given for jpeg, which is not in the chain"):
        make_defence("nlm+median", {"jpeg": {"quality": 5}})


def test_empty_chain():
    with pytest.raises(
        ParamError, match=r"Chain: 'defences' must be a non-empty tuple of defences; got \(\)\."
    ):
        Chain(())


def test_non_defence_in_chain():
    with pytest.raises(
        ParamError, match=r"Chain: member 1 must be a defence \(e\.g\. NLM\(\)\); got 'jpeg'\."
    ):
        Chain((NLM(), "jpeg"))


def test_bad_spec():
    with pytest.raises(ParamError, match="Defence spec must be"):
        from_spec({"name": "nlm"})


def test_registry_and_declarations_load_without_opencv():
    import subprocess
    import sys

    code = (
        "import sys; from engine import defences; "
        "assert defences.REGISTRY['guided'].PARAMS[1].slider_high == 2000.0; "
        "assert defences.make_defence('jpeg', {'quality': 50}).quality == 50; "
        "print('cv2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("defence_id", ALL_IDS)
def test_each_parameter_is_declared_once_on_its_field(defence_id):
    from dataclasses import fields

    cls = REGISTRY[defence_id]
    assert {f.name: f.default for f in fields(cls)} == {p.name: p.default for p in cls.PARAMS}
    for p in cls.PARAMS:
        if p.kind in (int, float):
            assert p.step and p.low is not None and p.slider_high is not None, p.name
            assert p.low <= p.default <= p.slider_high <= p.high, p.name
