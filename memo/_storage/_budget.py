"""A store's size budget: least-recently-used entries are evicted as new ones are written.

Last use is what the backend records (a file's access time, set on hits at most once a
minute); only backends with last-use times have a budget. Each process keeps a running total
and lists the store again only when the total passes the limit, so writes stay cheap.
Eviction deletes entries: a reader that already opened one still reads it whole, a later
reader sees a miss, and a memory-mapped array keeps its data alive.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = ["Budget"]

_TARGET = 0.9  # evict down to this share of the limit, so eviction does not run every write


class Budget:
    """The size limit of one store, shared by everything in this process using it."""

    def __init__(self, backend: Backend, limit: int) -> None:
        self.backend = backend
        self.limit = limit
        self._used: int | None = None
        self._lock = threading.Lock()

    def fits(self, size: int) -> bool:
        """Whether an entry of ``size`` bytes can be stored at all."""
        return size <= self.limit

    def used(self) -> int:
        """Bytes the store's entries take now (listed again)."""
        return sum(entry.bytes for entry in self.backend.listing())

    def record(self, size: int) -> int:
        """Count a newly written entry; evict the least recently used if over. Returns the
        number of entries evicted."""
        with self._lock:
            if self._used is None:
                self._used = self.used()  # the new entry is already stored
            else:
                self._used += size
            if self._used <= self.limit:
                return 0
            evicted, self._used = self._evict()
            return evicted

    def _evict(self) -> tuple[int, int]:
        entries = sorted(self.backend.listing())  # least recently used first
        total = sum(entry.bytes for entry in entries)
        target = int(self.limit * _TARGET)
        evicted = 0
        for entry in entries:
            if total <= target:
                break
            try:
                # (False if gone already: evicted elsewhere)
                self.backend.delete(entry.name, entry.key, None, entry.part)
            except OSError:
                continue
            total -= entry.bytes
            evicted += 1
        return evicted, total
