"""The exceptions and warnings memo raises: one root, each also the builtin a user would catch."""

from __future__ import annotations

import logging
import threading
import warnings

__all__ = [
    "ConfigError",
    "EncodingError",
    "MemoError",
    "MemoWarning",
    "ReadOnlyError",
    "warn_once",
]


class MemoError(Exception):
    """Root of every exception memo raises on its own account."""


class EncodingError(MemoError, TypeError):
    """An argument cannot be turned into a cache key.

    It is a ``TypeError``: as with an unhashable ``dict`` key, the fault is the value's type.
    """


class ConfigError(MemoError, TypeError, ValueError):
    """A decorator option or setting is invalid.

    Raised at decoration time, never at the first call. Catch it as ``TypeError`` (unknown option,
    wrong kind of value) or ``ValueError`` (a value out of range): both work.
    """


class ReadOnlyError(MemoError, PermissionError):
    """Something would write to a read-only store (``memo.Store(..., read_only=True)``):
    deleting, pruning or fixing entries, or ``invalidate``, ``clear``, ``refresh``, ``put``."""


class MemoWarning(UserWarning):
    """Caching failed or an entry was damaged; the call still returned the right value."""


_warned: set[tuple[str, ...]] = set()
_logger = logging.getLogger("memo")
_warned_lock = threading.Lock()


def warn_once(identity: tuple[str, ...], message: str, *, stacklevel: int = 2) -> None:
    """Warn about one distinct problem at most once per process.

    A full disk hit by 10,000 calls is one problem, not 10,000: ``identity`` names the problem.
    """
    with _warned_lock:
        if identity in _warned:
            return
        _warned.add(identity)
    warnings.warn(message, MemoWarning, stacklevel=stacklevel + 1)
    if _logger.hasHandlers():  # the user set up logging: the problem belongs in their log too
        _logger.warning("%s", message)


def reset_warnings() -> None:
    """Forget which problems were already warned about (for tests and long-lived notebooks)."""
    with _warned_lock:
        _warned.clear()
