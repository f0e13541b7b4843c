"""The engine's exception types.

Every error a user can cause (a bad file, a bad parameter, a missing dataset or
model, an offline download) is raised as a subclass of :class:`EngineError` with
a message written for a non-expert. Callers (CLI, dashboard) catch
``EngineError`` and show its message; anything else is a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class EngineError(Exception):
    """Base class for every user-facing error raised by the engine."""


class ImageError(EngineError, ValueError):
    """An input could not be turned into an RGB uint8 image."""


class ParamError(EngineError, ValueError):
    """A parameter is outside its declared range or of the wrong type."""


class DatasetError(EngineError, FileNotFoundError):
    """A dataset is missing, incomplete or malformed."""


class ModelError(EngineError, RuntimeError):
    """A model or its weights could not be built, loaded or downloaded."""


def run_cli(body: Callable[[], int | None]) -> int:
    """Run a command-line tool's body and return its exit status.

    An :class:`EngineError` (the user's mistake, not a bug) is printed as
    ``error: MESSAGE`` on stderr and gives status 2; ``None`` from ``body``
    means 0. Anything else propagates with its traceback.
    """
    try:
        return body() or 0
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
