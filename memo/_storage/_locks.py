"""Per-key locks that stop concurrent processes and threads from computing the same entry twice.

Locks only avoid duplicate work; correctness never depends on them (publishing is atomic).

On POSIX every key locks one byte of a single ``.lock`` file per store, at an offset derived from
the key (``fcntl.lockf`` record locks). That costs two system calls and creates no file per key:
a per-key lock file would cost more than the whole store write. The kernel drops a process's
record locks when it dies, so a killed holder never blocks anyone. Record locks belong to the
process, so threads of one process are kept apart by an in-process claim per key first. Elsewhere
(Windows) it falls back to one ``filelock.FileLock`` per key.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from . import _files

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Claims", "KeyLocks", "hold"]

_POLL_START = 0.001
_POLL_MAX = 0.05
_TRY = fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl is not None else 0

_lock_files: dict[tuple[int, int], int] = {}  # (device, inode) -> this process's descriptor
_lock_users: dict[tuple[int, int], int] = {}  # (device, inode) -> KeyLocks objects using it
_lock_files_guard = threading.Lock()
# Lock files whose user went away. Appended by KeyLocks.__del__, which the garbage collector
# may run anywhere (even inside _open_lock_file, with the guard held): it must take no lock.
_released: list[tuple[int, int]] = []


class Claims:
    """The keys this process's threads and coroutines are computing, each with its holder.

    Claiming a free key is one ``dict.setdefault`` of a fresh entry, ``(owner,)``, which is
    the claim (atomic under the GIL, so no guard lock; the table only holds keys in use).
    Anyone else wanting that key waits on one condition for the whole table, notified when a
    claim is dropped while someone waits: an uncontended claim allocates no lock.
    """

    __slots__ = ("_changed", "_waiting", "busy")

    def __init__(self) -> None:
        self.busy: dict[str, tuple[Any]] = {}
        self._changed = threading.Condition(threading.Lock())
        self._waiting = 0

    def claim(self, key: str, owner: Any, timeout: float) -> tuple[Any] | None:
        """Claim ``key`` for ``owner`` (a thread id or a task), waiting up to ``timeout``
        seconds; the claim (for ``drop``), or None if the time ran out, or at once when
        ``owner`` holds it already (a function calling itself)."""
        mine = (owner,)
        holder = self.busy.setdefault(key, mine)
        if holder is mine:
            return mine
        if holder[0] == owner or timeout <= 0:
            return None
        deadline = time.monotonic() + timeout
        with self._changed:
            # Counted before looking again, under the condition's lock: a holder dropping
            # its claim after this look sees the count, and notifies once this waits.
            self._waiting += 1
            try:
                while self.busy.setdefault(key, mine) is not mine:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._changed.wait(min(remaining, threading.TIMEOUT_MAX))
                return mine
            finally:
                self._waiting -= 1

    def holder(self, key: str) -> Any:
        """The owner holding ``key``, or None."""
        entry = self.busy.get(key)
        return None if entry is None else entry[0]

    def drop_owned(self, key: str, owner: Any) -> None:
        """Give up ``owner``'s claim on ``key``, if it holds one (for a holder that kept no
        claim object: the async paths claim in one call and release in another)."""
        entry = self.busy.get(key)
        if entry is not None and entry[0] == owner:
            self.drop(key, entry)

    def drop(self, key: str, mine: tuple[Any]) -> None:
        """Give up a claim ``claim`` returned; waiters (for any key) look again."""
        if self.busy.get(key) is mine:
            del self.busy[key]  # only the holder removes its entry: no race with the get
        if self._waiting:
            with self._changed:
                self._changed.notify_all()


_claims = Claims()


def _after_fork() -> None:
    # A claim held by a parent's thread would never be dropped in the child.
    global _claims
    _claims = Claims()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _offset(key: str) -> int:
    """The byte of the lock file that stands for ``key`` (locking and unlocking, sync and
    async, must agree): the number its first 15 hex digits spell, 60 bits, so two keys in use
    at once never share a byte."""
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


class NoLocks:
    """The key locks of a read-only store: none are taken (nothing is written there, so a
    caller computes a missing key without waiting for anyone)."""

    def acquire(
        self, key: str, timeout: float, name: str = "", owner: Any = None
    ) -> tuple[Any, bool]:
        """``(None, False)``: no lock, compute anyway."""
        return None, False

    def release(self, key: str, claim: Any, held: bool) -> None:
        """Nothing to give back."""

    def absent(self, claim: Any) -> bool:
        """False: no lock shows anything."""
        return False

    def absent_async(self, key: str) -> bool:
        """False: no lock shows anything."""
        return False

    async def acquire_async(self, key: str, timeout: float, name: str = "") -> bool:
        """False: no lock."""
        return False

    def release_async(self, key: str) -> None:
        """Nothing to give back."""


class _Locks(Protocol):
    def acquire(
        self, key: str, timeout: float, name: str = "", owner: Any = None
    ) -> tuple[Any, bool]: ...
    def release(self, key: str, claim: Any, held: bool) -> None: ...


@contextmanager
def hold(locks: _Locks, key: str, timeout: float) -> Iterator[bool]:
    """Hold ``key``'s lock (of ``KeyLocks`` or a store's thread locks) while in the block; it
    gives False if ``timeout`` ran out, or at once when this thread holds it already.

    Entering raises ``OSError`` if the lock file cannot be used (read-only directory, ...);
    callers then go on without the lock.
    """
    claim, held = locks.acquire(key, timeout)
    try:
        yield held
    finally:
        if claim is not None:
            locks.release(key, claim, held)


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
            path = os.path.join(self.directory, ".lock")
            try:
                self._fd, self._identity = _open_lock_file(path)
            except FileNotFoundError:
                # A key may be locked before the store's first write has made its directory.
                _files.make_store_directory(self.directory)
                self._fd, self._identity = _open_lock_file(path)
        return self._fd

    def acquire(
        self, key: str, timeout: float, name: str = "", owner: Any = None
    ) -> tuple[Any, bool]:
        """Take ``key``'s lock, waiting up to ``timeout`` seconds: ``(claim, held)``
        (``name``, the entry's, is not needed: a key is unique in a store). ``owner``: the
        thread the claim is for (by default this one).

        ``held`` says whether this caller may compute alone. Unless ``claim`` is None, pass
        both to ``release`` when done (the claim keeps this process's other threads waiting
        even when ``held`` is False because another process kept the key too long). At once
        ``(None, False)`` when this thread holds the key already (a function calling itself).
        Raises ``OSError`` if the lock file cannot be used (read-only directory, ...); callers
        then go on without the lock.
        """
        if fcntl is None:  # pragma: no cover - Windows
            return key, self._acquire_filelock(key, timeout)
        # Every miss takes a lock: the uncontended case (no other thread of this process on
        # the key, the record lock free) reads no clock and waits for nothing.
        claims = _claims
        me = threading.get_ident() if owner is None else owner
        started = None
        mine = claims.claim(key, me, 0.0)
        if mine is None:  # another thread has it (or this one: then None again, at once)
            started = time.monotonic()
            mine = claims.claim(key, me, timeout)
            if mine is None:
                return None, False
        offset = _offset(key)
        try:
            if self._try_record(offset):
                held = True
            else:
                waited = 0.0 if started is None else time.monotonic() - started
                held = self._wait_record(offset, timeout - waited)
        except BaseException:
            claims.drop(key, mine)
            raise
        if held and _files.phase_hook is not None:
            _files.phase_hook("locked")
        # The claim carries the record's offset, so releasing need not derive it again.
        return (mine, offset), held

    def absent(self, claim: Any) -> bool:
        """False: a lock file knows nothing of entries (the caller looks: one ``stat``)."""
        return False

    def absent_async(self, key: str) -> bool:
        """False, as ``absent``."""
        return False

    def release(self, key: str, claim: Any, held: bool) -> None:
        """Give back what ``acquire`` returned (``claim`` not None)."""
        if fcntl is None:  # pragma: no cover - Windows
            if held:
                self._release_filelock(key)
            return
        mine, offset = claim
        try:
            if held:
                self._release_record(offset)
        finally:
            _claims.drop(key, mine)

    def _try_record(self, offset: int) -> bool:
        # An OSError opening the lock file (read-only directory) is not "busy": it propagates.
        fd = self._fd if self._fd is not None else self._lock_fd()
        try:
            fcntl.lockf(fd, _TRY, 1, offset)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def _release_record(self, offset: int) -> None:
        # Unlocking should never fail, but if it does the caller's result must not be lost to
        # it (locks only avoid duplicate work): try once more, then leave the lock to the
        # kernel, which drops it when this process exits (others wait at most their timeout).
        try:
            fd = self._fd if self._fd is not None else self._lock_fd()
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
        except OSError:
            with contextlib.suppress(OSError):
                fcntl.lockf(self._lock_fd(), fcntl.LOCK_UN, 1, offset)

    def _wait_record(self, offset: int, timeout: float) -> bool:
        """Poll for the record lock at ``offset`` until ``timeout`` (the first try failed)."""
        deadline = time.monotonic() + timeout
        pause = _POLL_START
        while not self._try_record(offset):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_MAX)
        return True

    async def acquire_async(self, key: str, timeout: float, name: str = "") -> bool:
        """Wait for ``key``'s lock without blocking the event loop; True when held (then
        call ``release_async``). False at once when this task holds the key already."""
        import asyncio  # (only async callers need it: not imported with memo)

        if fcntl is None:  # pragma: no cover - Windows
            return await asyncio.to_thread(self._acquire_filelock, key, timeout)
        owner = asyncio.current_task()
        deadline = time.monotonic() + timeout
        pause = _POLL_START
        while True:
            claims = _claims
            mine = claims.claim(key, owner, 0.0)
            if mine is not None:
                try:
                    got = self._try_record(_offset(key))
                except BaseException:
                    claims.drop(key, mine)
                    raise
                if got:
                    return True
                claims.drop(key, mine)
            elif claims.holder(key) is owner:
                return False  # this task computes it: waiting would only time out
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)

    def release_async(self, key: str) -> None:
        """Release a lock taken with ``acquire_async``."""
        import asyncio

        if fcntl is None:  # pragma: no cover - Windows
            self._release_filelock(key)
            return
        try:
            self._release_record(_offset(key))
        finally:
            # (Nothing to drop only in a child forked meanwhile: its table is a new one.)
            _claims.drop_owned(key, asyncio.current_task())

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

    def _acquire_filelock(self, key: str, timeout: float) -> bool:  # pragma: no cover
        import filelock

        try:
            self._filelock(key).acquire(timeout=-1 if timeout == float("inf") else timeout)
        except filelock.Timeout:
            return False
        return True

    def _release_filelock(self, key: str) -> None:  # pragma: no cover - Windows
        self._filelock(key).release()
