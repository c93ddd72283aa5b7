"""Opening a store: a path gives the local-directory backend, a URL the fsspec one; either way
the same ``EntryStore`` above it. One store object per location and process, so budgets,
locks and leases are shared by every function using it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ._disk import DiskBackend
from ._entries import EntryStore
from ._urls import is_remote, normalize

__all__ = ["forget_stores", "open_store"]

_shared: dict[str, EntryStore] = {}
_shared_lock = threading.Lock()


def open_store(root: str | os.PathLike[str]) -> EntryStore:
    """The one store of this process at ``root`` (a directory, or an fsspec URL)."""
    text = os.fspath(root)
    remote = is_remote(text)
    where = normalize(text) if remote else str(Path(text).expanduser().absolute())
    with _shared_lock:
        store = _shared.get(where)
        if store is None:
            if remote:
                from ._fsspec import FsspecBackend  # fsspec only for a URL

                store = EntryStore(FsspecBackend(where))
            else:
                store = EntryStore(DiskBackend(where))
            _shared[where] = store
        return store


def forget_stores() -> None:
    """Drop every store object (tests start as a new process would)."""
    with _shared_lock:
        _shared.clear()
