"""The dashboard's side of the model worker: :class:`ModelWorker`.

It starts the child process (:mod:`app.worker.server`), sends it one
:mod:`app.worker.protocol` request at a time in first-come-first-served
order (:class:`app.worker.scheduling.FairLock`), and turns the answers back
into results or exceptions. A mini sweep goes as a series of batch requests
(:func:`engine.lab.plan_mini_sweep`), each taking its own turn, so other
sessions' requests run between two batches. Importing this module never
imports TensorFlow (or the engine's lab: that loads on the first call).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from app.worker import protocol as msg
from app.worker.process import Child, ChildDied, TimedOut, rss_mb
from app.worker.scheduling import FairLock
from app.worker.server import WorkerConfig
from engine.attacks import DEFAULT_ATTACK
from engine.errors import EngineError, ModelError, ParamError

if TYPE_CHECKING:
    from engine.lab import DefenceLike, LabResult, ProgressFn, SweepRow

__all__ = ["DEFAULT_LOAD_TIMEOUT", "DEFAULT_TIMEOUT", "DEFAULT_WARMUP_BATCHES", "ModelWorker"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a request may wait for a sign of life from the child.
DEFAULT_TIMEOUT = 120.0
#: Seconds allowed for a request that has to load a bundle first (and, for the
#: first one, import TensorFlow in the child).
DEFAULT_LOAD_TIMEOUT = 300.0
#: Batch sizes traced and run once when a bundle is loaded (the lab uses 1 to 3).
DEFAULT_WARMUP_BATCHES: tuple[int, ...] = (1, 2, 4)

_live_workers: weakref.WeakSet[ModelWorker] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for worker in list(_live_workers):
        with contextlib.suppress(Exception):
            worker.close()


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
    reloaded. Requests from different threads take turns in the order they
    were made; a mini sweep takes one turn per batch.
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
        self._config: WorkerConfig = {
            "threads": threads,
            "warmup_batches": tuple(int(b) for b in warmup_batches),
            "max_models": max_models,
        }
        self._ctx = mp.get_context("spawn")
        self._lock = FairLock()
        self._owner: int | None = None
        self._child: Child | None = None
        self._loaded: set[str] = set()
        self._closed = False
        self.restarts = 0
        _live_workers.add(self)
        if start:
            with self._turn():
                self._start()

    # -- process management ------------------------------------------------------------
    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait for this thread's turn (first come, first served) and hold it."""
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
        self._child = Child(self._ctx, self._config)
        self._loaded = set()

    def _stop(self, *, graceful: bool) -> None:
        child, self._child = self._child, None
        self._loaded = set()
        if child is not None:
            child.stop(graceful=graceful)

    @property
    def pid(self) -> int | None:
        """Process id of the child, or ``None`` when none is running."""
        child = self._child
        return child.proc.pid if child is not None and child.is_alive() else None

    def is_alive(self) -> bool:
        """Whether the child process is running."""
        return self.pid is not None

    # -- the request cycle -------------------------------------------------------------
    def _exchange(self, request: msg.Request[T], timeout: float, progress: ProgressFn | None) -> T:
        child = self._child
        if child is None:
            raise ChildDied
        child.send(request)
        pending: BaseException | None = None
        while True:
            try:
                reply = child.receive(timeout)
            except (ChildDied, TimedOut):
                if pending is None:
                    raise
                self._stop(graceful=False)  # never re-run a request its caller gave up on
                raise _CallbackRaised(pending) from None
            if isinstance(reply, msg.Progress):
                if progress is not None and pending is None:
                    try:
                        progress(reply.done, reply.total, reply.message)
                    except BaseException as exc:  # re-raised once the child has stopped
                        pending = exc
                        with contextlib.suppress(ChildDied):
                            child.send(msg.Cancel())
                continue
            if pending is not None:
                raise _CallbackRaised(pending)
            if isinstance(reply, msg.Ok):
                return cast(T, reply.result)
            if isinstance(reply, msg.Cancelled):
                raise ModelError(f"The model worker's {request.kind!r} request was cancelled.")
            if isinstance(reply, msg.Failed):
                raise reply.exception()
            raise ModelError(f"The model worker sent an unknown message: {reply!r}.")

    def _request(
        self,
        request: msg.Request[T],
        *,
        timeout: float | None = None,
        progress: ProgressFn | None = None,
    ) -> T:
        op = request.kind
        bundle = request.bundle_path if isinstance(request, msg.BundleRequest) else None
        key = str(Path(bundle).expanduser().resolve()) if bundle is not None else None
        with self._turn():
            if self._closed:
                raise ModelError("The model worker has been closed.")
            last_exit: int | None = None
            for attempt in range(2):
                if self._child is None or not self._child.is_alive():
                    if self._child is not None:
                        last_exit = self._child.exitcode
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
                    result = self._exchange(request, limit, progress)
                except ChildDied:
                    if self._closed:
                        raise ModelError("The model worker has been closed.") from None
                    child = self._child
                    if child is not None:
                        child.proc.join(1.0)
                        last_exit = child.exitcode
                    if attempt == 0:
                        continue  # restart at the top of the loop and try once more
                    self._stop(graceful=False)
                    raise ModelError(
                        f"The model worker stopped unexpectedly (exit code {last_exit}) "
                        f"twice while handling {op!r}; it will start again on the next "
                        "request. The machine may be out of memory, or the model file "
                        "may be damaged."
                    ) from None
                except TimedOut:
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
    def load(
        self, bundle_path: str | os.PathLike[str], *, timeout: float | None = None
    ) -> dict[str, Any]:
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
        return self._request(msg.LoadRequest(str(bundle_path)), timeout=timeout)

    def predict(
        self,
        bundle_path: str | os.PathLike[str],
        images: np.ndarray | Sequence[np.ndarray],
        *,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Class probabilities of a batch.

        Parameters
        ----------
        bundle_path : str or path
            The bundle.
        images : np.ndarray or list of np.ndarray
            uint8 batch ``(N, H, W, 3)`` or list of uint8 images; images not
            at the model's input size are resized
            (:func:`engine.lab.image_batch`).
        timeout : float, optional
            Overrides the worker's timeout for this call.

        Returns
        -------
        np.ndarray
            ``(N, K)`` float64 probabilities.
        """
        return self._request(msg.PredictRequest(str(bundle_path), images), timeout=timeout)

    def lab(
        self,
        bundle_path: str | os.PathLike[str],
        image: np.ndarray,
        *,
        label: int | None = None,
        attack: str = DEFAULT_ATTACK,
        attack_params: Mapping[str, Any] | Any | None = None,
        defence: DefenceLike = None,
        gain: float | None = None,
        adaptive: bool = False,
        eot_samples: int | None = None,
        timeout: float | None = None,
    ) -> LabResult:
        """:func:`engine.lab.run_lab` on the bundle's model, in the child.

        Parameters
        ----------
        bundle_path : str or path
            The bundle (its classes are taken from its metadata).
        image : np.ndarray
            One uint8 image of any size.
        label, attack, attack_params, defence, gain, adaptive, eot_samples
            As for :func:`engine.lab.run_lab` (same defaults): ``adaptive=True``
            crafts the attack through ``defence`` (BPDA, EOT).
        timeout : float, optional
            Overrides the worker's timeout for this call.

        Returns
        -------
        engine.lab.LabResult
        """
        request = msg.LabRequest(
            str(bundle_path),
            image,
            label,
            attack,
            attack_params,
            defence,
            gain,
            adaptive,
            eot_samples,
        )
        return self._request(request, timeout=timeout)

    def mini_sweep(
        self,
        bundle_path: str | os.PathLike[str],
        images: np.ndarray | Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray,
        *,
        attack: str,
        eps_values: Sequence[float],
        defences: Sequence[DefenceLike],
        attack_params: Mapping[str, Any] | None = None,
        positive: Sequence[int] | None = None,
        adaptive: bool = False,
        eot_samples: int | None = None,
        progress: ProgressFn | None = None,
        timeout: float | None = None,
    ) -> list[SweepRow]:
        """:func:`engine.lab.run_mini_sweep` on the bundle's model, batch by batch.

        The sweep is cut into batches (:func:`engine.lab.plan_mini_sweep`:
        up to 64 images under one budget each); every batch is one request
        and waits for its own turn, so another session's request waits for
        one batch at most, not the whole sweep. The rows are merged here
        (:func:`engine.lab.combine_mini_sweep`) and are the same as one
        unbatched pass would give. With ``adaptive=True`` each batch is one
        budget and one defence setting, crafted through that setting.

        Parameters
        ----------
        bundle_path : str or path
            The bundle.
        images, labels, attack, eps_values, defences, attack_params, positive
            As for :func:`engine.lab.run_mini_sweep`.
        adaptive, eot_samples
            As for :func:`engine.lab.run_mini_sweep` (same defaults):
            ``adaptive=True`` crafts each defence setting's attack through it
            (BPDA, EOT). Checked here, before the first batch is sent.
        progress : callable, optional
            ``progress(done, total, message)``, called in the caller's thread
            as the child reports each unit of work (counted over the whole
            sweep). If it raises, the sweep is cancelled after the current
            unit and the exception is re-raised.
        timeout : float, optional
            Longest silence allowed between two progress messages.

        Returns
        -------
        list of dict
            One row per (eps, defence), as :func:`engine.lab.run_mini_sweep`.
        """
        from engine.lab import check_labels, combine_mini_sweep, count_images, plan_mini_sweep
        from engine.lab.inputs import live_attacker

        y = check_labels(labels, count_images(images))
        attacker = live_attacker(adaptive, eot_samples)
        plan = plan_mini_sweep(len(y), eps_values, defences, adaptive=attacker.adaptive)
        eps, defs = tuple(eps_values), tuple(defences)
        parts = [
            self._request(
                msg.SweepBatchRequest(
                    str(bundle_path),
                    images[b.start : b.stop],
                    y[b.start : b.stop],
                    b,
                    attack,
                    eps,
                    defs,
                    attack_params,
                    adaptive,
                    eot_samples,
                ),
                timeout=timeout,
                progress=progress,
            )
            for b in plan
        ]
        return combine_mini_sweep(parts, y, positive=positive)

    def ping(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Round trip to the child (starting it if needed).

        Returns
        -------
        dict
            ``pid``, ``models`` (resolved paths of the loaded bundles),
            ``tensorflow`` (its version) and ``seconds`` (round-trip time).
        """
        t0 = time.perf_counter()
        out = self._request(msg.PingRequest(), timeout=timeout)
        out["seconds"] = round(time.perf_counter() - t0, 4)
        return out

    def memory_rss_mb(self) -> float:
        """Resident memory of the child in MB (``/proc``, Linux); ``nan`` if unknown."""
        return rss_mb(self.pid)

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
