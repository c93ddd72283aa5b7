"""Helpers of the reliability suite: soak sizing, figures, a filesystem with injected faults."""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import pathlib
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from memo._storage import _cacheable, _disk, _entry_file, _files, _locks
from memo._storage._open import forget_stores

SOAK = os.environ.get("MEMO_SOAK", "") not in ("", "0")
# Functions of ``os`` memo's store calls that touch the filesystem; each can be made to fail.
FAULTY = (
    "open",
    "write",
    "read",
    "readv",
    "pread",
    "pwrite",
    "lseek",
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
    "close",
    "walk",
)
# ``close`` fails after closing, as close(2) does: the descriptor is gone either way. ``walk``
# fails as ``os.walk`` does when it cannot list the top directory: it yields nothing, silently.
# ``fcntl.lockf`` (the key locks) and the built-in ``open`` of Cacheable directories' files are
# counted and failed too, and ``pathlib`` (Cacheable directories) goes through the fake ``os``.
_MODULES = (_disk, _entry_file, _files, _locks)


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
        self.injected_into: dict[str, int] = {}  # by function name
        self.bytes_read = 0
        for name in FAULTY:
            setattr(self, name, self._wrap(name, getattr(os, name)))
        self.fcntl = _Stand("fcntl", fcntl, lockf=self._wrap("lockf", fcntl.lockf))
        self.open_file = self._wrap("open", builtins.open)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.at and (self.calls == self.at or (self.persistent and self.calls > self.at)):
                self.injected += 1
                self.injected_into[name] = self.injected_into.get(name, 0) + 1
                error = OSError(self.error, f"{os.strerror(self.error)} (injected into {name})")
                if name == "close":
                    real(*args, **kwargs)
                elif name == "walk":
                    onerror = kwargs.get("onerror", args[2] if len(args) > 2 else None)
                    if onerror is not None:
                        onerror(error)
                    return iter(())
                raise error
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
        patch.setattr(_cacheable, "os", fake)
        patch.setattr(_cacheable, "open", fake.open_file, raising=False)
        patch.setattr(_locks, "fcntl", fake.fcntl)
        # Path.mkdir, .stat, .exists, .is_dir, ... call the ``os`` of pathlib's own module.
        patch.setattr(sys.modules[pathlib.Path.stat.__module__], "os", fake)
        yield fake


class _Stand(types.ModuleType):
    """A module's stand-in: the given functions replaced, everything else the module's own."""

    def __init__(self, name: str, module: types.ModuleType, **functions: Any) -> None:
        super().__init__(name)
        self._module = module
        for key, function in functions.items():
            setattr(self, key, function)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def close_lock_files(under: Path) -> None:
    """Close the lock-file descriptors memo keeps (one per store directory, for the life of
    the process) of stores under ``under``, as the process ending would."""
    forget_stores()  # their stores would lock through a closed descriptor
    with _locks._lock_files_guard:
        for identity, fd in list(_locks._lock_files.items()):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(f"{under}{os.sep}"):
                del _locks._lock_files[identity]
                os.close(fd)
