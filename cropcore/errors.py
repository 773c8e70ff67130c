"""Exceptions raised by cropcore.

Every error a user can cause is a :class:`CropcoreError` whose message says what was wrong and what to
do; each also subclasses the matching built-in type so callers can catch ``ValueError`` and friends.
"""

from __future__ import annotations


class CropcoreError(Exception):
    """Base class of every error cropcore raises on purpose."""


class ConfigError(CropcoreError, ValueError):
    """A setting or argument has an unusable value."""


class DataDirError(CropcoreError, FileNotFoundError):
    """The sample-data directory is missing or incomplete."""


class InvalidAOIError(CropcoreError, ValueError):
    """The area of interest cannot be used (invalid, empty, out of range or too large)."""


class InvalidDateRangeError(CropcoreError, ValueError):
    """The date range cannot be parsed or is reversed."""


class NoItemsFoundError(CropcoreError, LookupError):
    """A search matched no scenes."""


class CatalogUnavailableError(CropcoreError, ConnectionError):
    """A STAC API could not be reached or answered with an error."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"STAC API {url} is unavailable: {reason}")


class ServiceError(CropcoreError, RuntimeError):
    """The embedded STAC API could not be built, started or stopped."""


class ShapeError(CropcoreError, ValueError):
    """An array or tensor has a shape a model or dataset cannot use."""


class CheckpointError(CropcoreError, ValueError):
    """A model checkpoint is missing, unsafe, or does not match what the caller needs."""


class DatasetFormatError(CropcoreError, ValueError):
    """A training or evaluation file is not in a format cropcore can read."""


class ExportError(CropcoreError, OSError):
    """A map could not be written."""


class InferenceError(CropcoreError, RuntimeError):
    """Inference could not run (device failure, worker crash)."""
