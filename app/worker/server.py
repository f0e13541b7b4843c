"""The model worker's child process: a bundle cache and one handler per request kind.

This module runs in the child only (:func:`child_main` is the process's
entry point); it imports TensorFlow when the child starts, never on import.
Every request arrives as a :mod:`app.worker.protocol` message and is answered
with one (see that module for the cycle).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from app.worker import protocol as msg
from engine.errors import ModelError, ParamError

if TYPE_CHECKING:
    import keras

    from engine.lab import LabResult, SweepPart

__all__ = ["WorkerConfig", "child_main"]

log = logging.getLogger(__name__)


class WorkerConfig(TypedDict):
    """What the parent tells the child at start-up."""

    threads: int
    warmup_batches: tuple[int, ...]
    max_models: int


class _Cancelled(Exception):
    """Raised inside the child when the parent asked it to stop a request."""


class _Entry(TypedDict):
    model: keras.Model
    classes: list[str]
    info: dict[str, Any]
    stamp: tuple[int, int] | None


def _bundle_key(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _stamp(key: str) -> tuple[int, int] | None:
    from engine.models import BUNDLE_MODEL

    try:
        st = (Path(key) / BUNDLE_MODEL).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class _Server:
    """The child's request loop."""

    def __init__(
        self,
        conn: Connection,
        config: WorkerConfig,
        startup_error: BaseException | None = None,
    ) -> None:
        self.conn = conn
        self.config = config
        self.startup_error = startup_error
        self.models: OrderedDict[str, _Entry] = OrderedDict()
        self.handlers: dict[str, Callable[[Any], object]] = {
            msg.LoadRequest.kind: self.load,
            msg.PredictRequest.kind: self.predict,
            msg.LabRequest.kind: self.lab,
            msg.SweepBatchRequest.kind: self.sweep_batch,
            msg.PingRequest.kind: self.ping,
        }

    # -- bundles -----------------------------------------------------------------------
    def _entry(self, path: str) -> _Entry:
        """The cached bundle at ``path``, loaded (and warmed up) if needed."""
        key = _bundle_key(path)
        stamp = _stamp(key)
        entry = self.models.get(key)
        if entry is not None and entry["stamp"] == stamp:
            self.models.move_to_end(key)
            entry["info"]["cached"] = True
            return entry
        if entry is not None:  # the model file changed on disk: reload it
            del self.models[key]
        entry = self._load_entry(key, stamp)
        self.models[key] = entry
        while len(self.models) > self.config["max_models"]:
            old, _ = self.models.popitem(last=False)
            log.info("model worker: unloading %s", old)
            gc.collect()
        return entry

    def _load_entry(self, key: str, stamp: tuple[int, int] | None) -> _Entry:
        from engine.gradients import compiled
        from engine.lab import run_lab
        from engine.lab.inputs import input_hw
        from engine.models import load_bundle

        t0 = time.perf_counter()
        bundle = load_bundle(key)
        t_load = time.perf_counter() - t0
        comp = compiled(bundle.model)
        classes = list(bundle.meta.classes)
        if len(classes) != comp.num_classes:
            raise ModelError(
                f"The bundle at {key} names {len(classes)} classes but its model has "
                f"{comp.num_classes} outputs."
            )
        t1 = time.perf_counter()
        comp.warmup(self.config["warmup_batches"])
        h, w = input_hw(comp)
        # One dummy lab run, so the first click does not pay for any first call.
        run_lab(
            bundle.model,
            classes,
            np.full((h, w, 3), 128, np.uint8),
            attack="fgsm",
            attack_params={"eps": 2.0},
            defence=None,
        )
        t_warm = time.perf_counter() - t1
        info = {
            "path": key,
            "meta": asdict(bundle.meta),
            "classes": classes,
            "positive_indices": bundle.meta.positive_indices,
            "input_size": h,
            "input_shape": (h, w, 3),
            "seconds": round(time.perf_counter() - t0, 3),
            "load_seconds": round(t_load, 3),
            "warmup_seconds": round(t_warm, 3),
            "cached": False,
        }
        return {"model": bundle.model, "classes": classes, "info": info, "stamp": stamp}

    # -- one handler per request kind ----------------------------------------------------
    def load(self, req: msg.LoadRequest) -> dict[str, Any]:
        return dict(self._entry(req.bundle_path)["info"])

    def predict(self, req: msg.PredictRequest) -> np.ndarray:
        from engine.gradients import predict
        from engine.lab import image_batch

        entry = self._entry(req.bundle_path)
        h, w = entry["info"]["input_shape"][:2]
        return predict(entry["model"], image_batch(req.images, h, w))

    def lab(self, req: msg.LabRequest) -> LabResult:
        from engine.lab import run_lab

        entry = self._entry(req.bundle_path)
        return run_lab(
            entry["model"],
            entry["classes"],
            req.image,
            label=req.label,
            attack=req.attack,
            attack_params=req.attack_params,
            defence=req.defence,
            gain=req.gain,
            adaptive=req.adaptive,
            eot_samples=req.eot_samples,
        )

    def sweep_batch(self, req: msg.SweepBatchRequest) -> SweepPart:
        from engine.lab import run_sweep_batch

        entry = self._entry(req.bundle_path)

        def progress(done: int, total: int, message: str) -> None:
            self.conn.send(msg.Progress(int(done), int(total), str(message)))
            self._check_cancel()

        return run_sweep_batch(
            entry["model"],
            entry["classes"],
            req.images,
            req.labels,
            req.batch,
            attack=req.attack,
            eps_values=req.eps_values,
            defences=req.defences,
            attack_params=req.attack_params,
            adaptive=req.adaptive,
            eot_samples=req.eot_samples,
            progress=progress,
        )

    def ping(self, req: msg.PingRequest) -> dict[str, Any]:
        import tensorflow as tf

        return {"pid": os.getpid(), "models": list(self.models), "tensorflow": tf.__version__}

    # -- loop ------------------------------------------------------------------------------
    def _check_cancel(self) -> None:
        while self.conn.poll():
            control = self.conn.recv()
            if isinstance(control, msg.Cancel):
                raise _Cancelled
            if isinstance(control, msg.Close):
                raise SystemExit(0)

    def _answer(self, request: object) -> msg.Ok | msg.Failed | msg.Cancelled:
        try:
            if self.startup_error is not None:
                raise self.startup_error
            kind = getattr(request, "kind", None)
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None or not isinstance(request, msg.Request):
                raise ParamError(f"The model worker has no request kind {kind!r}.")
            return msg.Ok(handler(request))
        except _Cancelled:
            return msg.Cancelled()
        except Exception as exc:  # reported to the parent, which re-raises it
            return msg.Failed.from_exception(exc)

    def serve(self) -> None:
        while True:
            try:
                request = self.conn.recv()
            except (EOFError, OSError):
                return  # the parent went away
            if isinstance(request, msg.Close):
                return
            if isinstance(request, msg.Cancel):
                continue  # arrived after the request it meant had already finished
            answer = self._answer(request)
            try:
                self.conn.send(answer)
            except (EOFError, OSError):
                return
            except Exception as exc:  # e.g. a result that cannot be pickled
                self.conn.send(msg.Failed.from_exception(exc))


def child_main(conn: Connection, config: WorkerConfig) -> None:
    """Entry point of the worker process: set TensorFlow up, then serve until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keras writes ~/.keras/keras.json on import; a hosted app writes only to a temp dir.
    # (The worker loads saved bundles only, so it needs no cached ImageNet weights.)
    os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), "robustlens-keras"))
    startup_error = None
    try:
        import tensorflow as tf

        threads = int(config["threads"])
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except Exception as exc:  # reported as the answer to every request
        startup_error = exc
    _Server(conn, config, startup_error).serve()
