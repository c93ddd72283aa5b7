"""Per-key locks that stop concurrent processes and threads from computing the same entry twice.

Locks only avoid duplicate work; correctness never depends on them (publishing is atomic).

On POSIX every key locks one byte of a single ``.lock`` file per store, at an offset derived from
the key (``fcntl.lockf`` record locks). That costs two system calls and creates no file per key:
a per-key lock file would cost more than the whole store write. The kernel drops a process's
record locks when it dies, so a killed holder never blocks anyone. Record locks belong to the
process, so threads of one process are kept apart by an in-process lock per key first. Elsewhere
(Windows) it falls back to one ``filelock.FileLock`` per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _files

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["KeyLocks"]

_POLL_START = 0.001
_POLL_MAX = 0.05
_FOREVER = float("inf")
_TRY = fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl is not None else 0

_lock_files: dict[tuple[int, int], int] = {}  # (device, inode) -> this process's descriptor
_lock_users: dict[tuple[int, int], int] = {}  # (device, inode) -> KeyLocks objects using it
_lock_files_guard = threading.Lock()
# Lock files whose user went away. Appended by KeyLocks.__del__, which the garbage collector
# may run anywhere (even inside _open_lock_file, with the guard held): it must take no lock.
_released: list[tuple[int, int]] = []


class _InProcess:
    """Refcounted per-key thread locks, dropped when no thread uses them."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.table: dict[str, list[Any]] = {}
        # The thread holding each key through ``_Held``: a same-key call made while computing
        # (the function calling itself) is told at once that it cannot have the lock.
        self.owners: dict[str, int] = {}

    def get(self, name: str) -> threading.Lock:
        with self.guard:
            slot = self.table.get(name)
            if slot is None:
                slot = self.table[name] = [threading.Lock(), 0]
            slot[1] += 1
            lock: threading.Lock = slot[0]
            return lock

    def put(self, name: str) -> None:
        with self.guard:
            slot = self.table[name]
            slot[1] -= 1
            if slot[1] == 0:
                del self.table[name]


_threads = _InProcess()


def _after_fork() -> None:
    # A lock held by a parent's thread would never be released in the child.
    global _threads
    _threads = _InProcess()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _offset(key: str) -> int:
    """The byte of the lock file that stands for ``key`` (locking and unlocking must agree)."""
    return int(key[:15], 16)


def _open_lock_file(path: str) -> tuple[int, tuple[int, int]]:
    """The process's one descriptor for the lock file at ``path``, and the file's identity."""
    # Closing any descriptor of a file drops every record lock this process holds on it, so a
    # second one is never opened (and closed) while another is in use: look the file up first.
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with _lock_files_guard:
        _close_released()
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            identity = (st.st_dev, st.st_ino)
            known = _lock_files.get(identity)
            if known is not None:
                _lock_users[identity] = _lock_users.get(identity, 0) + 1
                return known, identity
        fd = os.open(path, flags, 0o600)
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino)
        _lock_users[identity] = _lock_users.get(identity, 0) + 1
        known = _lock_files.get(identity)
        if known is not None:
            # The file changed between the lookup and the open (a race with its
            # replacement): this descriptor stays open, unused, rather than drop locks.
            return known, identity
        _lock_files[identity] = fd
        return fd, identity


def _close_released() -> None:
    # Called with the guard held. The last user gone, no lock can be held through a
    # descriptor: close it, so a process that uses many short-lived stores (temporary
    # directories) does not run out of descriptors.
    while _released:
        identity = _released.pop()
        users = _lock_users.get(identity, 0) - 1
        if users > 0:
            _lock_users[identity] = users
            continue
        _lock_users.pop(identity, None)
        fd = _lock_files.pop(identity, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class _Held:
    """The lock of one key while a block runs (a class: cheaper than a generator)."""

    __slots__ = ("held", "key", "locks", "thread_lock", "threads", "timeout")

    def __init__(self, locks: KeyLocks, key: str, timeout: float) -> None:
        self.locks = locks
        self.key = key
        self.timeout = timeout
        self.held = False
        self.thread_lock: threading.Lock | None = None
        self.threads = _threads

    def __enter__(self) -> bool:
        # Every miss takes a lock, so the uncontended case (no other thread of this process
        # on the key, the record lock free) is kept to a few operations: no clock, no waiting.
        key = self.key
        threads = self.threads
        me = threading.get_ident()
        if threads.owners.get(key) == me:
            return False  # reentrant: this thread holds it, waiting would only time out
        thread_lock = threads.get(key)
        if not thread_lock.acquire(False):
            started = time.monotonic()
            wait = -1 if self.timeout == _FOREVER else max(self.timeout, 0.0)
            if not thread_lock.acquire(timeout=wait):
                threads.put(key)
                return False
            timeout = self.timeout - (time.monotonic() - started)
        else:
            timeout = self.timeout
        try:
            locks = self.locks
            self.held = locks._try_record(key) or locks._wait_record(key, timeout)
        except BaseException:
            thread_lock.release()
            threads.put(key)
            raise
        self.thread_lock = thread_lock
        threads.owners[key] = me
        if self.held:
            _files.reached("locked")
        return self.held

    def __exit__(self, *exc_info: object) -> None:
        thread_lock = self.thread_lock
        if thread_lock is None:
            return
        self.thread_lock = None
        threads = self.threads
        threads.owners.pop(self.key, None)
        try:
            if self.held:
                self.locks._release_record(self.key)
        finally:
            thread_lock.release()
            threads.put(self.key)


class KeyLocks:
    """Locks for the keys of one store directory."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    def __del__(self) -> None:
        if self._identity is not None:
            _released.append(self._identity)  # closed at the next lock file opened

    def forget_lock_file(self) -> None:
        """Open the lock file anew at next use (after the directory was recreated)."""
        identity, self._fd, self._identity = self._identity, None, None
        if identity is not None:
            _released.append(identity)

    def _lock_fd(self) -> int:
        if self._fd is None:
            self._fd, self._identity = _open_lock_file(os.path.join(self.directory, ".lock"))
        return self._fd

    def _try_record(self, key: str) -> bool:
        # An OSError opening the lock file (read-only directory) is not "busy": it propagates.
        fd = self._fd if self._fd is not None else self._lock_fd()
        try:
            fcntl.lockf(fd, _TRY, 1, _offset(key))
        except (BlockingIOError, PermissionError):
            return False
        return True

    def _release_record(self, key: str) -> None:
        # Unlocking should never fail, but if it does the caller's result must not be lost to
        # it (locks only avoid duplicate work): try once more, then leave the lock to the
        # kernel, which drops it when this process exits (others wait at most their timeout).
        offset = _offset(key)
        try:
            fcntl.lockf(self._lock_fd(), fcntl.LOCK_UN, 1, offset)
        except OSError:
            with contextlib.suppress(OSError):
                fcntl.lockf(self._lock_fd(), fcntl.LOCK_UN, 1, offset)

    def hold(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the lock for ``key`` while in the block; it gives False if ``timeout`` ran out.

        Entering raises ``OSError`` if the lock file cannot be used (read-only directory,
        ...); callers then go on without the lock.
        """
        if fcntl is None:  # pragma: no cover - Windows
            return self._hold_filelock(key, timeout)
        return _Held(self, key, timeout)

    def _wait_record(self, key: str, timeout: float) -> bool:
        """Poll for ``key``'s record lock until ``timeout`` (the first try has failed)."""
        deadline = time.monotonic() + timeout
        pause = _POLL_START
        while not self._try_record(key):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)
        return True

    async def acquire_async(self, key: str, timeout: float) -> bool:
        """Wait for ``key``'s lock without blocking the event loop; True when held."""
        if fcntl is None:  # pragma: no cover - Windows
            return await asyncio.to_thread(self._acquire_filelock, key, timeout)
        deadline = time.monotonic() + timeout
        threads = _threads
        thread_lock = threads.get(key)
        pause = _POLL_START
        while True:
            if thread_lock.acquire(blocking=False):
                try:
                    got = self._try_record(key)
                except BaseException:
                    thread_lock.release()
                    threads.put(key)
                    raise
                if got:
                    return True
                thread_lock.release()
            if time.monotonic() >= deadline:
                threads.put(key)
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def release_async(self, key: str) -> None:
        """Release a lock taken with ``acquire_async``."""
        if fcntl is None:  # pragma: no cover - Windows
            self._release_filelock(key)
            return
        threads = _threads
        self._release_record(key)
        slot = threads.table.get(key)
        if slot is not None:
            slot[0].release()
            threads.put(key)

    # --- Windows fallback ----------------------------------------------------------------

    _filelocks: dict[str, Any]

    def _filelock(self, key: str) -> Any:  # pragma: no cover - Windows
        import filelock

        locks = self.__dict__.setdefault("_filelocks", {})
        if key not in locks:
            folder = os.path.join(self.directory, ".locks")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            locks[key] = filelock.FileLock(os.path.join(folder, key + ".lock"))
        return locks[key]

    @contextmanager
    def _hold_filelock(self, key: str, timeout: float) -> Iterator[bool]:  # pragma: no cover
        held = self._acquire_filelock(key, timeout)
        try:
            yield held
        finally:
            if held:
                self._release_filelock(key)

    def _acquire_filelock(self, key: str, timeout: float) -> bool:  # pragma: no cover
        import filelock

        try:
            self._filelock(key).acquire(timeout=-1 if timeout == float("inf") else timeout)
        except filelock.Timeout:
            return False
        return True

    def _release_filelock(self, key: str) -> None:  # pragma: no cover - Windows
        self._filelock(key).release()
