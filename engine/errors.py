"""The engine's exception types.

Every error a user can cause (a bad file, a bad parameter, a missing dataset or
model, an offline download) is raised as a subclass of :class:`EngineError` with
a message written for a non-expert. Callers (CLI, dashboard) catch
``EngineError`` and show its message; anything else is a bug.
"""

from __future__ import annotations


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
