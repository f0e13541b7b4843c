"""The training CLI on the synthetic set: bundle, history, resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.train import TrainConfig, balanced_class_weights, main

ROOT = Path(__file__).resolve().parents[2]
QUICK = [
    "--dataset",
    "synthetic",
    "--backbone",
    "tiny",
    "--weights",
    "none",
    "--input-size",
    "32",
    "--limit-train",
    "240",
    "--limit-eval",
    "60",
    "--batch-size",
    "32",
]


def _history(path: Path) -> list[dict]:
    with (path / "history.csv").open() as f:
        return list(csv.DictReader(f))


def test_class_weights_balance_the_classes():
    y = np.array([0] * 30 + [1] * 10)
    w = balanced_class_weights(y, 3)
    assert w[0] * 30 == pytest.approx(w[1] * 10) == pytest.approx(40 / 3)
    assert w[2] == 0.0


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("epochs", 0, r"'epochs' must be an integer in \[1, 1000\]; got 0"),
        ("learning_rate", 2.0, r"'learning_rate' must be a number in \(0, 1\]"),
        ("limit_train", 0, r"'limit_train' must be a positive integer"),
        ("batch_size", 2000, r"'batch_size' must be an integer in \[1, 1024\]; got 2000"),
        ("patience", 0.5, r"'patience' must be an integer in \[1, 1000\]; got 0\.5"),
        ("dropout", 1.0, r"'dropout' must be a number in \[0, 0\.9\]; got 1\."),
        ("seed", -1, r"'seed' must be an integer in \[0, 2147483647\]; got -1"),
        ("data_root", 3, r"'data_root' must be a string; got 3"),
    ],
)
def test_config_validation(field, value, pattern):
    from engine.errors import ParamError

    cfg = TrainConfig(dataset="synthetic", backbone="tiny", **{field: value})
    with pytest.raises(ParamError, match=pattern):
        cfg.validate()


def test_every_declared_setting_has_an_option_with_its_declared_default():
    from engine.params import params_of
    from engine.train import build_parser

    parser = build_parser()
    options = {a.dest: a for a in parser._actions if a.option_strings}
    declared = params_of(TrainConfig)
    assert {p.name for p in declared} == {f for f in TrainConfig.__dataclass_fields__} - {"extra"}
    for p in declared:
        assert p.name in options, p.name
        assert options[p.name].default == p.default, p.name
        assert (options[p.name].help or "") == p.help, p.name
        assert options[p.name].required == p.required, p.name
    # the option names of the hand-written parser are kept
    flags = {f for a in options.values() for f in a.option_strings}
    assert {"--lr", "--fine-tune", "--no-class-weights", "--augment", "--no-augment"} <= flags
    assert {
        "--batch-size",
        "--input-size",
        "--limit-train",
        "--checkpoint-dir",
        "--resume",
    } <= flags
    args = parser.parse_args(["--dataset", "synthetic", "--backbone", "tiny"])
    assert TrainConfig(**vars(args)) == TrainConfig(dataset="synthetic", backbone="tiny")


def test_unknown_dataset_or_backbone_is_a_clear_cli_error(tmp_path, capsys):
    assert main(["--dataset", "nope", "--backbone", "tiny", "--out", str(tmp_path / "b")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["--dataset", "synthetic", "--backbone", "vgg", "--out", str(tmp_path / "b")]) == 2
    assert "Unknown backbone 'vgg'" in capsys.readouterr().err


@pytest.mark.slow
def test_train_writes_bundle_then_resume_continues(tmp_path):
    out = tmp_path / "bundle"
    assert main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dataset_id"] == "synthetic" and meta["backbone"] == "tiny"
    assert meta["input_size"] == 32
    assert set(meta["data_fingerprints"]) == {"train", "val", "test"}
    assert meta["training"]["split_sizes"] == {"train": 240, "val": 60, "test": 60}
    assert 0.0 <= meta["clean_metrics"]["accuracy"] <= 1.0
    assert len(meta["clean_metrics"]["confusion"]) == len(meta["classes"])
    first = _history(out)
    assert [r["epoch"] for r in first] == ["0"]

    assert main([*QUICK, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    second = _history(out)
    assert [r["epoch"] for r in second] == ["0", "1"]
    assert second[0] == first[0], "resume must not redo a finished epoch"
    assert json.loads((out / "meta.json").read_text())["training"]["epochs_run"] == 2


@pytest.mark.slow
def test_resume_after_kill_loses_no_finished_epoch(tmp_path):
    out = tmp_path / "bundle"
    ckpt = tmp_path / "bundle.ckpt"
    cmd = [
        sys.executable,
        "-m",
        "engine.train",
        *QUICK,
        "--epochs",
        "50",
        "--patience",
        "50",
        "--out",
        str(out),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            state = ckpt / "state.json"
            if state.exists() and json.loads(state.read_text()).get("epoch", -1) >= 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("training never checkpointed two epochs")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = json.loads((ckpt / "state.json").read_text())["epoch"]
    assert not out.exists(), "a killed run must not leave a half-written bundle"
    assert (
        main([*QUICK, "--epochs", str(done + 2), "--patience", "50", "--out", str(out), "--resume"])
        == 0
    )
    epochs = [int(r["epoch"]) for r in _history(out)]
    assert epochs == list(range(done + 2))


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    (ckpt / "last.keras").write_bytes(b"")
    (ckpt / "state.json").write_text(json.dumps({"config_key": "other", "epoch": 0}))
    rc = main(
        [
            *QUICK,
            "--epochs",
            "2",
            "--checkpoint-dir",
            str(ckpt),
            "--out",
            str(tmp_path / "b"),
            "--resume",
        ]
    )
    assert rc == 2
    assert "made with other settings" in capsys.readouterr().err


def test_chest_xrays_are_never_mirrored_by_augmentation():
    from engine.datasets import REGISTRY

    chest = [k for k in REGISTRY if k.startswith(("chest_xray", "pneumoniamnist"))]
    assert chest and not any(REGISTRY[k].mirror_ok for k in chest)
    assert REGISTRY["ham10000"].mirror_ok


def test_precise_batchnorm_makes_inference_match_batch_statistics():
    import keras

    from engine.train import recalibrate_batchnorm

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.99)(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    bn = model.layers[2]
    images = np.random.default_rng(0).uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    before = np.asarray(model(images, training=False))
    expected = np.asarray(model(images, training=True))  # batch statistics
    bn.moving_mean.assign(np.full(4, 50.0, "float32"))  # stale statistics
    assert recalibrate_batchnorm(model, images, batch_size=16) == 1
    after = np.asarray(model(images, training=False))
    np.testing.assert_allclose(after, expected, atol=1e-2)
    assert not np.allclose(before, expected, atol=1e-2)
    assert bn.momentum == 0.99, "momentum is restored"


def test_a_dataset_with_sick_classes_gets_a_validation_chosen_threshold(tmp_path, monkeypatch):
    """The bundle records the patient view's threshold, chosen on the validation split."""
    import dataclasses

    from engine.datasets import registry

    out = tmp_path / "plain"
    assert main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["decision"] == {}, "no sick classes"
    spec = registry.REGISTRY["synthetic"]
    sick = dataclasses.replace(spec, positive=(spec.classes[-1],))
    monkeypatch.setitem(registry.REGISTRY, "synthetic", sick)
    out = tmp_path / "sick"
    assert main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    d = json.loads((out / "meta.json").read_text())["decision"]
    assert d["chosen_on"] == "val" and d["criterion"] == "youden"
    assert 0.0 <= d["threshold"] <= 1.0
    assert (d["val"]["n_images"], d["test"]["n_images"]) == (60, 60)
    assert "sensitivity" in d["test_argmax"]


def test_augmentation_keeps_anatomy_where_it_has_an_up():
    from engine.train import MAX_LIGHT, _augment

    x = np.zeros((40, 48, 48, 3), np.uint8)
    x[:, :, :24] = 200  # the left half bright: a mirror or a large rotation would show
    x[:, :24] += 30  # and the top brighter than the bottom
    out = _augment(x, np.random.default_rng(0), flip=False)
    assert out.shape == x.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, _augment(x, np.random.default_rng(0), flip=False))
    left, right = out[:, :, :24].mean(axis=(1, 2, 3)), out[:, :, 24:].mean(axis=(1, 2, 3))
    top, bottom = out[:, :24].mean(axis=(1, 2, 3)), out[:, 24:].mean(axis=(1, 2, 3))
    assert (left > right).all() and (top > bottom).all(), "no mirror, no flip, a small tilt"
    assert not np.array_equal(out[0], out[1]), "each image gets its own draw"
    # exposure jitter stays within its declared range (plus the shifted-in edges)
    assert np.abs(out.mean(axis=(1, 2, 3)) / x.mean() - 1).max() < 2 * MAX_LIGHT + 0.1
    # dermoscopy: any angle and both flips
    free = _augment(x, np.random.default_rng(0), flip=True, rotate=True)
    swapped = free[:, :, :24].mean(axis=(1, 2, 3)) < free[:, :, 24:].mean(axis=(1, 2, 3))
    upside = free[:, :24].mean(axis=(1, 2, 3)) < free[:, 24:].mean(axis=(1, 2, 3))
    assert 0 < swapped.sum() < 40 and 0 < upside.sum() < 40
    from engine.datasets import REGISTRY

    assert REGISTRY["ham10000"].rotate_ok and not REGISTRY["chest_xray"].rotate_ok
