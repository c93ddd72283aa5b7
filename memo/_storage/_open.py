"""Opening a store: a path gives the local-directory backend, a URL the fsspec one; either way
the same ``EntryStore`` above it. One store object per location and process, so budgets,
locks and leases are shared by every function using it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .._config import default_cache_dir
from ._disk import DiskBackend
from ._entries import EntryStore
from ._urls import is_remote, normalize

__all__ = ["default_location", "forget_stores", "open_store"]

_shared: dict[str, EntryStore] = {}
_shared_lock = threading.Lock()


def default_location() -> str | Path:
    """Where stores are by default: ``MEMO_CACHE_DIR`` (a directory or a URL), else the
    platform's user cache directory joined with ``memo``."""
    configured = os.environ.get("MEMO_CACHE_DIR", "").strip()
    return configured if is_remote(configured) else default_cache_dir()


def open_store(root: str | os.PathLike[str] | None = None) -> EntryStore:
    """The one store of this process at ``root`` (a directory, or an fsspec URL; by default
    ``default_location()``)."""
    text = os.fspath(default_location() if root is None else root)
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
