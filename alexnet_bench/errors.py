"""Exceptions whose message is a single line naming the problem and the fix."""

from __future__ import annotations

import errno


class BenchError(Exception):
    """Base class: a user-facing error; the CLI prints ``error: <message>`` and exits 2."""


class ConfigError(BenchError):
    """The configuration is malformed, has an unknown key, a wrong type or value."""


class DataError(BenchError):
    """The data source is missing, empty, single-class or contains a corrupt file."""


class DeviceError(BenchError):
    """The job needs a device (GPU) or more devices than this machine has."""


class DiskFullError(BenchError, OSError):
    """A write failed because the file system is full (still an ``OSError``, errno ENOSPC)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


class ResultsError(BenchError):
    """Results directories that cannot be compared: missing, empty or from different studies."""
