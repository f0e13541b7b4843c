"""Backbones, the classifier head, weights handling and bundles."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from engine.errors import ModelError, ParamError
from engine.models import (
    BACKBONES,
    BundleMeta,
    build_backbone,
    build_classifier,
    load_bundle,
    read_meta,
    save_bundle,
)

ROOT = Path(__file__).resolve().parents[2]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@pytest.mark.parametrize(
    ("backbone", "size"),
    [
        ("tiny", 32),
        ("mobilenet_v3_small", 64),
        ("mobilenet_v3_large", 64),
        ("resnet50", 64),
        ("inception_v3", 75),
    ],
)
def test_every_backbone_builds_a_softmax_classifier_without_lambda(backbone, size):
    model = build_classifier(backbone, 3, weights="none", input_size=size)
    assert model.inputs[0].shape[1:] == (size, size, 3)
    assert model.get_layer("logits").units == 3
    assert model.layers[-1].name == "probs"
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    p = np.asarray(model(x))
    assert p.shape == (2, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in _all_layers(model))


def test_resnet_preprocessing_layer_equals_keras_preprocess_input():
    backbone = build_backbone("resnet50", weights="none", input_size=32)
    prep = backbone.get_layer("caffe_preprocess")
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(prep(x)), expected, atol=1e-3)
    assert not prep.trainable


def test_inception_preprocessing_maps_0_255_to_minus1_1():
    backbone = build_backbone("inception_v3", weights="none", input_size=75)
    layer = backbone.get_layer("tf_preprocess")
    out = np.asarray(layer(np.array([[[[0.0, 127.5, 255.0]]]], "float32")))
    np.testing.assert_allclose(out.ravel(), [-1.0, 0.0, 1.0], atol=1e-6)


def test_pretrained_backbone_is_frozen_and_head_trains(tmp_path):
    feat = build_backbone("mobilenet_v3_small", weights="none", input_size=64)
    path = tmp_path / "small_notop.weights.h5"
    feat.save_weights(path)
    model = build_classifier("mobilenet_v3_small", 2, weights=str(path), input_size=64)
    trainable = {w.path for w in model.trainable_weights}
    assert trainable and all("logits" in p for p in trainable)
    # the loaded weights are the ones saved
    loaded = model.layers[1]
    for a, b in zip(loaded.get_weights(), feat.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fine_tune_unfreezes_only_top_layers(tmp_path):
    feat = build_backbone("mobilenet_v3_small", weights="none", input_size=64)
    path = tmp_path / "w.weights.h5"
    feat.save_weights(path)
    frozen = build_classifier("mobilenet_v3_small", 2, weights=str(path), input_size=64)
    tuned = build_classifier(
        "mobilenet_v3_small", 2, weights=str(path), input_size=64, fine_tune_layers=5
    )
    assert len(tuned.trainable_weights) > len(frozen.trainable_weights)


def test_imagenet_download_fails_fast_and_clearly_offline(monkeypatch, tmp_path):
    """Stand-in for the Keras download host: a closed port on 127.0.0.1, empty cache."""
    from keras.src.applications import mobilenet_v3
    from keras.src.backend import config

    monkeypatch.setattr(mobilenet_v3, "BASE_WEIGHT_PATH", "http://127.0.0.1:9/weights/")
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=r"ImageNet weights .* offline.*--weights none"):
        build_backbone("mobilenet_v3_small", weights="imagenet", input_size=224)


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"backbone_id": "vgg99"}, ParamError, r"Unknown backbone 'vgg99'\. Known: "),
        ({"weights": "/nonexistent/w.h5"}, ModelError, r"does not exist"),
        ({"input_size": 8}, ParamError, r"'input_size' must be an integer in \[16, 1024\]"),
    ],
)
def test_bad_backbone_arguments(kwargs, exc, pattern):
    args = {"backbone_id": "tiny", "weights": "none", **kwargs}
    with pytest.raises(exc, match=pattern):
        build_backbone(**args)


def test_tiny_has_no_imagenet_weights():
    with pytest.raises(ModelError, match="has no ImageNet weights; use --weights none"):
        build_backbone("tiny", weights="imagenet")


def test_classifier_rejects_one_class():
    with pytest.raises(ParamError, match="at least 2 classes"):
        build_classifier("tiny", 1, weights="none")


def test_registry_sizes():
    assert BACKBONES["inception_v3"].input_size == 299
    assert {"mobilenet_v3_large", "mobilenet_v3_small", "resnet50", "inception_v3"} <= set(
        BACKBONES
    )


@pytest.mark.skipif(
    not (ROOT / "assets" / "weights" / "efficientnet_lite0_imagenet_notop.weights.h5").is_file(),
    reason="the converted EfficientNet-Lite0 weights are not shipped",
)
def test_efficientnet_lite0_gets_its_imagenet_weights_offline(tmp_path, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    model = build_classifier("efficientnet_lite0", 2, weights="imagenet", input_size=96)
    assert model.output_shape == (None, 2)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    assert np.isfinite(model.predict(x, verbose=0)).all()
    # loaded, not initialised: batch-norm statistics start at mean 0, variance 1
    bn = [w for w in model.weights if w.path.endswith("moving_variance")]
    assert len(bn) > 40 and all(not np.allclose(np.asarray(w), 1.0) for w in bn)


def _meta() -> BundleMeta:
    return BundleMeta(
        dataset_id="synthetic",
        classes=["circle", "square", "triangle"],
        positive=[],
        input_size=0,
        backbone="tiny",
        weights="none",
        training={"epochs": 1},
        data_fingerprints={"test": "abc"},
        clean_metrics={"accuracy": 0.5},
    )


def test_bundle_round_trip_is_exact_and_records_provenance(tmp_path):
    model = build_classifier("tiny", 3, weights="none", input_size=32)
    out = save_bundle(model, _meta(), tmp_path / "b")
    bundle = load_bundle(out)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(bundle.model(x)), np.asarray(model(x)))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_size"] == 32
    assert len(meta["model_sha256"]) == 64
    assert {"tensorflow", "keras", "numpy", "opencv", "engine"} <= set(meta["versions"])
    assert read_meta(out).classes == ["circle", "square", "triangle"]
    assert not list(tmp_path.glob(".b.*")), "temporary folders must be cleaned up"


def test_bundle_overwrite_is_atomic_replacement(tmp_path):
    m1 = build_classifier("tiny", 3, weights="none", input_size=32)
    save_bundle(m1, _meta(), tmp_path / "b")
    m2 = build_classifier("tiny", 3, weights="none", input_size=32)
    out = save_bundle(m2, _meta(), tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert read_meta(out).model_sha256 == load_bundle(out).meta.model_sha256


def test_tampered_model_is_reported_stale(tmp_path):
    model = build_classifier("tiny", 3, weights="none", input_size=32)
    out = save_bundle(model, _meta(), tmp_path / "b")
    with (out / "model.keras").open("ab") as f:
        f.write(b"x")
    with pytest.raises(ModelError, match="does not match the hash"):
        load_bundle(out)


def test_missing_or_damaged_bundle_messages(tmp_path):
    with pytest.raises(ModelError, match=r"meta\.json is missing"):
        load_bundle(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ModelError, match="damaged"):
        read_meta(tmp_path)


def test_bundle_drops_optimizer_state(tmp_path):
    model = build_classifier("tiny", 3, weights="none", input_size=32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    out = save_bundle(model, _meta(), tmp_path / "b")
    loaded = keras.models.load_model(out / "model.keras")
    assert getattr(loaded, "optimizer", None) is None
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_scratch_training_uses_fast_batchnorm_statistics(tmp_path):
    scratch = build_classifier("mobilenet_v3_small", 2, weights="none", input_size=64)
    moms = [
        layer.momentum
        for layer in _all_layers(scratch)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert moms and max(moms) <= 0.99
    path = tmp_path / "w.weights.h5"
    build_backbone("mobilenet_v3_small", weights="none", input_size=64).save_weights(path)
    pretrained = build_classifier("mobilenet_v3_small", 2, weights=str(path), input_size=64)
    moms = [
        layer.momentum
        for layer in _all_layers(pretrained)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert max(moms) == 0.999, "a pretrained backbone keeps its own statistics settings"
