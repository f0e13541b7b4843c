"""EfficientNet-Lite in Keras: architecture, PyTorch weight mapping, shipped weights.

Offline and PyTorch-free: the state dicts here are fakes built with numpy; the
real checkpoint was checked by ``tools/convert_efficientnet_lite.py`` (logits
equal to PyTorch's), whose numbers are in the provenance JSON tested below.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from engine import efficientnet_lite as lite
from engine.bundle import file_sha256
from engine.errors import ModelError, ParamError

WEIGHTS = lite.LITE0_IMAGENET_NOTOP
PROVENANCE = WEIGHTS.with_name("efficientnet_lite0_imagenet.json")
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS.name} is absent")

#: Trainable parameters of the PyTorch EfficientNet-Lite0 (efficientnet-lite-pytorch 0.1.0),
#: measured with ``sum(p.numel() for p in model.parameters())``; without ``_fc``: 3,371,008.
TORCH_LITE0_PARAMS = 4_652_008
TORCH_LITE0_PARAMS_NO_FC = 3_371_008


def _trainable(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def _to_torch_layout(layer: str, var: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Inverse of the converter's layouts, to fake a state dict from Keras shapes."""
    if len(shape) == 4 and layer.endswith("dwconv"):
        kh, kw, c, m = shape
        return (c * m, 1, kh, kw)
    if len(shape) == 4:
        kh, kw, i, o = shape
        return (o, i, kh, kw)
    if layer == "logits" and var == "kernel":
        return (shape[1], shape[0])
    return shape


def _fake_state_dict(expected, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}
    for layer, variables in expected.items():
        keys = lite.torch_keys(layer)
        for var, shape in variables.items():
            value = rng.normal(size=_to_torch_layout(layer, var, shape)).astype(np.float32)
            sd[keys[var]] = np.abs(value) + 0.5 if var == "moving_variance" else value
        if layer.endswith("_bn"):
            sd[keys["gamma"].removesuffix("weight") + "num_batches_tracked"] = np.array(7)
    return sd


# --------------------------------------------------------------------------- architecture
def test_lite0_has_the_16_blocks_of_the_reference():
    specs = lite.block_specs(lite.LITE_VARIANTS["lite0"])
    assert len(specs) == 16
    assert [s.index for s in specs] == list(range(16))
    assert (specs[0].filters_in, specs[0].expand, specs[-1].filters_out) == (32, 1, 320)
    assert sum(s.residual for s in specs) == 9
    assert [s.stride for s in specs].count(2) == 4


def test_scaling_rounds_like_the_reference():
    assert lite.round_filters(32, 1.0) == 32
    assert lite.round_filters(40, 1.1) == 48  # 44 -> nearest multiple of 8 rounding half up
    assert lite.round_filters(16, 1.1) == 16
    assert lite.round_repeats(3, 1.1) == 4
    lite2 = lite.block_specs(lite.LITE_VARIANTS["lite2"])
    assert lite2[0].filters_in == lite.STEM_FILTERS  # the stem stays fixed


@pytest.mark.parametrize("size", [224, 96])
def test_lite0_parameter_count_matches_pytorch(size):
    top = lite.efficientnet_lite("lite0", input_shape=(size, size, 3), include_top=True)
    assert _trainable(top) == TORCH_LITE0_PARAMS
    assert top.output_shape == (None, 1000)
    features = lite.efficientnet_lite("lite0", input_shape=(size, size, 3))
    assert _trainable(features) == TORCH_LITE0_PARAMS_NO_FC
    # plus BatchNorm moving mean and variance (2 x 21,008 channels)
    assert features.count_params() == 3_413_024
    side = -(-size // 32)
    assert features.output_shape == (None, side, side, lite.HEAD_FILTERS)


def test_the_model_takes_0_255_and_normalises_with_a_real_layer():
    model = lite.efficientnet_lite(input_shape=(32, 32, 3))
    pre = model.get_layer("lite_preprocess")
    assert isinstance(pre, keras.layers.Rescaling)
    x = np.array([[[[0.0, 127.0, 255.0]]]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(pre(x)), (x - 127.0) / 128.0, atol=1e-7)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_bad_arguments_are_refused_with_a_clear_message():
    with pytest.raises(ParamError, match="Unknown EfficientNet-Lite variant 'lite9'"):
        lite.efficientnet_lite("lite9")
    with pytest.raises(ParamError, match=r"'input_shape' must be \(H, W, 3\)"):
        lite.efficientnet_lite(input_shape=(16, 16, 3))
    with pytest.raises(ParamError, match="'drop_connect_rate' must be in"):
        lite.efficientnet_lite(drop_connect_rate=1.0)


# --------------------------------------------------------------------------- layouts
def _reference_conv(x, w_oihw, stride, groups=1):
    """Cross-correlation as PyTorch does it, with its TF-'SAME' padding (extra at the end)."""
    n, h, wd, _ = x.shape
    c_out, c_per_group, kh, kw = w_oihw.shape
    pads = []
    for size, k in ((h, kh), (wd, kw)):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh, ow = -(-h // stride), -(-wd // stride)
    y = np.zeros((n, oh, ow, c_out))
    per_out = c_out // groups
    for o in range(c_out):
        g = o // per_out
        for i in range(c_per_group):
            for dy in range(kh):
                for dx in range(kw):
                    patch = xp[:, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride]
                    y[..., o] += patch[..., g * c_per_group + i] * w_oihw[o, i, dy, dx]
    return y


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [(10, 3, 2), (9, 3, 2), (11, 5, 2), (8, 5, 1)]
)
def test_conv_kernel_layout_and_padding_match_pytorch(size, kernel, stride):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(1, size, size, 3)).astype(np.float32)
    w = rng.normal(size=(4, 3, kernel, kernel)).astype(np.float32)  # OIHW, asymmetric
    conv = keras.layers.Conv2D(4, kernel, strides=stride, padding="same", use_bias=False)
    conv.build(x.shape)
    conv.kernel.assign(lite.conv_kernel_to_keras(w))
    np.testing.assert_allclose(np.asarray(conv(x)), _reference_conv(x, w, stride), atol=1e-4)


@pytest.mark.parametrize(("size", "kernel", "stride"), [(10, 3, 2), (9, 5, 2), (7, 3, 1)])
def test_depthwise_kernel_layout_and_padding_match_pytorch(size, kernel, stride):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(2, size, size, 5)).astype(np.float32)
    w = rng.normal(size=(5, 1, kernel, kernel)).astype(np.float32)  # groups=5
    conv = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False)
    conv.build(x.shape)
    conv.kernel.assign(lite.depthwise_kernel_to_keras(w))
    want = _reference_conv(x, w, stride, groups=5)
    np.testing.assert_allclose(np.asarray(conv(x)), want, atol=1e-4)


def test_dense_kernel_is_transposed():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)  # Linear(3 -> 2).weight
    x = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(x @ lite.dense_kernel_to_keras(w), x @ w.T)


# --------------------------------------------------------------------------- name mapping
TINY_EXPECTED = {
    "stem_conv": {"kernel": (3, 3, 3, 4)},
    "stem_bn": {"gamma": (4,), "beta": (4,), "moving_mean": (4,), "moving_variance": (4,)},
    "block0_dwconv": {"kernel": (3, 3, 4, 1)},
    "logits": {"kernel": (4, 2), "bias": (2,)},
}


def test_torch_keys_follow_the_pytorch_module_tree():
    assert lite.torch_keys("stem_conv") == {"kernel": "_conv_stem.weight"}
    assert lite.torch_keys("head_bn")["moving_mean"] == "_bn1.running_mean"
    assert lite.torch_keys("block12_expand_bn")["gamma"] == "_blocks.12._bn0.weight"
    assert lite.torch_keys("block3_dwconv") == {"kernel": "_blocks.3._depthwise_conv.weight"}
    assert lite.torch_keys("block3_project_conv") == {"kernel": "_blocks.3._project_conv.weight"}
    assert lite.torch_keys("logits") == {"kernel": "_fc.weight", "bias": "_fc.bias"}
    with pytest.raises(ModelError, match="'block3_se_conv' has no counterpart"):
        lite.torch_keys("block3_se_conv")


def test_convert_state_dict_puts_every_value_where_it_belongs():
    sd = _fake_state_dict(TINY_EXPECTED)
    out = lite.convert_state_dict(sd, TINY_EXPECTED)
    stem = sd["_conv_stem.weight"]  # (O, I, H, W)
    assert out["stem_conv"]["kernel"][2, 0, 1, 3] == stem[3, 1, 2, 0]
    dw = sd["_blocks.0._depthwise_conv.weight"]
    assert out["block0_dwconv"]["kernel"][1, 2, 3, 0] == dw[3, 0, 1, 2]
    assert out["logits"]["kernel"][3, 1] == sd["_fc.weight"][1, 3]
    for keras_name, torch_name in lite.torch_keys("stem_bn").items():
        np.testing.assert_array_equal(out["stem_bn"][keras_name], sd[torch_name])
    assert {k: {v: a.shape for v, a in d.items()} for k, d in out.items()} == TINY_EXPECTED


def test_a_missing_key_is_named():
    sd = _fake_state_dict(TINY_EXPECTED)
    del sd["_bn0.running_var"]
    with pytest.raises(ModelError, match=r"lacks 1 key\(s\) .*: _bn0\.running_var\."):
        lite.convert_state_dict(sd, TINY_EXPECTED)


def test_a_wrong_shape_is_named_with_both_shapes():
    sd = _fake_state_dict(TINY_EXPECTED)
    sd["_blocks.0._depthwise_conv.weight"] = np.zeros((4, 1, 5, 5), np.float32)
    with pytest.raises(
        ModelError,
        match=r"'block0_dwconv/kernel' from state-dict key '_blocks\.0\._depthwise_conv\.weight':"
        r" \(4, 1, 5, 5\) becomes \(5, 5, 4, 1\) .* expects \(3, 3, 4, 1\)",
    ):
        lite.convert_state_dict(sd, TINY_EXPECTED)


def test_leftover_tensors_are_refused_but_counters_and_a_dropped_top_are_not():
    sd = _fake_state_dict(TINY_EXPECTED)
    no_top = {k: v for k, v in TINY_EXPECTED.items() if k != "logits"}
    assert set(lite.convert_state_dict(sd, no_top)) == set(no_top)  # _fc.* ignored
    sd["_blocks.1._bn1.weight"] = np.ones(4, np.float32)
    with pytest.raises(
        ModelError, match=r"1 tensor\(s\) .* no place for: _blocks\.1\._bn1\.weight"
    ):
        lite.convert_state_dict(sd, TINY_EXPECTED)


def test_a_full_fake_checkpoint_fills_every_variable_of_lite0():
    model = lite.efficientnet_lite(input_shape=(64, 64, 3), include_top=True)
    expected = lite.expected_shapes(model)
    sd = _fake_state_dict(expected)
    assert (
        len([k for k in sd if not k.endswith("num_batches_tracked")]) == 247
    )  # as the .pth (296 tensors, 49 counters)
    converted = lite.convert_state_dict(sd, expected)
    lite.assign_converted(model, converted)
    for layer_name in expected:
        keys = lite.torch_keys(layer_name)
        for v in model.get_layer(layer_name).weights:
            value = np.asarray(v)
            np.testing.assert_array_equal(value, converted[layer_name][v.name])
            source = sd[keys[v.name]].astype(np.float64)
            assert value.astype(np.float64).sum() == pytest.approx(source.sum(), rel=1e-9)
    assert np.isfinite(np.asarray(model(np.zeros((1, 64, 64, 3), np.float32)))).all()


# --------------------------------------------------------------------------- shipped weights
def test_loading_a_missing_file_says_so(tmp_path):
    model = lite.efficientnet_lite(input_shape=(32, 32, 3))
    with pytest.raises(ModelError, match="does not exist"):
        lite.load_weights(model, tmp_path / "nope.weights.h5")


@needs_weights
def test_shipped_weights_match_their_provenance_record():
    record = json.loads(PROVENANCE.read_text())
    assert record["weights_sha256"] == file_sha256(WEIGHTS)
    assert record["weights_bytes"] == WEIGHTS.stat().st_size < 20 * 2**20
    assert record["verification"]["max_abs_logit_diff"] < 1e-4
    assert record["licence"] == "Apache-2.0"
    model = lite.efficientnet_lite("lite0", weights=WEIGHTS)
    got = lite.feature_fingerprint(model)
    want = record["feature_fingerprint"]
    assert got["argmax"] == want["argmax"]
    for key in ("mean", "std", "max"):
        assert got[key] == pytest.approx(want[key], rel=1e-3, abs=1e-4)
    small = lite.efficientnet_lite("lite0", input_shape=(96, 96, 3), weights=WEIGHTS)
    assert np.isfinite(np.asarray(small(lite.fingerprint_image(96)))).all()


@needs_weights
def test_shipped_weights_give_finite_features_on_chelsea():
    skimage = pytest.importorskip("skimage", reason="scikit-image is not installed")
    from skimage import transform

    img = transform.resize(skimage.data.chelsea(), (96, 96), preserve_range=True)
    model = lite.efficientnet_lite("lite0", input_shape=(96, 96, 3), weights=WEIGHTS)
    feats = np.asarray(model(img[None].astype(np.float32), training=False))
    assert feats.shape == (1, 3, 3, 1280)
    assert np.isfinite(feats).all() and feats.max() > 0
