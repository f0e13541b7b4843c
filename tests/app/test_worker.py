"""Tests of the model worker process (:class:`app.worker.ModelWorker`).

One worker (a spawned child that imports TensorFlow: several seconds) is
shared by the whole module; the tests that kill or time out its child run
last. The bundle is an untrained tiny classifier saved to a temporary folder.
"""

from __future__ import annotations

import math
import multiprocessing.spawn
import os
import signal
import sys
import threading
import time
import types

import numpy as np
import pytest

from app.worker import ModelWorker
from app.worker.process import no_main_script
from engine import defences as dfn
from engine import lab
from engine.errors import ImageError, ModelError, ParamError
from engine.threat import adaptive_label

SIZE = 32
CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def worker():
    w = ModelWorker(timeout=60)  # the child imports TensorFlow while the bundle is built
    yield w
    w.close()


def _save(path):
    import keras

    from engine.models import BundleMeta, build_classifier, save_bundle

    keras.utils.set_random_seed(0)
    model = build_classifier("tiny", len(CLASSES), weights="none", input_size=SIZE)
    meta = BundleMeta(
        dataset_id="synthetic",
        classes=CLASSES,
        positive=["triangle"],
        input_size=SIZE,
        backbone="tiny",
        weights="none",
    )
    return save_bundle(model, meta, path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("worker") / "tiny")


@pytest.fixture(scope="module")
def local(bundle):
    """The same bundle loaded in the test process, for reference results."""
    from engine.models import load_bundle

    return load_bundle(bundle)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(40, 216, (45, 60, 3), dtype=np.uint8)


def test_load_reports_the_bundle(worker, bundle):
    info = worker.load(bundle)
    assert info["classes"] == CLASSES and info["positive_indices"] == [2]
    assert info["input_size"] == SIZE and info["input_shape"] == (SIZE, SIZE, 3)
    assert info["path"] == str(bundle.resolve()) and info["meta"]["backbone"] == "tiny"
    assert info["seconds"] > 0 and info["cached"] is False
    again = worker.load(str(bundle))
    assert again["cached"] is True
    assert worker.ping()["models"] == [str(bundle.resolve())]


def test_predict_matches_in_process(worker, bundle, local):
    from engine.gradients import predict

    x = np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    probs = worker.predict(bundle, x)
    assert probs.shape == (5, len(CLASSES))
    np.testing.assert_allclose(probs, predict(local.model, x), atol=1e-5)


def test_lab_matches_in_process(worker, bundle, local, image):
    kwargs = {"attack": "fgsm", "attack_params": {"eps": 8}, "defence": "nlm+bilateral+guided"}
    remote = worker.lab(bundle, image, **kwargs)
    here = lab.run_lab(local.model, CLASSES, image, **kwargs)
    assert isinstance(remote, lab.LabResult)
    np.testing.assert_array_equal(remote.original, here.original)
    # Different thread counts may change float summation order: allow a stray pixel.
    assert np.mean(remote.adversarial != here.adversarial) < 0.01
    np.testing.assert_allclose(remote.pred_clean.probs, here.pred_clean.probs, atol=1e-5)
    assert remote.classes == CLASSES and remote.defence == here.defence
    assert remote.label_source == lab.LABEL_FROM_MODEL
    assert np.abs(remote.adversarial.astype(int) - remote.original.astype(int)).max() <= 8


def test_lab_passes_the_adaptive_attacker_through(worker, bundle, local, image):
    kwargs = {
        "attack": "pgd",
        "attack_params": {"eps": 6, "steps": 2},
        "defence": {"id": "resize_pad", "params": {"min_scale": 0.8}},
        "adaptive": True,
        "eot_samples": 3,
    }
    remote = worker.lab(bundle, image, **kwargs)
    here = lab.run_lab(local.model, CLASSES, image, **kwargs)
    assert remote.adaptive and remote.eot_samples == 3
    assert remote.threat_model == here.threat_model == adaptive_label("exact", eot=3)
    assert np.mean(remote.adversarial != here.adversarial) < 0.01
    transfer = worker.lab(bundle, image, **{**kwargs, "adaptive": False})
    assert not transfer.adaptive and transfer.threat_model == lab.THREAT_TRANSFER
    with pytest.raises(ParamError, match=r"Live lab attacker: 'eot_samples' must be"):
        worker.lab(bundle, image, **{**kwargs, "eot_samples": 99})


def test_engine_errors_keep_class_and_message(worker, bundle, image):
    with pytest.raises(ParamError) as local_err:
        lab.run_lab(None, CLASSES, image, attack="nope")
    with pytest.raises(ParamError) as remote_err:
        worker.lab(bundle, image, attack="nope")
    assert str(remote_err.value) == str(local_err.value)
    assert "Traceback" in remote_err.value.worker_traceback
    with pytest.raises(ImageError, match="uint8 pixels in 0-255"):
        worker.lab(bundle, image.astype(np.float32))
    with pytest.raises(ModelError, match="No model bundle at"):
        worker.load(bundle.parent / "missing")


class BogusDefence(dfn.Defence):
    """A defence that fails with a non-engine error (the child imports it from this module)."""

    TITLE = "Bogus"

    def _filter(self, img: np.ndarray) -> np.ndarray:
        raise TypeError("bogus defence")


def test_other_errors_become_model_errors(worker, bundle, image):
    with pytest.raises(ModelError, match=r"The model worker failed: TypeError: .*bogus") as err:
        worker.lab(bundle, image, defence=BogusDefence())
    assert "TypeError" in err.value.worker_traceback
    assert worker.ping()["pid"] == worker.pid  # the child survived


def test_mini_sweep_streams_progress(worker, bundle):
    x = np.random.default_rng(2).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    calls = []
    rows = worker.mini_sweep(
        bundle,
        x,
        [0, 1, 2, 2],
        attack="fgsm",
        eps_values=[0, 4],
        defences=[None, "median"],
        positive=[2],
        progress=lambda *a: calls.append(a),
    )
    assert len(rows) == 4 and not math.isnan(rows[0]["sensitivity"])
    assert [c[0] for c in calls] == list(range(1, 8)) and all(c[1] == 7 for c in calls)


def test_a_raising_callback_cancels_the_sweep(worker, bundle):
    x = np.zeros((2, SIZE, SIZE, 3), np.uint8)

    def stop(done, total, msg):
        if done == 2:
            raise KeyboardInterrupt("user left")

    pid = worker.pid
    with pytest.raises(KeyboardInterrupt, match="user left"):
        worker.mini_sweep(
            bundle, x, [0, 1], attack="fgsm", eps_values=[1, 2, 3], defences=[None], progress=stop
        )
    assert worker.ping()["pid"] == pid  # same child, and the pipe is in step


def test_a_sweep_of_several_batches_matches_in_process(worker, bundle, local):
    """70 images and two budgets: four batch requests, merged into the same rows."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (70, SIZE, SIZE, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 70)
    settings = {"attack": "fgsm", "eps_values": [0, 4], "defences": [None, "median"]}
    calls = []
    remote = worker.mini_sweep(
        bundle, list(x), y, positive=[2], progress=lambda *a: calls.append(a), **settings
    )
    here = lab.run_mini_sweep(local.model, CLASSES, x, y, positive=[2], **settings)
    assert [c[0] for c in calls] == list(range(1, 2 * 7 + 1))
    assert len(remote) == len(here) == 4
    for r, h in zip(remote, here, strict=True):
        assert r.keys() == h.keys() and r["n_images"] == 70
        assert r["defence_key"] == h["defence_key"] and r["eps"] == h["eps"]
        # Different thread counts may change float summation order: allow one image.
        assert abs(r["accuracy"] - h["accuracy"]) <= 1 / 70
        assert r["mean_confidence"] == pytest.approx(h["mean_confidence"], abs=1e-3)


def test_an_adaptive_sweep_of_several_batches_matches_in_process(worker, bundle, local):
    """70 images, two budgets, three defence settings crafted through each: 12 batch requests."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (70, SIZE, SIZE, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 70)
    pad = {"id": "resize_pad", "params": {"min_scale": 0.8}}
    settings = {
        "attack": "fgsm",
        "eps_values": [0, 4],
        "defences": [None, "median", pad],
        "adaptive": True,
        "eot_samples": 2,
    }
    calls = []
    remote = worker.mini_sweep(
        bundle, list(x), y, positive=[2], progress=lambda *a: calls.append(a), **settings
    )
    here = lab.run_mini_sweep(local.model, CLASSES, x, y, positive=[2], **settings)
    total = 2 * (1 + 2 * 3 * 2)  # per group: the clean pass, then an attack and an evaluation
    assert [c[0] for c in calls] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    assert len(remote) == len(here) == 6
    for r, h in zip(remote, here, strict=True):
        assert r.keys() == h.keys() and r["n_images"] == 70
        assert r["defence_key"] == h["defence_key"] and r["eps"] == h["eps"]
        assert r["threat_model"] == h["threat_model"]
        # Different thread counts may change float summation order: allow one image.
        assert abs(r["accuracy"] - h["accuracy"]) <= 1 / 70
        assert r["mean_confidence"] == pytest.approx(h["mean_confidence"], abs=1e-3)
    assert [r["threat_model"] for r in remote[3:]] == [
        adaptive_label("exact"),
        adaptive_label("bpda-identity"),
        adaptive_label("exact", eot=2),
    ]
    with pytest.raises(ParamError, match=r"Live lab attacker: 'eot_samples' must be"):
        worker.mini_sweep(bundle, x, y, **{**settings, "eot_samples": 99})


def _timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def test_a_lab_click_waits_for_one_sweep_batch_not_the_whole_sweep(worker, bundle, image):
    """Another session's 64-image sweep runs in a thread; the click is served between batches."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (64, SIZE, SIZE, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 64)
    sweep = {"attack": "pgd", "attack_params": {"steps": 10}, "defences": [None, "median"]}
    click = {"attack": "fgsm", "attack_params": {"eps": 4}}
    worker.mini_sweep(bundle, x, y, eps_values=[2], **sweep)  # warm-up
    batch_s = _timed(worker.mini_sweep, bundle, x, y, eps_values=[2], **sweep)  # one batch
    lab_s = _timed(worker.lab, bundle, image, **click)
    started, finished = threading.Event(), []

    def other_session() -> None:
        worker.mini_sweep(
            bundle,
            x,
            y,
            eps_values=[1, 2, 3, 4, 5, 6, 7, 8],
            progress=lambda *a: started.set(),
            **sweep,
        )
        finished.append(time.perf_counter())

    thread = threading.Thread(target=other_session)
    thread.start()
    try:
        assert started.wait(60)  # the sweep's first batch is running
        t0 = time.perf_counter()
        res = worker.lab(bundle, image, **click)
        answered = time.perf_counter()
    finally:
        thread.join(120)
    assert finished and res.linf <= 4
    assert answered < finished[0]  # answered while the sweep still ran
    # At most the batch running when the click came, then the click itself.
    assert answered - t0 < 3 * (batch_s + lab_s)


def test_a_changed_bundle_is_reloaded(worker, tmp_path):
    path = _save(tmp_path / "b")
    assert worker.load(path)["cached"] is False
    time.sleep(0.01)
    _save(path)
    assert worker.load(path)["cached"] is False
    assert worker.load(path)["cached"] is True


def test_memory_is_reported(worker):
    rss = worker.memory_rss_mb()
    assert math.isfinite(rss) and rss > 10


def test_restart_after_the_child_is_killed(worker, bundle, image):
    old = worker.pid
    restarts = worker.restarts
    os.kill(old, signal.SIGKILL)
    res = worker.lab(bundle, image, attack="fgsm", attack_params={"eps": 2})
    assert res.linf <= 2
    assert worker.pid not in (None, old) and worker.restarts == restarts + 1


def test_timeout_stops_and_restarts_the_child(worker, bundle, image):
    worker.load(bundle)
    old = worker.pid
    with pytest.raises(ModelError, match="did not answer within"):
        worker.lab(bundle, image, attack="pgd", attack_params={"steps": 1000}, timeout=0.05)
    assert worker.pid not in (None, old)
    assert worker.predict(bundle, image[None, :SIZE, :SIZE]).shape == (1, len(CLASSES))


def test_closed_worker_refuses_requests():
    w = ModelWorker(start=False)
    assert math.isnan(w.memory_rss_mb()) and not w.is_alive()
    w.close()
    with pytest.raises(ModelError, match="has been closed"):
        w.ping()


def test_bad_settings_are_refused():
    with pytest.raises(ParamError, match="'timeout' must be a positive number"):
        ModelWorker(timeout=0, start=False)
    with pytest.raises(ParamError, match="'threads' must be a positive integer"):
        ModelWorker(threads=0, start=False)


def test_spawn_does_not_rerun_the_main_script(monkeypatch, tmp_path):
    """Streamlit installs the page as ``__main__``; the child must not execute it."""
    page = types.ModuleType("__main__")
    page.__file__ = str(tmp_path / "page.py")
    monkeypatch.setitem(sys.modules, "__main__", page)
    with no_main_script():
        data = multiprocessing.spawn.get_preparation_data("worker")
    assert "init_main_from_path" not in data and "init_main_from_name" not in data
    assert sys.modules["__main__"] is page
