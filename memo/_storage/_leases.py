"""Key leases on an object store: N machines missing one key compute it once.

Object stores have no locks, but most have a create-only write (S3 ``If-None-Match: *``, GCS
``ifGenerationMatch=0``, fsspec's ``mode="create"``). A caller missing a key writes a small
lease object for it, create-only: the one whose write succeeds computes, and a heartbeat
thread rewrites the lease while the body runs. Everyone else polls, with bounded and jittered
backoff, until the entry appears (then loads it), the lease is released (then takes it), or
the lease has not changed for its length by the waiter's own clock, so clocks of different
machines never matter: its holder died or was cut off. Taking over an expired lease is a
create-only write of a marker named after that very lease, so exactly one waiter wins.

A holder that stored its entry does not delete its lease: it rewrites it as *done* (one
request either way). So a caller whose create-only lease write succeeds knows that nobody
stored the entry since it missed it, without looking again: whoever stored it meanwhile would
have left a lease, done or not, in the way. A done lease whose entry is gone (deleted since)
is taken over at once; deleting an entry deletes its lease too.

The lease never decides correctness: entries are still published create-only after a miss,
so a holder that lost its lease (frozen, then resumed) cannot overwrite the winner's entry.
A lease that cannot be written or read (a network error, a backend without create-only
writes) degrades to what happens without leases, other machines may compute the key too,
with one warning.

Settings (durations such as ``"30s"``): ``MEMO_LEASE`` (length, default 60 s),
``MEMO_LEASE_HEARTBEAT`` (default a quarter of it), ``MEMO_LEASE_POLL`` (the longest pause
between two looks of a waiter, default 1 s).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from typing import Any, NamedTuple, Protocol

from .._exceptions import warn_once
from . import _lease_body as lease_body
from ._locks import Claims

__all__ = ["LeaseSettings", "ObjectLeases", "Objects"]

logger = logging.getLogger("memo")
_FIRST_PAUSE = 0.02
_CLAIM_POLL_MAX = 0.05  # async waits for this process's own tasks


class LeaseSettings(NamedTuple):
    """How long a lease lasts unrenewed, how often its holder renews it, and the longest
    pause between a waiter's looks (seconds)."""

    seconds: float = 60.0
    heartbeat: float = 15.0
    poll: float = 1.0


class Objects(Protocol):
    """What leases need of a backend: small objects by path, and whether an entry is there."""

    root: Any
    """The store's URL, for messages."""

    def create_object(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` only if nothing is there: ``FileExistsError`` else;
        ``NotImplementedError`` if the backend cannot write create-only."""
        ...

    def put_object(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path``, replacing what is there."""
        ...

    def get_object(self, path: str) -> bytes | None:
        """The bytes at ``path``, or None if there are none."""
        ...

    def remove_object(self, path: str) -> None:
        """Remove ``path`` if it is there."""
        ...

    def lease_path(self, name: str, key: str) -> str:
        """Where the lease of an entry lives."""
        ...

    def exists(self, name: str, key: str) -> bool:
        """Whether the entry is there."""
        ...


class _Held:
    """A lease this process holds, with the heartbeat thread that renews it."""

    def __init__(
        self, objects: Objects, path: str, token: str, settings: LeaseSettings, written: float
    ) -> None:
        self.objects = objects
        self.path = path
        self.token = token
        self.settings = settings
        self.marker: str | None = None  # the takeover marker this holder wrote, if any
        self.lost = False
        self.done = False  # its entry was stored: the lease stays, as done, when released
        # When this holder last wrote its lease (before the write was sent), by a clock that
        # counts a suspended machine's sleep too: see ``release``.
        self.written = written
        self._stop = threading.Event()
        self._beat = 0
        self._thread = threading.Thread(target=self._renew, name="memo-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.settings.heartbeat):
            try:
                current = self.objects.get_object(self.path)
                if current is None or lease_body.holder(current) != self.token:
                    # Taken over (this holder was frozen or cut off past its lease): stop
                    # renewing; the create-only publish keeps the winner's entry.
                    self.lost = True
                    logger.debug("lost the lease %s", self.path)
                    return
                self._beat += 1
                sent = _elapsed_clock()
                self.objects.put_object(
                    self.path, lease_body.body(self.token, self._beat, self.settings.seconds)
                )
                self.written = sent
            except Exception as exc:
                _warn_lease(self.objects, self.path, "renew", exc)

    def release(self) -> None:
        """End the lease if it is still this holder's: rewritten as done once its entry is
        stored, removed otherwise (the body failed, or its result was not stored). A waiter
        takes a lease over only once it has seen it unchanged for its whole length, so while
        less than half of that has passed since this holder last wrote it, it is this
        holder's and is ended without being read back first (the usual case: one request);
        later (a long body whose heartbeat may have failed, a holder frozen or a machine
        suspended) it is read, and left alone if another holder has it."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.settings.heartbeat)
        try:
            if not self.lost:  # (a lost lease is another holder's now: left alone)
                if _elapsed_clock() - self.written < self.settings.seconds / 2:
                    self._end()
                else:
                    current = self.objects.get_object(self.path)
                    if current is not None and lease_body.holder(current) == self.token:
                        self._end()
            if self.marker is not None:
                self.objects.remove_object(self.marker)
        except Exception as exc:
            # An unreleased lease expires on its own; waiters then take it and find the entry.
            _warn_lease(self.objects, self.path, "release", exc)

    def _end(self) -> None:
        if self.done:
            self.objects.put_object(self.path, lease_body.done_body(self.token))
        else:
            self.objects.remove_object(self.path)


class ObjectLeases:
    """Key leases shared by every process and machine using one object store (``KeyLocks``).

    Threads (and tasks) of one process first wait for each other per key in memory, so one
    lease object stands for the whole process.
    """

    def __init__(self, objects: Objects, settings: LeaseSettings | None = None) -> None:
        self._objects = objects
        self.settings = settings or LeaseSettings()
        self.enabled = True  # False once the backend turned out to have no create-only writes
        self._pid = os.getpid()
        self._claims = Claims()
        self._async: dict[tuple[str, Any], _Held | None] = {}
        self._holding: dict[str, _Held] = {}  # by lease path: the leases this process holds

    def _current(self) -> Claims:
        if self._pid != os.getpid():
            # A claim held by a parent's thread would never be dropped in a forked child.
            self._pid, self._claims, self._async = os.getpid(), Claims(), {}
            self._holding = {}
        return self._claims

    def stored(self, name: str, key: str) -> None:
        """The entry of ``name``'s ``key`` was stored (or found stored) by this process: a
        lease it holds for it is left behind as done when released."""
        held = self._holding.get(self._objects.lease_path(name, key))
        if held is not None:
            held.done = True

    def absent(self, claim: Any) -> bool:
        """Whether ``claim`` holds a lease, which shows the entry was not stored when it was
        taken (a new lease: no one stored it meanwhile; a takeover: looked for first), so
        the caller need not look for it again."""
        return claim is not None and claim[1] is not None

    def acquire(
        self, key: str, timeout: float, name: str = "", owner: Any = None
    ) -> tuple[Any, bool]:
        """``(claim, held)`` as ``Backend.locks`` gives them: ``held`` once this process's
        threads and then the store's lease let this caller compute (or the entry appeared).
        ``owner``: the thread the claim is for (by default this one)."""
        claims = self._current()
        started = time.monotonic()
        mine = claims.claim(key, threading.get_ident() if owner is None else owner, timeout)
        if mine is None:
            return None, False
        try:
            held, lease = self.take(name, key, timeout - (time.monotonic() - started))
        except BaseException:
            claims.drop(key, mine)
            raise
        return (mine, lease), held

    def release(self, key: str, claim: Any, held: bool) -> None:
        """Give back what ``acquire`` returned: the lease first, then this process's claim."""
        mine, lease = claim
        try:
            if lease is not None:
                self._end(lease)
        finally:
            self._current().drop(key, mine)

    async def acquire_async(self, key: str, timeout: float, name: str = "") -> bool:
        """Wait for ``key`` without blocking the event loop; True when held. False at once
        when this task holds the key already."""
        import asyncio  # (only async callers need it)

        claims = self._current()
        owner = asyncio.current_task()
        deadline = time.monotonic() + timeout
        pause = _FIRST_PAUSE
        while claims.claim(key, owner, 0.0) is None:
            if claims.holder(key) is owner or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _CLAIM_POLL_MAX)
        try:
            held, lease = await asyncio.to_thread(self.take, name, key, deadline - time.monotonic())
        except BaseException:
            claims.drop_owned(key, owner)
            raise
        self._async[(key, owner)] = lease
        return held

    def release_async(self, key: str) -> None:
        """Give back a lease taken with ``acquire_async``."""
        import asyncio

        owner = asyncio.current_task()
        lease = self._async.pop((key, owner), None)
        try:
            if lease is not None:
                self._end(lease)
        finally:
            self._current().drop_owned(key, owner)

    def is_done(self, path: str) -> bool:
        """Whether the lease at ``path`` is a done one (its entry was stored)."""
        data = self._objects.get_object(path)
        return data is not None and lease_body.is_done(data)

    def leftover_marker(self, path: str, age: float) -> bool:
        """Whether ``path`` is a takeover marker, ``age`` seconds old, that a taker which died
        left behind (``lease_body.leftover_marker``): read with the lease it names."""
        lease = lease_body.marked_lease(path)
        if lease is None:
            return False
        objects = self._objects
        return lease_body.leftover_marker(
            objects.get_object(path), objects.get_object(lease), age, self.settings.seconds
        )

    def absent_async(self, key: str) -> bool:
        """``absent`` for the lease this task took with ``acquire_async``."""
        import asyncio

        return self._async.get((key, asyncio.current_task())) is not None

    def _end(self, lease: _Held) -> None:
        self._holding.pop(lease.path, None)
        lease.release()

    def take(self, name: str, key: str, timeout: float) -> tuple[bool, _Held | None]:
        """Take the lease of ``name``'s ``key``, waiting up to ``timeout`` seconds while
        another holds it: ``(held, lease)``. A lease shows the entry was not there when it
        was taken. ``held`` without a lease when the entry appeared meanwhile (the caller
        loads it) or leases cannot be used (it computes, as without); not ``held`` when the
        time ran out."""
        if not self.enabled:
            return True, None
        objects, settings = self._objects, self.settings
        path = objects.lease_path(name, key)
        token = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(8).hex()}"
        deadline = time.monotonic() + timeout
        pause = _FIRST_PAUSE
        seen: bytes | None = None
        seen_since = 0.0
        try:
            while True:
                sent = _elapsed_clock()
                try:
                    objects.create_object(path, lease_body.body(token, 0, settings.seconds))
                except FileExistsError:
                    pass
                else:
                    return True, self._start(path, token, sent)
                # The lease before the entry: a done lease is written after its entry, so
                # one seen done with no entry after it means the entry was deleted since.
                current = objects.get_object(path)
                if objects.exists(name, key):
                    return True, None  # published meanwhile: the caller loads it
                now = time.monotonic()
                if current is None:
                    pass  # released just now: try to take it again after a short pause
                elif lease_body.is_done(current):
                    held = self._take_over(path, current, token)
                    if held is not None:
                        return True, held
                elif current != seen:
                    seen, seen_since = current, now  # renewed (or new): it is alive
                elif now - seen_since > lease_body.length(current, settings.seconds):
                    held = self._take_over(path, current, token)
                    if held is not None:
                        return True, held
                    seen, seen_since = None, 0.0  # another waiter took it over
                if now >= deadline:
                    return False, None
                time.sleep(min(pause * random.uniform(0.75, 1.25), max(0.0, deadline - now)))
                if current is not None:
                    pause = min(pause * 1.5, settings.poll)
        except NotImplementedError:
            self.enabled = False
            warn_once(
                ("lease-unsupported", str(objects.root)),
                f"memo: {objects.root} has no create-only writes, so machines "
                "sharing it may compute a missing result more than once (never a wrong one)",
                stacklevel=6,
            )
            return True, None
        except Exception as exc:
            _warn_lease(objects, path, "take", exc)
            return True, None

    def _take_over(self, path: str, expired: bytes, token: str) -> _Held | None:
        """Take over a lease unchanged for its whole length (its holder is gone) or done with
        no entry (deleted since), or None if another waiter did: the marker names this very
        lease (holder and beat), so of the waiters that saw it exactly one creates it."""
        marker = lease_body.marker_path(path, expired)
        try:
            self._objects.create_object(marker, token.encode())
        except FileExistsError:
            return None
        sent = _elapsed_clock()
        self._objects.put_object(path, lease_body.body(token, 0, self.settings.seconds))
        logger.debug("took over the lease %s", path)
        return self._start(path, token, sent, marker)

    def _start(self, path: str, token: str, sent: float, marker: str | None = None) -> _Held:
        held = _Held(self._objects, path, token, self.settings, sent)
        held.marker = marker
        self._holding[path] = held
        held.start()
        return held


def _elapsed_clock() -> float:
    """Seconds by a clock that never goes back and, where there is one (Linux's
    CLOCK_BOOTTIME), goes on while the machine is suspended: waiters on other machines see
    that time pass."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic()
    return time.clock_gettime(boottime)


def _warn_lease(objects: Objects, path: str, what: str, exc: BaseException) -> None:
    """One warning per store, step and kind of error."""
    detail = " ".join(str(exc).split())[:200] or "no detail"
    name = path.rpartition("/")[2]
    warn_once(
        ("lease", what, str(objects.root), type(exc).__name__),
        f"memo: could not {what} the lease {name} in {objects.root} ({type(exc).__name__}: "
        f"{detail}); other machines may compute this result meanwhile (never a wrong one)",
        stacklevel=5,
    )
