"""The model worker's messages, turns and API, without starting a child process."""

from __future__ import annotations

import dataclasses
import inspect
import threading
import time

import pytest

from app.worker import ModelWorker, protocol
from app.worker.protocol import Failed
from app.worker.scheduling import FairLock
from app.worker.server import _Server
from engine import lab
from engine.errors import ModelError, ParamError

# --------------------------------------------------------------------------- FairLock


def _queue_up(lock: FairLock, name: str, order: list[str]) -> threading.Thread:
    """A thread that waits for ``lock``, notes its turn and lets go; returns once it waits."""

    def take() -> None:
        with lock:
            order.append(name)

    before = lock.waiting
    thread = threading.Thread(target=take)
    thread.start()
    deadline = time.monotonic() + 10
    while lock.waiting == before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert lock.waiting == before + 1
    return thread


def test_fair_lock_serves_waiters_in_the_order_they_came():
    lock, order = FairLock(), []
    lock.acquire()
    threads = [_queue_up(lock, name, order) for name in "abc"]
    lock.release()
    for t in threads:
        t.join(10)
    assert order == ["a", "b", "c"] and not lock.locked()


def test_fair_lock_hands_over_so_the_releaser_cannot_grab_it_back():
    lock, order = FairLock(), []
    lock.acquire()
    waiter = _queue_up(lock, "other session", order)
    lock.release()  # handed to the waiter, even though this thread asks again at once
    with lock:
        order.append("sweep's next batch")
    waiter.join(10)
    assert order == ["other session", "sweep's next batch"]


def test_fair_lock_timeout_leaves_the_queue():
    lock = FairLock()
    lock.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
    t.start()
    t.join(10)
    assert got == [False] and lock.waiting == 0
    lock.release()
    assert lock.acquire(timeout=0) and lock.locked()
    lock.release()
    with pytest.raises(RuntimeError, match="unheld"):
        lock.release()


# --------------------------------------------------------------------------- messages


def test_every_message_is_a_frozen_dataclass_with_its_own_kind():
    classes = [
        c
        for c in vars(protocol).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and "kind" in vars(c)
    ]
    assert {c.kind: c for c in classes} == protocol.MESSAGES
    assert len(protocol.MESSAGES) == len(classes) == 11
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.Progress(1, 2, "x").done = 3
    requests = [c for c in classes if issubclass(c, protocol.Request)]
    assert {c.kind for c in requests} == {"load", "predict", "lab", "sweep_batch", "ping"}


def test_the_child_refuses_what_is_not_a_declared_request():
    server = _Server(None, {"threads": 1, "warmup_batches": (1,), "max_models": 1})
    for bogus in (("request", "lab", (), {}), protocol.Ok(1), object()):
        answer = server._answer(bogus)
        assert isinstance(answer, protocol.Failed) and answer.engine_error
        assert "has no request kind" in answer.message
        assert answer.classes[0] == ("engine.errors", "ParamError")


def test_failures_are_raised_as_their_class_or_as_model_errors():
    sent = Failed.from_exception(ParamError("bad"))
    assert sent.engine_error and sent.classes[:2] == (
        ("engine.errors", "ParamError"),
        ("engine.errors", "EngineError"),
    )
    assert type(sent.exception()) is ParamError
    engine = Failed(
        (("engine.errors", "ParamError"), ("builtins", "Exception")), "bad eps", "tb", True
    )
    exc = engine.exception()
    assert type(exc) is ParamError and str(exc) == "bad eps" and exc.worker_traceback == "tb"
    other = Failed((("builtins", "TypeError"),), "nope", "tb2", False).exception()
    assert type(other) is ModelError
    assert str(other) == "The model worker failed: TypeError: nope"


# --------------------------------------------------------------------------- API


def _keywords(fn, skip=()):
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in skip
    }


def test_the_worker_api_mirrors_the_engine_functions():
    """Same keyword parameters and defaults as engine.lab, plus the worker's timeout."""
    assert _keywords(ModelWorker.lab, {"timeout"}) == _keywords(lab.run_lab)
    assert _keywords(ModelWorker.mini_sweep, {"timeout"}) == _keywords(lab.run_mini_sweep)
    for method in (ModelWorker.lab, ModelWorker.mini_sweep, ModelWorker.load, ModelWorker.predict):
        assert "timeout" in inspect.signature(method).parameters
    assert _keywords(lab.run_sweep_batch, {"progress"}).keys() == {
        f.name for f in dataclasses.fields(protocol.SweepBatchRequest)
    } - {"bundle_path", "images", "labels", "batch"}
    assert _keywords(lab.run_lab).keys() == {
        f.name for f in dataclasses.fields(protocol.LabRequest)
    } - {"bundle_path", "image"}


def test_the_child_passes_every_lab_option_to_run_lab(monkeypatch):
    """Each LabRequest field reaches run_lab under its own name, the adaptive ones included."""
    seen: dict = {}

    def fake_run_lab(model, classes, image, **kwargs):
        seen.update(model=model, classes=classes, image=image, **kwargs)
        return "result"

    monkeypatch.setattr(lab, "run_lab", fake_run_lab)
    server = _Server(None, {"threads": 1, "warmup_batches": (1,), "max_models": 1})
    monkeypatch.setattr(server, "_entry", lambda path: {"model": "m", "classes": ["a", "b"]})
    names = [f.name for f in dataclasses.fields(protocol.LabRequest)]
    values = {name: f"<{name}>" for name in names}
    values |= {"adaptive": True, "eot_samples": 5}
    assert server.lab(protocol.LabRequest(**values)) == "result"
    assert seen.pop("model") == "m" and seen.pop("classes") == ["a", "b"]
    assert seen == {name: values[name] for name in names if name != "bundle_path"}


def test_the_child_passes_every_sweep_option_to_run_sweep_batch(monkeypatch):
    """Each SweepBatchRequest field reaches run_sweep_batch, the adaptive ones included."""
    seen: dict = {}

    def fake_run_sweep_batch(model, classes, images, labels, batch, **kwargs):
        seen.update(images=images, labels=labels, batch=batch, **kwargs)
        return "part"

    monkeypatch.setattr(lab, "run_sweep_batch", fake_run_sweep_batch)
    server = _Server(None, {"threads": 1, "warmup_batches": (1,), "max_models": 1})
    monkeypatch.setattr(server, "_entry", lambda path: {"model": "m", "classes": ["a", "b"]})
    names = [f.name for f in dataclasses.fields(protocol.SweepBatchRequest)]
    values = {name: f"<{name}>" for name in names}
    values |= {"adaptive": True, "eot_samples": 5}
    assert server.sweep_batch(protocol.SweepBatchRequest(**values)) == "part"
    assert callable(seen.pop("progress"))
    assert seen == {name: values[name] for name in names if name != "bundle_path"}


def test_the_client_sends_the_attacker_with_every_batch(monkeypatch):
    """An adaptive sweep goes as one request per (budget, defence setting), each with the
    attacker; a bad attacker is refused before the first request."""
    import numpy as np

    worker = ModelWorker(start=False)
    sent: list = []

    def fake_request(request, **kwargs):
        sent.append(request)
        return request

    monkeypatch.setattr(worker, "_request", fake_request)
    monkeypatch.setattr(lab, "combine_mini_sweep", lambda parts, y, positive=None: list(parts))
    x = np.zeros((3, 8, 8, 3), np.uint8)
    args = {"attack": "fgsm", "eps_values": [0, 2], "defences": [None, "median"]}
    worker.mini_sweep("b", x, [0, 1, 0], adaptive=True, eot_samples=3, **args)
    assert [(r.batch.eps_index, r.batch.defence_index) for r in sent] == [
        ((0,), (0,)),
        ((0,), (1,)),
        ((1,), (0,)),
        ((1,), (1,)),
    ]
    assert all(r.adaptive is True and r.eot_samples == 3 and r.batch.adaptive for r in sent)
    sent.clear()
    worker.mini_sweep("b", x, [0, 1, 0], **args)
    assert [r.batch.defence_index for r in sent] == [(0, 1), (0, 1)]
    assert all(r.adaptive is False and r.eot_samples is None for r in sent)
    sent.clear()
    with pytest.raises(ParamError, match="'eot_samples' must be"):
        worker.mini_sweep("b", x, [0, 1, 0], adaptive=True, eot_samples=0, **args)
    assert not sent
    worker.close()
