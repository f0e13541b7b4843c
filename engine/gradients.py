"""The one compiled forward pass and the one compiled gradient helper.

Every attack in :mod:`engine.attacks` (and anything else that needs model
outputs or input gradients) goes through :class:`Compiled`, obtained with
:func:`compiled`. It holds, per model,

* a compiled forward pass returning **logits**, and
* the project's single compiled gradient helper, returning logits, the
  per-image cross-entropy loss and its gradient with respect to the input.

Both are ``tf.function`` s traced once, with an input signature whose batch
dimension is free. Batches are padded up to a small fixed set of *bucket*
sizes (:data:`BUCKETS`; larger inputs are cut into chunks of
:data:`MAX_BATCH`) so that the set of shapes the runtime sees is finite and
can be warmed up at load time (:meth:`Compiled.warmup`): a new batch length
never retraces, and never meets a cold kernel. A compiled call is several
times faster than eager Keras or ``model.predict`` for small batches.

Model contract
--------------
A *classifier* takes float32 ``(N, H, W, 3)`` RGB in 0-255 (its preprocessing is
inside) and ends with ``Activation("softmax", name="probs")`` applied to a
``Dense`` layer named ``"logits"``. Attacks need logits (house rule 4), so
:func:`logits_model` cuts the softmax off. A model without a ``"probs"`` layer
is taken to output logits already.

Attacks that see a defence
--------------------------
An attack asks :func:`source` for its gradients: for a model that is
:func:`compiled`; for a :class:`GradientSource` (e.g.
``engine.attacks.adaptive.Through``, the model behind a defence, with BPDA
and EOT) it is that object. Both answer the same questions
(:meth:`~GradientSource.value_and_grad`, :meth:`~GradientSource.sign_step`,
:meth:`~GradientSource.logits`), so an attack's body does not change when
it is crafted through a defence; every model gradient still comes from the
one compiled helper.

Example
-------
>>> comp = compiled(classifier)                          # doctest: +SKIP
>>> comp.warmup()                                        # doctest: +SKIP
>>> probs = comp.probs(images)              # (N, K) float64   # doctest: +SKIP
>>> loss, grad = comp.loss_grad(images, labels, targeted=False)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable

import keras
import numpy as np
import tensorflow as tf

from engine.attacks.source import GradientSource  # re-exported: attacks type against it
from engine.errors import ModelError, ParamError

__all__ = [
    "BUCKETS",
    "MAX_BATCH",
    "Compiled",
    "GradientSource",
    "compiled",
    "logits_model",
    "predict",
    "source",
]

#: Batch sizes every call is padded up to (the largest is also the chunk size).
BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
#: Inputs longer than this are processed in chunks of this many images.
MAX_BATCH: int = BUCKETS[-1]

_LOGITS_NAME = "logits"
_PROBS_NAME = "probs"

_cache_lock = threading.Lock()
# model -> its logits model. The value references the model's layers, never
# the model object itself, so the entry dies with the model.
_logits_cache: weakref.WeakKeyDictionary[keras.Model, keras.Model] = weakref.WeakKeyDictionary()
# logits model -> Compiled. Compiled keeps only a weak reference to its model.
_compiled_cache: weakref.WeakKeyDictionary[keras.Model, Compiled] = weakref.WeakKeyDictionary()


def _output_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The layer that produces the model's (single) output, if it can be found."""
    outputs = getattr(model, "outputs", None)
    if outputs and len(outputs) == 1:
        history = getattr(outputs[0], "_keras_history", None)
        if history is not None:
            return history[0]
    return model.layers[-1] if model.layers else None


def _is_softmax(layer: keras.layers.Layer | None) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def logits_model(model: keras.Model) -> keras.Model:
    """The model that outputs the classifier's logits (house rule 4).

    Parameters
    ----------
    model : keras.Model
        Either a *classifier* (a ``Dense`` layer named ``"logits"`` followed by
        the output layer ``Activation("softmax", name="probs")``), or a model
        that already outputs logits (no layer named ``"probs"``).

    Returns
    -------
    keras.Model
        For a classifier, ``keras.Model(model.inputs,
        model.get_layer("logits").output)``: it shares the classifier's layers
        and weights, and is built once per model object (cached weakly, so it
        goes away with the model). A logits-only model is returned as is.

    Raises
    ------
    ModelError
        If the model has a ``"probs"`` layer but does not follow the contract,
        or if it visibly ends in an unnamed softmax (its outputs would be
        probabilities, whose gradients vanish when the model is confident).
    """
    if not isinstance(model, keras.Model):
        raise ModelError(f"Expected a keras.Model; got {type(model).__name__}.")
    with _cache_lock:
        cached = _logits_cache.get(model)
    if cached is not None:
        return cached
    out_layer = _output_layer(model)
    if not _has_layer(model, _PROBS_NAME):
        if _is_softmax(out_layer):
            raise ModelError(
                f"Model {model.name!r} ends in a softmax that is not the contract's "
                f"Activation('softmax', name='probs') after Dense(name='logits'); "
                "attacks need logits."
            )
        return model
    if out_layer is None or out_layer.name != _PROBS_NAME or not _is_softmax(out_layer):
        raise ModelError(
            f"Model {model.name!r} has a 'probs' layer, but its output is not "
            "Activation('softmax', name='probs')."
        )
    if not _has_layer(model, _LOGITS_NAME):
        raise ModelError(
            f"Model {model.name!r} outputs softmax 'probs' but has no layer named 'logits'."
        )
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    lm = keras.Model(inputs, model.get_layer(_LOGITS_NAME).output, name=f"{model.name}_logits")
    with _cache_lock:
        return _logits_cache.setdefault(model, lm)


def _bucket(n: int) -> int:
    """Smallest bucket size holding ``n`` images (``1 <= n <= MAX_BATCH``)."""
    for b in BUCKETS:
        if n <= b:
            return b
    raise AssertionError(f"batch of {n} exceeds MAX_BATCH={MAX_BATCH}")


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) == size:
        return a
    pad = np.zeros((size - len(a), *a.shape[1:]), dtype=a.dtype)
    return np.concatenate([a, pad], axis=0)


class Compiled(GradientSource):
    """Compiled forward pass and gradient helper for one logits model.

    Obtain instances with :func:`compiled` (cached per model); do not build
    them directly. All public methods take NumPy arrays of any batch length,
    images float32-convertible ``(N, H, W, 3)`` in 0-255, and are safe to call
    from several threads (calls are serialised by a lock). Attributes: those
    of :class:`GradientSource`.
    """

    def __init__(self, lmodel: keras.Model) -> None:
        self._model_ref = weakref.ref(lmodel)
        shape = tuple(lmodel.input_shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ModelError(
                f"Model {lmodel.name!r} must take (N, H, W, 3) RGB input; "
                f"its input shape is {shape}."
            )
        self.input_shape: tuple[int | None, ...] = shape[1:]
        self.num_classes: int = int(lmodel.output_shape[-1])
        self._lock = threading.RLock()
        x_spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        y_spec = tf.TensorSpec((None,), tf.int32)
        self._forward_fn = tf.function(
            self._forward_impl, input_signature=[x_spec], reduce_retracing=True
        )
        self._grad_fn = tf.function(
            self._grad_impl, input_signature=[x_spec, y_spec], reduce_retracing=True
        )
        self._sign_step_fn = tf.function(
            self._sign_step_impl,
            input_signature=[x_spec, y_spec, tf.TensorSpec((), tf.float32)],
            reduce_retracing=True,
        )

    # -- traced bodies -------------------------------------------------------------
    def _model(self) -> keras.Model:
        model = self._model_ref()
        if model is None:  # pragma: no cover - the cache keeps it alive while used
            raise ModelError("The model behind this compiled helper has been deleted.")
        return model

    def _forward_impl(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(self._model()(x, training=False), tf.float32)

    def _grad_impl(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # The project's ONE gradient helper: every attack's gradient comes from here.
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(self._model()(x, training=False), tf.float32)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        # Images in a batch are independent (inference mode), so the gradient
        # of the summed loss is the per-image gradient.
        grad = tape.gradient(loss, x)
        return logits, loss, grad

    def _sign_step_impl(self, x: tf.Tensor, y: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        # A gradient-sign step fused in the graph (multi-threaded, no float copies
        # through NumPy); the gradient itself comes from the one helper above.
        _, _, grad = self._grad_impl(x, y)
        return tf.clip_by_value(x + step * tf.sign(grad), 0.0, 255.0)

    # -- helpers -------------------------------------------------------------------
    def _images(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ParamError(f"Images must be shaped (N, H, W, 3); got shape {x.shape}.")
        for want, got in zip(self.input_shape, x.shape[1:], strict=True):
            if want is not None and want != got:
                raise ParamError(
                    f"The model takes images of size {self.input_shape[0]}x"
                    f"{self.input_shape[1]}; got {x.shape[1]}x{x.shape[2]}."
                )
        return np.ascontiguousarray(x, dtype=np.float32)

    @staticmethod
    def _chunks(n: int) -> Iterable[slice]:
        for start in range(0, n, MAX_BATCH):
            yield slice(start, min(start + MAX_BATCH, n))

    @property
    def tracing_count(self) -> int:
        """Total number of traces of the compiled functions so far (for tests)."""
        return (
            self._forward_fn.experimental_get_tracing_count()
            + self._grad_fn.experimental_get_tracing_count()
            + self._sign_step_fn.experimental_get_tracing_count()
        )

    # -- public API ----------------------------------------------------------------
    def warmup(self, batch_sizes: Iterable[int] = BUCKETS) -> None:
        """Trace and run both compiled functions once per bucket used by ``batch_sizes``.

        Call at model load time so that the first user request is fast.
        """
        if any(d is None for d in self.input_shape):
            raise ModelError("Cannot warm up a model whose input size is not fixed.")
        shape = tuple(int(d) for d in self.input_shape if d is not None)
        buckets = sorted({_bucket(min(int(b), MAX_BATCH)) for b in batch_sizes})
        for b in buckets:
            x = np.zeros((b, *shape), np.float32)
            self.value_and_grad(x, np.zeros(b, np.int32))
            self.sign_step(x, np.zeros(b, np.int32), 0.0)
            self.logits(x)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits of a batch.

        Parameters
        ----------
        x : np.ndarray
            ``(N, H, W, 3)`` RGB in 0-255 (uint8 or float).

        Returns
        -------
        np.ndarray
            ``(N, K)`` float32 logits.
        """
        x = self._images(x)
        out = np.empty((len(x), self.num_classes), np.float32)
        with self._lock:
            for sl in self._chunks(len(x)):
                n = sl.stop - sl.start
                res = self._forward_fn(tf.constant(_pad(x[sl], _bucket(n))))
                out[sl] = res.numpy()[:n]
        return out

    def value_and_grad(
        self, x: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits, per-image cross-entropy and its input gradient, in one pass.

        Parameters
        ----------
        x : np.ndarray
            ``(N, H, W, 3)`` RGB in 0-255.
        labels : np.ndarray
            ``(N,)`` integer class indices the loss is measured against.

        Returns
        -------
        logits : np.ndarray
            ``(N, K)`` float32.
        loss : np.ndarray
            ``(N,)`` float32, ``CE(softmax(logits), labels)``.
        grad : np.ndarray
            ``(N, H, W, 3)`` float32, ``d loss / d x`` (0-255 input units).
        """
        x = self._images(x)
        y = np.asarray(labels).astype(np.int32, copy=False).reshape(-1)
        if len(y) != len(x):
            raise ParamError(f"Got {len(x)} images but {len(y)} labels.")
        logits = np.empty((len(x), self.num_classes), np.float32)
        loss = np.empty(len(x), np.float32)
        grad = np.empty_like(x)
        with self._lock:
            for sl in self._chunks(len(x)):
                n = sl.stop - sl.start
                b = _bucket(n)
                lg, ls, g = self._grad_fn(tf.constant(_pad(x[sl], b)), tf.constant(_pad(y[sl], b)))
                logits[sl] = lg.numpy()[:n]
                loss[sl] = ls.numpy()[:n]
                grad[sl] = g.numpy()[:n]
        return logits, loss, grad

    def sign_step(self, x: np.ndarray, labels: np.ndarray, step: float) -> np.ndarray:
        """``clip(x + step * sign(d CE(x, labels) / dx), 0, 255)`` in one compiled call.

        The fast-gradient-sign step (``step > 0`` ascends the loss of ``labels``,
        ``step < 0`` descends it, i.e. moves towards a target). float32 result,
        same shape as ``x``; ``x`` is not modified.
        """
        x = self._images(x)
        y = np.asarray(labels).astype(np.int32, copy=False).reshape(-1)
        if len(y) != len(x):
            raise ParamError(f"Got {len(x)} images but {len(y)} labels.")
        out = np.empty_like(x)
        s = tf.constant(float(step), tf.float32)
        with self._lock:
            for sl in self._chunks(len(x)):
                n = sl.stop - sl.start
                b = _bucket(n)
                res = self._sign_step_fn(
                    tf.constant(_pad(x[sl], b)), tf.constant(_pad(y[sl], b)), s
                )
                out[sl] = res.numpy()[:n]
        return out


def compiled(model: keras.Model) -> Compiled:
    """The cached :class:`Compiled` helper of a model (its logits model, in fact).

    The softmax is stripped first with :func:`logits_model`, so a classifier and
    its logits model share one helper. Cached weakly: it goes away with the model.
    """
    lm = logits_model(model)
    with _cache_lock:
        comp = _compiled_cache.get(lm)
        if comp is None:
            comp = _compiled_cache[lm] = Compiled(lm)
    return comp


def source(model: keras.Model | GradientSource) -> GradientSource:
    """Where an attack gets its gradients: a :class:`GradientSource` as is, a model compiled."""
    return model if isinstance(model, GradientSource) else compiled(model)


def predict(model: keras.Model, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of a batch through the compiled forward pass.

    Parameters
    ----------
    model : keras.Model
        A classifier or a logits model.
    images : np.ndarray
        ``(N, H, W, 3)`` RGB in 0-255, uint8 or float.
    batch_size : int, default=64
        Images per compiled call (capped at :data:`MAX_BATCH`).

    Returns
    -------
    np.ndarray
        ``(N, K)`` float64 probabilities, rows summing to 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size must be a positive integer; got {batch_size!r}.")
    comp = compiled(model)
    images = np.asarray(images)
    if len(images) == 0:
        return np.zeros((0, comp.num_classes), np.float64)
    step = min(batch_size, MAX_BATCH)
    return np.concatenate([comp.probs(images[i : i + step]) for i in range(0, len(images), step)])
