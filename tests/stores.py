"""Store objects for tests that use a store directly, as memo's call code does."""

from __future__ import annotations

import os

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
