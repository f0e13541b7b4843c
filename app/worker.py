"""A separate process that owns the models, so the dashboard never imports TensorFlow.

Why a worker process
--------------------
Streamlit calls ``keras.backend.clear_session()`` after every script run when
``keras`` is in ``sys.modules``, which throws away every compiled function and
warmed-up kernel; and TensorFlow plus a model or two weigh hundreds of MB. So
the dashboard keeps TensorFlow out of its own process: a :class:`ModelWorker`
starts one child process (``multiprocessing`` context ``"spawn"``, daemon)
that imports TensorFlow, loads bundles with :func:`engine.models.load_bundle`,
warms them up, and answers requests over a ``multiprocessing`` pipe. Results
(:class:`engine.lab.LabResult`, arrays, dicts) come back pickled.

Importing this module never imports TensorFlow or Keras.

Behaviour
---------
* **One request at a time.** A ``threading.Lock`` serialises requests, so one
  worker can be shared by every dashboard session (``st.cache_resource``).
* **Errors.** An :class:`~engine.errors.EngineError` raised in the child is
  raised again in the caller as the same class (or its nearest
  ``engine.errors`` base class when the class is not importable here without
  TensorFlow) with the same message. Any other exception becomes
  :class:`~engine.errors.ModelError` ``"The model worker failed: <type>:
  <message>"``. Either way the child's traceback text is in the exception's
  ``worker_traceback`` attribute, for logs.
* **Crashes.** If the child has died, it is restarted and the request is sent
  again, once; if it dies again, :class:`~engine.errors.ModelError` says so.
  Bundles are reloaded on demand after a restart.
* **Time limits.** A request fails with :class:`~engine.errors.ModelError`
  when the child stays silent for longer than its timeout (progress messages
  count as signs of life); the child is then killed and restarted.
* **Cancellation.** When a ``progress`` callback raises (for example
  Streamlit's rerun exception when the user changes a widget), the child is
  asked to stop after its current unit of work; the worker waits for it and
  then re-raises the callback's exception.
* **Shutdown.** :meth:`ModelWorker.close` (also run at interpreter exit)
  stops the child; the child also exits by itself when its parent goes away.

Example
-------
>>> worker = ModelWorker()                                     # doctest: +SKIP
>>> info = worker.load("assets/models/chest_xray__mobilenet_v3_large")  # doctest: +SKIP
>>> res = worker.lab(info["path"], image, attack="fgsm", attack_params={"eps": 4},
...                  defence="nlm+bilateral+guided")           # doctest: +SKIP
>>> rows = worker.mini_sweep(info["path"], images, labels, attack="fgsm",
...                          eps_values=[0, 2, 4], defences=[None, "nlm"],
...                          progress=print)                   # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import math
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from engine import errors
from engine.errors import EngineError, ModelError, ParamError

__all__ = [
    "DEFAULT_LOAD_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WARMUP_BATCHES",
    "ModelWorker",
]

log = logging.getLogger(__name__)

#: Seconds a request may wait for a sign of life from the child.
DEFAULT_TIMEOUT = 120.0
#: Seconds allowed for a request that has to load a bundle first (and, for the
#: first one, import TensorFlow in the child).
DEFAULT_LOAD_TIMEOUT = 300.0
#: Batch sizes traced and run once when a bundle is loaded (the lab uses 1 to 3).
DEFAULT_WARMUP_BATCHES: tuple[int, ...] = (1, 2, 4)

# Message kinds on the pipe (child -> parent).
_OK = "ok"
_ERROR = "error"
_PROGRESS = "progress"
_CANCELLED = "cancelled"
# Control messages (parent -> child) outside the request/answer cycle.
_CANCEL = "cancel"
_CLOSE = "close"

ProgressFn = Callable[[int, int, str], None]


class _Cancelled(Exception):
    """Raised inside the child when the parent asked it to stop a request."""


# =========================================================================== child side


class _Server:
    """The child's request loop: a bundle cache and one handler per operation."""

    def __init__(
        self, conn: Any, config: dict[str, Any], startup_error: BaseException | None = None
    ) -> None:
        self.conn = conn
        self.config = config
        self.startup_error = startup_error
        self.models: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.handlers: dict[str, Callable[..., Any]] = {
            "load": self.load,
            "predict": self.predict,
            "lab": self.lab,
            "mini_sweep": self.mini_sweep,
            "ping": self.ping,
        }

    # -- bundles -----------------------------------------------------------------------
    @staticmethod
    def _key(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    @staticmethod
    def _stamp(key: str) -> tuple[int, int] | None:
        from engine.models import BUNDLE_MODEL

        try:
            st = (Path(key) / BUNDLE_MODEL).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _entry(self, path: str) -> dict[str, Any]:
        """The cached bundle at ``path``, loaded (and warmed up) if needed."""
        key = self._key(path)
        stamp = self._stamp(key)
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

    def _load_entry(self, key: str, stamp: tuple[int, int] | None) -> dict[str, Any]:
        from engine.gradients import compiled
        from engine.lab import run_lab
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
        h, w = int(comp.input_shape[0]), int(comp.input_shape[1])
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

    # -- operations ----------------------------------------------------------------------
    def load(self, bundle_path: str) -> dict[str, Any]:
        return dict(self._entry(bundle_path)["info"])

    def predict(self, bundle_path: str, images: Any) -> np.ndarray:
        from engine.gradients import predict
        from engine.lab import _batch

        entry = self._entry(bundle_path)
        h, w = entry["info"]["input_shape"][:2]
        return predict(entry["model"], _batch(images, h, w))

    def lab(self, bundle_path: str, image: np.ndarray, **kwargs: Any) -> Any:
        from engine.lab import run_lab

        entry = self._entry(bundle_path)
        return run_lab(entry["model"], entry["classes"], image, **kwargs)

    def mini_sweep(self, bundle_path: str, images: Any, labels: Any, **kwargs: Any) -> Any:
        from engine.lab import run_mini_sweep

        entry = self._entry(bundle_path)

        def progress(done: int, total: int, message: str) -> None:
            self.conn.send((_PROGRESS, int(done), int(total), str(message)))
            self._check_cancel()

        return run_mini_sweep(
            entry["model"], entry["classes"], images, labels, progress=progress, **kwargs
        )

    def ping(self) -> dict[str, Any]:
        import tensorflow as tf

        return {"pid": os.getpid(), "models": list(self.models), "tensorflow": tf.__version__}

    # -- loop ------------------------------------------------------------------------------
    def _check_cancel(self) -> None:
        while self.conn.poll():
            msg = self.conn.recv()
            if msg and msg[0] == _CANCEL:
                raise _Cancelled
            if msg and msg[0] == _CLOSE:
                raise SystemExit(0)

    def _error(self, exc: BaseException) -> tuple[Any, ...]:
        mro = [
            (c.__module__, c.__qualname__)
            for c in type(exc).__mro__
            if issubclass(c, BaseException)
        ]
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return (_ERROR, mro, str(exc), tb, isinstance(exc, EngineError))

    def serve(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return  # the parent went away
            if not msg:
                continue
            kind = msg[0]
            if kind == _CLOSE:
                return
            if kind == _CANCEL:
                continue  # arrived after the request it meant had already finished
            op, args, kwargs = msg[1], msg[2], msg[3]
            handler = self.handlers.get(op)
            try:
                if self.startup_error is not None:
                    raise self.startup_error
                if handler is None:
                    raise ParamError(f"The model worker has no operation {op!r}.")
                answer: tuple[Any, ...] = (_OK, handler(*args, **kwargs))
            except _Cancelled:
                answer = (_CANCELLED,)
            except Exception as exc:  # reported to the parent, which re-raises it
                answer = self._error(exc)
            try:
                self.conn.send(answer)
            except (EOFError, OSError):
                return
            except Exception as exc:  # e.g. a result that cannot be pickled
                self.conn.send(self._error(exc))


def _child_main(conn: Any, config: dict[str, Any]) -> None:
    """Entry point of the worker process."""
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


# =========================================================================== parent side

_live_workers: weakref.WeakSet[ModelWorker] = weakref.WeakSet()
_main_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    for worker in list(_live_workers):
        with contextlib.suppress(Exception):
            worker.close()


@contextlib.contextmanager
def _no_main_script() -> Iterator[None]:
    """Hide ``__main__`` while a spawn child starts, so it does not re-run the main script.

    A spawn child normally re-imports the parent's main script. Inside
    Streamlit, ``sys.modules["__main__"]`` is the page being run, and the
    child would execute the whole page. The worker's entry point lives in this
    module, so the child needs nothing from ``__main__``.
    """
    with _main_lock:
        saved = sys.modules.get("__main__")
        stub = types.ModuleType("__main__")
        sys.modules["__main__"] = stub
        try:
            yield
        finally:
            if sys.modules.get("__main__") is stub and saved is not None:
                sys.modules["__main__"] = saved


def _exception_class(mro: Sequence[tuple[str, str]], engine_error: bool) -> type[BaseException]:
    """The first class of the child's exception MRO available here without new imports."""
    if not engine_error:
        return ModelError
    for module, name in mro:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None and "." not in name else None
        if isinstance(cls, type) and issubclass(cls, EngineError):
            return cls
    return errors.EngineError


def _rss_mb(pid: int | None) -> float:
    if pid is None:
        return math.nan
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


class _ChildDied(Exception):
    """The child process ended (or its pipe broke) during a request."""


class _TimedOut(Exception):
    """The child stayed silent for longer than the request's timeout."""


class _CallbackRaised(Exception):
    """The caller's progress callback raised; the child has finished the request."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


class ModelWorker:
    """Runs models in a child process and answers lab, predict and sweep requests.

    Parameters
    ----------
    timeout : float, default=120
        Seconds a request may wait for any sign of life from the child
        (progress messages count); then the child is killed and restarted
        and :class:`~engine.errors.ModelError` is raised.
    load_timeout : float, default=300
        The same for a request that must first load a bundle (and, on a
        fresh child, import TensorFlow).
    threads : int, default=2
        TensorFlow intra-op (and inter-op) threads in the child.
    warmup_batches : sequence of int, default=(1, 2, 4)
        Batch sizes traced and run once per bundle at load time.
    max_models : int, default=2
        Bundles kept loaded in the child; the least recently used goes first.
    start : bool, default=True
        Start the child now (it imports TensorFlow while the caller carries
        on); otherwise on the first request.

    Notes
    -----
    Every method that takes a bundle path loads it first if needed (so calling
    :meth:`load` is optional, but it is where the loading time is best paid).
    Paths are resolved, and a bundle whose ``model.keras`` changed on disk is
    reloaded.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
        threads: int = 2,
        warmup_batches: Sequence[int] = DEFAULT_WARMUP_BATCHES,
        max_models: int = 2,
        start: bool = True,
    ) -> None:
        for name, value in (("timeout", timeout), ("load_timeout", load_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ParamError(f"ModelWorker: '{name}' must be a positive number; got {value!r}.")
        for name, value in (("threads", threads), ("max_models", max_models)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamError(
                    f"ModelWorker: '{name}' must be a positive integer; got {value!r}."
                )
        self.timeout = float(timeout)
        self.load_timeout = float(load_timeout)
        self._config = {
            "threads": threads,
            "warmup_batches": tuple(int(b) for b in warmup_batches),
            "max_models": max_models,
        }
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._proc: Any = None
        self._conn: Any = None
        self._loaded: set[str] = set()
        self._closed = False
        self.restarts = 0
        _live_workers.add(self)
        if start:
            with self._locked():
                self._start()

    # -- process management ------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:
            raise ModelError(
                "The model worker was called again from inside one of its own progress "
                "callbacks; wait for the current request to finish."
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    def _start(self) -> None:
        if self._closed:
            raise ModelError("The model worker has been closed.")
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_child_main,
            args=(child_conn, dict(self._config)),
            name="robustlens-model-worker",
            daemon=True,
        )
        with _no_main_script():
            proc.start()
        child_conn.close()  # so that the child's death reads as EOF here
        self._proc, self._conn = proc, parent_conn
        self._loaded = set()
        log.info("model worker started (pid %s)", proc.pid)

    def _stop(self, *, graceful: bool) -> None:
        proc, conn = self._proc, self._conn
        self._proc, self._conn = None, None
        self._loaded = set()
        if proc is None:
            return
        if graceful and proc.is_alive():
            with contextlib.suppress(Exception):
                conn.send((_CLOSE,))
            proc.join(2.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)
        with contextlib.suppress(Exception):
            conn.close()

    @property
    def pid(self) -> int | None:
        """Process id of the child, or ``None`` when none is running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.is_alive() else None

    def is_alive(self) -> bool:
        """Whether the child process is running."""
        return self.pid is not None

    # -- the request cycle -------------------------------------------------------------
    def _wait(self, timeout: float) -> Any:
        """The next message from the child; raise on silence or death."""
        deadline = time.monotonic() + timeout
        conn, proc = self._conn, self._proc
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _TimedOut
            try:
                if conn.poll(min(left, 1.0)):
                    return conn.recv()
            except (EOFError, OSError) as exc:
                raise _ChildDied from exc
            if not proc.is_alive() and not conn.poll(0):
                raise _ChildDied

    def _exchange(
        self,
        op: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
        progress: ProgressFn | None,
    ) -> Any:
        try:
            self._conn.send(("request", op, args, kwargs))
        except (EOFError, OSError) as exc:  # BrokenPipeError is an OSError
            raise _ChildDied from exc
        pending: BaseException | None = None
        while True:
            try:
                msg = self._wait(timeout)
            except (_ChildDied, _TimedOut):
                if pending is None:
                    raise
                self._stop(graceful=False)  # never re-run a request its caller gave up on
                raise _CallbackRaised(pending) from None
            kind = msg[0]
            if kind == _PROGRESS:
                if progress is not None and pending is None:
                    try:
                        progress(msg[1], msg[2], msg[3])
                    except BaseException as exc:  # re-raised once the child has stopped
                        pending = exc
                        with contextlib.suppress(EOFError, OSError):
                            self._conn.send((_CANCEL,))
                continue
            if pending is not None:
                raise _CallbackRaised(pending)
            if kind == _OK:
                return msg[1]
            if kind == _CANCELLED:
                raise ModelError(f"The model worker's {op!r} request was cancelled.")
            _, mro, message, tb, engine_error = msg
            cls = _exception_class(mro, engine_error)
            if cls is ModelError and not engine_error:
                exc = ModelError(f"The model worker failed: {mro[0][1]}: {message}")
            else:
                exc = cls(message)
            exc.worker_traceback = tb  # type: ignore[attr-defined]
            raise exc

    def _request(
        self,
        op: str,
        *args: Any,
        bundle: str | None = None,
        timeout: float | None = None,
        progress: ProgressFn | None = None,
        **kwargs: Any,
    ) -> Any:
        with self._locked():
            if self._closed:
                raise ModelError("The model worker has been closed.")
            key = str(Path(bundle).expanduser().resolve()) if bundle is not None else None
            last_exit: int | None = None
            for attempt in range(2):
                if self._proc is None or not self._proc.is_alive():
                    if self._proc is not None:
                        last_exit = self._proc.exitcode
                        log.warning("model worker died (exit code %s); restarting", last_exit)
                        self._stop(graceful=False)
                        self.restarts += 1
                    self._start()
                if timeout is not None:
                    limit = float(timeout)
                elif key is not None and key not in self._loaded:
                    limit = self.load_timeout
                else:
                    limit = self.timeout
                try:
                    result = self._exchange(op, args, kwargs, limit, progress)
                except _ChildDied:
                    if self._closed:
                        raise ModelError("The model worker has been closed.") from None
                    proc = self._proc
                    if proc is not None:
                        proc.join(1.0)
                        last_exit = proc.exitcode
                    if attempt == 0:
                        continue  # restart at the top of the loop and try once more
                    self._stop(graceful=False)
                    raise ModelError(
                        f"The model worker stopped unexpectedly (exit code {last_exit}) "
                        f"twice while handling {op!r}; it will start again on the next "
                        "request. The machine may be out of memory, or the model file "
                        "may be damaged."
                    ) from None
                except _TimedOut:
                    self._stop(graceful=False)
                    self.restarts += 1
                    self._start()  # it imports TensorFlow while the caller carries on
                    raise ModelError(
                        f"The model worker did not answer within {limit:g} s (request "
                        f"{op!r}); it was stopped and restarted."
                    ) from None
                except _CallbackRaised as exc:
                    raise exc.original from None
                except EngineError:
                    raise
                except BaseException:
                    # Interrupted in mid-exchange: the pipe's state is unknown.
                    self._stop(graceful=False)
                    raise
                if key is not None:
                    self._loaded.add(key)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    # -- public API ----------------------------------------------------------------------
    def load(self, bundle_path: str | os.PathLike, *, timeout: float | None = None) -> dict:
        """Load (or find in the cache) a bundle and warm it up.

        Parameters
        ----------
        bundle_path : str or path
            Folder holding ``model.keras`` and ``meta.json``.
        timeout : float, optional
            Overrides the worker's timeout for this call.

        Returns
        -------
        dict
            ``path`` (resolved, the key to use in later calls), ``meta``
            (:class:`engine.models.BundleMeta` as a dict), ``classes``,
            ``positive_indices``, ``input_size`` (side in pixels),
            ``input_shape``, ``seconds`` (load and warm-up; the time of the
            first load even when ``cached``), ``load_seconds``,
            ``warmup_seconds``, ``cached`` (already loaded before this call).
        """
        return self._request("load", str(bundle_path), bundle=str(bundle_path), timeout=timeout)

    def predict(
        self, bundle_path: str | os.PathLike, images: Any, *, timeout: float | None = None
    ) -> np.ndarray:
        """Class probabilities of a batch.

        Parameters
        ----------
        bundle_path : str or path
            The bundle.
        images : np.ndarray or list of np.ndarray
            uint8 batch ``(N, H, W, 3)`` or list of uint8 images; images not
            at the model's input size are resized.
        timeout : float, optional
            Overrides the worker's timeout for this call.

        Returns
        -------
        np.ndarray
            ``(N, K)`` float64 probabilities.
        """
        return self._request(
            "predict", str(bundle_path), images, bundle=str(bundle_path), timeout=timeout
        )

    def lab(
        self,
        bundle_path: str | os.PathLike,
        image: np.ndarray,
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """:func:`engine.lab.run_lab` on the bundle's model, in the child.

        Parameters
        ----------
        bundle_path : str or path
            The bundle (its classes are taken from its metadata).
        image : np.ndarray
            One uint8 image of any size.
        timeout : float, optional
            Overrides the worker's timeout for this call.
        **kwargs
            ``label``, ``attack``, ``attack_params``, ``defence``, ``gain``:
            see :func:`engine.lab.run_lab`.

        Returns
        -------
        engine.lab.LabResult
        """
        return self._request(
            "lab", str(bundle_path), image, bundle=str(bundle_path), timeout=timeout, **kwargs
        )

    def mini_sweep(
        self,
        bundle_path: str | os.PathLike,
        images: Any,
        labels: Any,
        *,
        progress: ProgressFn | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """:func:`engine.lab.run_mini_sweep` on the bundle's model, in the child.

        Parameters
        ----------
        bundle_path : str or path
            The bundle.
        images, labels
            See :func:`engine.lab.run_mini_sweep`.
        progress : callable, optional
            ``progress(done, total, message)``, called in the caller's thread
            as the child reports each unit of work. If it raises, the sweep is
            cancelled after the current unit and the exception is re-raised.
        timeout : float, optional
            Longest silence allowed between two progress messages.
        **kwargs
            ``attack``, ``eps_values``, ``defences``, ``attack_params``,
            ``positive``: see :func:`engine.lab.run_mini_sweep`.

        Returns
        -------
        list of dict
            One row per (eps, defence).
        """
        return self._request(
            "mini_sweep",
            str(bundle_path),
            images,
            labels,
            bundle=str(bundle_path),
            timeout=timeout,
            progress=progress,
            **kwargs,
        )

    def ping(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Round trip to the child (starting it if needed).

        Returns
        -------
        dict
            ``pid``, ``models`` (resolved paths of the loaded bundles),
            ``tensorflow`` (its version) and ``seconds`` (round-trip time).
        """
        t0 = time.perf_counter()
        out = dict(self._request("ping", timeout=timeout))
        out["seconds"] = round(time.perf_counter() - t0, 4)
        return out

    def memory_rss_mb(self) -> float:
        """Resident memory of the child in MB (``/proc``, Linux); ``nan`` if unknown."""
        return _rss_mb(self.pid)

    def close(self) -> None:
        """Stop the child process. Later requests raise :class:`~engine.errors.ModelError`."""
        self._closed = True
        got = self._lock.acquire(timeout=1.0)
        try:
            self._stop(graceful=got)
        finally:
            if got:
                self._lock.release()
        _live_workers.discard(self)

    def __enter__(self) -> ModelWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid={self.pid}"
        return f"ModelWorker({state}, loaded={sorted(self._loaded)})"
