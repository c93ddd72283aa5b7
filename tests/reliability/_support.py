"""Helpers of the reliability suite: soak sizing, figures, a filesystem with injected faults."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memo._storage import _budget, _files, _local, _locks

SOAK = os.environ.get("MEMO_SOAK", "") not in ("", "0")
# Functions of ``os`` memo's store calls that touch the filesystem; each can be made to fail.
FAULTY = (
    "open",
    "write",
    "read",
    "readv",
    "pread",
    "replace",
    "rename",
    "link",
    "unlink",
    "fstat",
    "stat",
    "lstat",
    "mkdir",
    "makedirs",
    "utime",
    "listdir",
    "scandir",
)
_MODULES = (_local, _files, _locks, _budget)


def scale(quick: int, soak: int) -> int:
    """``quick`` normally, ``soak`` with ``MEMO_SOAK=1``."""
    return soak if SOAK else quick


def figure(name: str, value: int) -> None:
    """Print a figure of the suite and append it to ``$MEMO_FIGURES`` (JSON lines), if set."""
    print(f"\n[figure] {name}: {value}")
    target = os.environ.get("MEMO_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(json.dumps({"figure": name, "value": value}) + "\n")


class FaultyOS(types.ModuleType):
    """Stands in for ``os`` in memo's storage modules: counts calls, fails the chosen one."""

    def __init__(self, error: int = 0, at: int = 0, persistent: bool = False) -> None:
        super().__init__("os")
        self.error = error
        self.at = at  # the 1-based call number that fails; 0: none
        self.persistent = persistent
        self.calls = 0
        self.injected = 0
        self.bytes_read = 0
        for name in FAULTY:
            setattr(self, name, self._wrap(name, getattr(os, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.at and (self.calls == self.at or (self.persistent and self.calls > self.at)):
                self.injected += 1
                raise OSError(self.error, f"{os.strerror(self.error)} (injected into os.{name})")
            result = real(*args, **kwargs)
            if name in ("read", "pread") and isinstance(result, bytes):
                self.bytes_read += len(result)
            elif name == "readv" and isinstance(result, int):
                self.bytes_read += result
            return result

        return call


@contextmanager
def faulty_os(monkeypatch: pytest.MonkeyPatch, fake: FaultyOS) -> Iterator[FaultyOS]:
    """Make memo's storage modules use ``fake`` as ``os`` inside the block."""
    with monkeypatch.context() as patch:
        for module in _MODULES:
            patch.setattr(module, "os", fake)
        yield fake
