"""A separate process that owns the models, so the dashboard never imports TensorFlow.

Why a worker process
--------------------
Streamlit calls ``keras.backend.clear_session()`` after every script run when
``keras`` is in ``sys.modules``, which throws away every compiled function and
warmed-up kernel; and TensorFlow plus a model or two weigh hundreds of MB. So
the dashboard keeps TensorFlow out of its own process: a :class:`ModelWorker`
starts one child process (``multiprocessing`` context ``"spawn"``, daemon)
that imports TensorFlow, loads bundles with :func:`engine.models.load_bundle`,
warms them up, and answers requests over a ``multiprocessing`` pipe.

Modules
-------
* :mod:`app.worker.protocol`: the messages, one frozen dataclass per kind.
* :mod:`app.worker.server`: the child's request loop and bundle cache.
* :mod:`app.worker.client`: :class:`ModelWorker`, the parent's side.
* :mod:`app.worker.process`: the child process seen from the parent (spawn
  guard, send, wait with a time limit, stop).
* :mod:`app.worker.scheduling`: :class:`~app.worker.scheduling.FairLock`,
  the first-come-first-served turns.

Importing this package never imports TensorFlow or Keras.

Behaviour
---------
* **Fair turns.** One worker is shared by every dashboard session
  (``st.cache_resource``). Requests run one at a time, in the order they were
  made (:class:`~app.worker.scheduling.FairLock`, not a plain lock that the
  thread releasing it can grab straight back), and a mini sweep is sent as
  one request per batch (up to 64 images under one budget), so a Live-lab
  click made during another session's sweep waits for one batch, not for the
  whole sweep.
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
  then re-raises the callback's exception (and sends no further batch).
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

from app.worker.client import (
    DEFAULT_LOAD_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_WARMUP_BATCHES,
    ModelWorker,
)

__all__ = [
    "DEFAULT_LOAD_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WARMUP_BATCHES",
    "ModelWorker",
]
