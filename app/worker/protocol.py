"""The messages between the dashboard and its model worker process, one class each.

Every message is a frozen dataclass with a ``kind`` (a class attribute,
unique across this module); both sides import them from here, and the pipe
carries them pickled. The cycle of one request:

* the parent sends one :class:`Request` (:class:`LoadRequest`,
  :class:`PredictRequest`, :class:`LabRequest`, :class:`SweepBatchRequest`,
  :class:`PingRequest`);
* the child answers with any number of :class:`Progress`, then exactly one
  of :class:`Ok` (carrying the request's result), :class:`Failed` or
  :class:`Cancelled`.

Outside that cycle the parent may send :class:`Cancel` (stop the running
request after its current unit of work; ignored when none runs) and
:class:`Close` (exit).

A request is generic in the type of its result (``LabRequest`` is a
``Request[LabResult]``), so the parent's call returns a typed value.
Importing this module never imports TensorFlow: the engine types are
annotations only.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from engine.errors import EngineError, ModelError

if TYPE_CHECKING:
    import numpy as np

    # LabResult and SweepPart are used in the quoted base classes below.
    from engine.lab import DefenceLike, LabResult, SweepBatch, SweepPart  # noqa: F401

__all__ = [
    "MESSAGES",
    "BundleRequest",
    "Cancel",
    "Cancelled",
    "Close",
    "Failed",
    "LabRequest",
    "LoadRequest",
    "Ok",
    "PingRequest",
    "PredictRequest",
    "Progress",
    "Reply",
    "Request",
    "SweepBatchRequest",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- parent -> child


@dataclass(frozen=True)
class Request(Generic[T]):
    """A request whose :class:`Ok` answer carries a ``T``."""

    kind: ClassVar[str]


@dataclass(frozen=True)
class BundleRequest(Request[T]):
    """A request about one model bundle (loaded first if the child does not hold it).

    Attributes
    ----------
    bundle_path : str
        The bundle's folder (resolved by the child; see ``LoadRequest``).
    """

    bundle_path: str


@dataclass(frozen=True)
class LoadRequest(BundleRequest[dict[str, Any]]):
    """Load (or find in the cache) a bundle and warm it up; answer its description."""

    kind: ClassVar[str] = "load"


@dataclass(frozen=True, eq=False)
class PredictRequest(BundleRequest["np.ndarray"]):
    """Class probabilities of a batch (resized to the model's input)."""

    kind: ClassVar[str] = "predict"
    images: np.ndarray | Sequence[np.ndarray]


@dataclass(frozen=True, eq=False)
class LabRequest(BundleRequest["LabResult"]):
    """:func:`engine.lab.run_lab` on the bundle's model; the fields are its arguments."""

    kind: ClassVar[str] = "lab"
    image: np.ndarray
    label: int | None
    attack: str
    attack_params: Mapping[str, Any] | Any | None
    defence: DefenceLike
    gain: float | None
    adaptive: bool
    eot_samples: int | None


@dataclass(frozen=True, eq=False)
class SweepBatchRequest(BundleRequest["SweepPart"]):
    """:func:`engine.lab.run_sweep_batch`: one batch of a mini sweep.

    ``images`` and ``labels`` are the batch's only; the other fields are the
    whole sweep's settings (``adaptive`` and ``eot_samples``: the attacker,
    as for :class:`LabRequest`).
    """

    kind: ClassVar[str] = "sweep_batch"
    images: np.ndarray | Sequence[np.ndarray]
    labels: np.ndarray
    batch: SweepBatch
    attack: str
    eps_values: tuple[float, ...]
    defences: tuple[DefenceLike, ...]
    attack_params: Mapping[str, Any] | None
    adaptive: bool
    eot_samples: int | None


@dataclass(frozen=True)
class PingRequest(Request[dict[str, Any]]):
    """A round trip: the child's pid, loaded bundles and TensorFlow version."""

    kind: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Cancel:
    """Stop the running request after its current unit of work."""

    kind: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class Close:
    """Exit the child's loop (and process)."""

    kind: ClassVar[str] = "close"


# --------------------------------------------------------------------------- child -> parent


@dataclass(frozen=True, eq=False)
class Ok:
    """The request's result."""

    kind: ClassVar[str] = "ok"
    result: object


@dataclass(frozen=True)
class Progress:
    """``progress(done, total, message)`` of the running request: also a sign of life."""

    kind: ClassVar[str] = "progress"
    done: int
    total: int
    message: str


@dataclass(frozen=True)
class Failed:
    """The request raised.

    Attributes
    ----------
    classes : tuple of (str, str)
        ``(module, qualname)`` of every class in the exception's MRO, so the
        parent can raise the nearest class it has without importing more.
    message : str
        ``str(exception)``.
    traceback : str
        The child's formatted traceback, for logs.
    engine_error : bool
        Whether the exception is an :class:`engine.errors.EngineError`.
    """

    kind: ClassVar[str] = "error"
    classes: tuple[tuple[str, str], ...]
    message: str
    traceback: str
    engine_error: bool

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failed:
        """The message for an exception raised in the child."""
        classes = tuple(
            (c.__module__, c.__qualname__)
            for c in type(exc).__mro__
            if issubclass(c, BaseException)
        )
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(classes, str(exc), tb, isinstance(exc, EngineError))

    def exception(self) -> BaseException:
        """The exception to raise in the parent, with ``worker_traceback`` set.

        An engine error comes back as the first class of its MRO that is
        importable here without new imports (at worst
        :class:`~engine.errors.EngineError`), with the same message; any
        other exception becomes :class:`~engine.errors.ModelError`
        ``"The model worker failed: <type>: <message>"``.
        """
        exc: BaseException = ModelError(
            f"The model worker failed: {self.classes[0][1]}: {self.message}"
        )
        if self.engine_error:
            exc = self._engine_class()(self.message)
        exc.worker_traceback = self.traceback  # type: ignore[attr-defined]
        return exc

    def _engine_class(self) -> type[BaseException]:
        for module, name in self.classes:
            mod = sys.modules.get(module)
            found = getattr(mod, name, None) if mod is not None and "." not in name else None
            if isinstance(found, type) and issubclass(found, EngineError):
                return found
        return EngineError


@dataclass(frozen=True)
class Cancelled:
    """The request stopped early because the parent sent :class:`Cancel`."""

    kind: ClassVar[str] = "cancelled"


#: Everything the child may send while a request runs.
Reply = Ok | Progress | Failed | Cancelled

#: Every message class by its kind.
MESSAGES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        LoadRequest,
        PredictRequest,
        LabRequest,
        SweepBatchRequest,
        PingRequest,
        Cancel,
        Close,
        Ok,
        Progress,
        Failed,
        Cancelled,
    )
}
