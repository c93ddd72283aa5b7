"""Opening a store: a path gives the local-directory backend, a URL the fsspec one; either way
the same ``EntryStore`` above it. One store object per location and process, so budgets,
locks and leases are shared by every function using it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ._backend import Backend
from ._disk import DiskBackend
from ._entries import EntryStore
from ._urls import normalize

if TYPE_CHECKING:
    from ._fsspec import RemoteSettings

__all__ = ["forget_stores", "open_store"]

_shared: dict[str, EntryStore] = {}
_shared_lock = threading.Lock()


def open_store(
    root: str | Path,
    remote: RemoteSettings | None = None,
    read_only: bool = False,
    signed_only: bool = False,
) -> EntryStore:
    """The one store of this process at ``root`` (a directory, or an fsspec URL, as
    ``location`` gives them), opened with the ``remote`` settings if it is a URL and the
    first opener (by default, none: memo's defaults); ``read_only``: the one that never
    writes there, ``signed_only``: the one that uses only signed entries there (each a store
    of its own, beside the plain one)."""
    where = normalize(root) if isinstance(root, str) else str(root.absolute())
    shared = where + ("?read-only" if read_only else "") + ("?signed-only" if signed_only else "")
    with _shared_lock:
        store = _shared.get(shared)
        if store is None:
            if isinstance(root, str):
                from ._fsspec import FsspecBackend, RemoteSettings  # fsspec only for a URL

                backend: Backend = FsspecBackend(where, remote or RemoteSettings())
            else:
                backend = DiskBackend(where)
            store = EntryStore(backend, read_only, signed_only)
            _shared[shared] = store
        return store


def forget_stores() -> None:
    """Drop every store object (tests start as a new process would)."""
    with _shared_lock:
        _shared.clear()
