"""Store objects for tests that use a store directly, as memo's call code does."""

from __future__ import annotations

import os
from typing import Any

from memo._storage._disk import DiskBackend
from memo._storage._entries import EntryStore


def disk(store: EntryStore) -> DiskBackend:
    """The local-directory backend under ``store`` (for tests that reach into it)."""
    backend = store.backend
    assert isinstance(backend, DiskBackend)
    return backend


def LocalStore(root: str | os.PathLike[str]) -> EntryStore:  # noqa: N802 (reads as a class)
    """A new (unshared) store on the local directory ``root``."""
    return EntryStore(DiskBackend(root))


def entry_store(func: Any) -> EntryStore:
    """The internal store a memoized function writes through (``f.store`` is the public
    ``memo.Store``), for tests that read its entries' files and headers directly."""
    store: EntryStore = func._calls.setup().store
    return store
