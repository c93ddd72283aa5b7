"""A store's size budget: least-recently-used entries are evicted as new ones are written.

Last use is an entry file's access time (set on hits through the already-open descriptor,
at most once a minute). Each process keeps a running total and rescans the directory only
when the total passes the limit, so writes stay cheap. Eviction unlinks files: a reader that
already opened one still reads it whole, a later reader sees a miss, and a memory-mapped
array keeps its data alive.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

__all__ = ["Budget"]

SUFFIX = ".memo"
_TARGET = 0.9  # evict down to this share of the limit, so eviction does not run every write


def _entry_sizes(root: str) -> list[tuple[int, int, str]]:
    """(last use in ns, bytes, path) of every entry, its directory's files included."""
    found = []
    try:
        scan = os.scandir(root)
    except FileNotFoundError:
        return []
    with scan:
        for item in scan:
            if not item.name.endswith(SUFFIX) or not item.is_file(follow_symlinks=False):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            size = st.st_size + _directory_size(item.path[: -len(SUFFIX)] + ".d")
            found.append((st.st_atime_ns, size, item.path))
    return found


def _directory_size(path: str) -> int:
    if not os.path.isdir(path) or os.path.islink(path):
        return 0
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


class Budget:
    """The size limit of one store directory, shared by everything in this process using it."""

    def __init__(self, root: str, limit: int) -> None:
        self.root = root
        self.limit = limit
        self._used: int | None = None
        self._lock = threading.Lock()

    def fits(self, size: int) -> bool:
        """Whether an entry of ``size`` bytes can be stored at all."""
        return size <= self.limit

    def used(self) -> int:
        """Bytes the store's entries take now (rescanned)."""
        return sum(size for _, size, _ in _entry_sizes(self.root))

    def record(self, size: int) -> int:
        """Count a newly written entry; evict the least recently used if over. Returns the
        number of entries evicted."""
        with self._lock:
            if self._used is None:
                self._used = self.used()  # the new entry is already on disk
            else:
                self._used += size
            if self._used <= self.limit:
                return 0
            evicted, self._used = self._evict()
            return evicted

    def _evict(self) -> tuple[int, int]:
        entries = sorted(_entry_sizes(self.root))
        total = sum(size for _, size, _ in entries)
        target = int(self.limit * _TARGET)
        evicted = 0
        for _, size, path in entries:
            if total <= target:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # another process evicted or replaced it
            except OSError:
                continue
            directory = Path(path[: -len(SUFFIX)] + ".d")
            if directory.is_dir() and not directory.is_symlink():
                shutil.rmtree(directory, ignore_errors=True)
            total -= size
            evicted += 1
        return evicted, total
