"""``CallPath``: what happens on a call of a memoized function: bind and key it, look it up,
or compute it under its key's lease and store it; ``call`` and ``acall`` (for an ``async def``)
side by side, sharing named steps.

Data flows one way: a call is bound and encoded into a key (``_keys``), then looked up in, or
computed and written to, a store (``_storage``). Everything that can be decided once (options,
argument binding strategy, the store) is decided at decoration time or at the first call, so a
cache hit does only: bind, encode, hash, open, verify, load.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from time import monotonic, perf_counter_ns, time_ns
from typing import Any

from ._blessings import read_blessing
from ._config import (
    cache_skip_from_env,
    default_location,
    disabled_from_env,
    max_size_from_env,
    remote_settings_from_env,
    secret_keys_from_env,
)
from ._exceptions import warn_once
from ._keys._key import EXTRA, NO_EXTRA, KeyMaker
from ._lazy import collecting, metadata_json, stop_collecting
from ._options import Options
from ._storage._backend import MISS, StoreError, sanitize
from ._storage._entries import EntryExistsError, EntryStore
from ._storage._open import open_store
from ._version import __version__

__all__ = ["CallPath", "State"]

logger = logging.getLogger("memo")
_process_id = os.getpid()
_BLESSINGS_FRESH = 60.0  # seconds a read of a function's blessing stands (one GET on S3)
_PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))  # (platform.python_version())


def _forked() -> None:
    global _process_id
    _process_id = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class State:
    """What the first call settles: the stores, signing keys and the environment switches.

    ``store`` is read first (the hit path); ``lower`` are the tiers after it, read in order on
    a miss; ``writer`` is the first writable tier, where leases are taken and results stored
    (the first tier if none is writable: it then stores nothing); ``copies`` are the other
    writable tiers, written too with ``write="all"``."""

    __slots__ = (
        "copies",
        "disabled",
        "lower",
        "secret",
        "secret_keys",
        "skip",
        "store",
        "tiers",
        "writable",
        "writer",
    )

    def __init__(self, options: Options) -> None:
        where = default_location() if options.cache_path is None else options.cache_path
        tiers = [_open(where, options.read_only, options.signed_only)]
        tiers += [_open(*lower) for lower in options.lower]
        self.tiers = tuple(tiers)  # every tier, in the order they are read
        self.store = tiers[0]
        self.lower = tuple(tiers[1:])
        writable = [tier for tier in tiers if not tier.read_only]
        self.writable = tuple(writable)
        self.writer = writable[0] if writable else tiers[0]
        self.copies = tuple(writable[1:]) if options.write_all else ()
        max_size = options.max_size if options.max_size is not None else max_size_from_env()
        if max_size is not None:
            self.writer.limit_size(max_size)
        self.disabled = disabled_from_env()
        self.skip = options.cache_skip or cache_skip_from_env()
        keys = options.secret_keys or secret_keys_from_env()
        self.secret_keys: tuple[bytes, ...] = tuple(keys)
        self.secret: bytes | None = keys[0] if keys else None


def _open(where: str | Path, read_only: bool, signed_only: bool) -> EntryStore:
    remote = remote_settings_from_env() if isinstance(where, str) else None
    return open_store(where, remote, read_only, signed_only)


class CallPath:
    """The call path a memoized function holds: its key maker, the state its first call
    settles, its counts, and the call itself, ``call`` and ``acall`` side by side."""

    def __init__(self, func: Callable[..., Any], options: Options, qualname: str) -> None:
        self.func = func
        self.options = options
        self.maker = KeyMaker(func, ignore=options.ignore, version=options.version, key=options.key)
        self.name = sanitize(qualname)
        self.serializers = options.serializers
        self.max_age = options.max_age
        self._validate = options.validate
        self._store_if = options.store_if
        self._lock_timeout = 0.0  # (settled at the first call, with MEMO_LOCK_TIMEOUT)
        self.state: State | None = None
        self._declares_extra = self.maker.declares_extra
        self._plain = self.max_age is None and self._validate is None
        # The metadata shared by this process's entries, with the pid and the code fingerprint
        # it was made for (a rebound global takes the fingerprint anew).
        self._fixed: tuple[int, str, str] | None = None
        # The code fingerprint this process read blessings for, and those it answers for.
        self._blessings: tuple[str, tuple[str, ...], float] | None = None
        self.hits = self.misses = self.stores = self.errors = 0

    def setup(self) -> State:
        """The state, settled at the first call (every MEMO_* setting is read then)."""
        state = self.state
        if state is None:
            # (The timeout is set before the state is, so a thread that sees the state sees it.)
            self._lock_timeout = self.options.effective_lock_timeout()
            state = self.state = State(self.options)
        return state

    # --- calling -------------------------------------------------------------------------

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call of a ``def`` (``kwargs`` is the call's own dict: an undeclared
        ``_extra_cache_key`` is taken out of it)."""
        state = self.state or self.setup()
        extra = self.take_extra(kwargs)
        if state.disabled:
            return self.func(*args, **kwargs)
        key, labels, values = self.maker.bind(args, kwargs, extra)
        if not state.skip:
            if self._plain:
                # The hit path with no expiry or validation: nothing but load (and check the
                # signature).
                hit = state.store.load(self.name, key, self.serializers, state.secret_keys)
                if hit is not MISS:
                    self.hits += 1
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("hit %s %s", self.maker.qualname, key[:12])
                    return hit
                if state.lower:
                    value = self.lookup(state, key, lower_only=True)
                    if value is not MISS:
                        return value
            else:
                value = self.lookup(state, key)
                if value is not MISS:
                    return value
            value = self.blessed_lookup(state, labels, values, extra)
            if value is not MISS:
                return value
        return self._compute(state, key, args, kwargs, labels, values, extra, state.skip)

    async def acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``call`` for an ``async def``, step for step: the awaited value is stored."""
        state = self.state or self.setup()
        extra = self.take_extra(kwargs)
        if state.disabled:
            return await self.func(*args, **kwargs)
        key, labels, values = self.maker.bind(args, kwargs, extra)
        if not state.skip:
            value = self.find(state, key, labels, values, extra)
            if value is not MISS:
                return value
        return await self._acompute(state, key, args, kwargs, labels, values, extra, state.skip)

    def call_missing(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], refresh: bool = False
    ) -> Any:
        """A call a batch found missing: straight to computing under its key's lease, which
        looks for the entry once held (another caller may have stored it meanwhile), with no
        lookup before it but the blessings'. ``refresh``: computed whether stored or not, and
        stored over the old entry. (``kwargs``: the call's own dict, as for ``call``.)"""
        state = self.state or self.setup()
        if refresh:
            state.writer.refuse_if_read_only("refresh a call")
        extra = self.take_extra(kwargs)
        if state.disabled:
            return self.func(*args, **kwargs)  # MEMO_DISABLE: nothing is stored
        key, labels, values = self.maker.bind(args, kwargs, extra)
        skip = refresh or state.skip
        value = MISS if skip else self.blessed_lookup(state, labels, values, extra)
        if value is not MISS:
            return value
        return self._compute(state, key, args, kwargs, labels, values, extra, skip)

    async def acall_missing(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], refresh: bool = False
    ) -> Any:
        """``call_missing`` for an ``async def``."""
        state = self.state or self.setup()
        if refresh:
            state.writer.refuse_if_read_only("refresh a call")
        extra = self.take_extra(kwargs)
        if state.disabled:
            return await self.func(*args, **kwargs)
        key, labels, values = self.maker.bind(args, kwargs, extra)
        skip = refresh or state.skip
        value = MISS if skip else self.blessed_lookup(state, labels, values, extra)
        if value is not MISS:
            return value
        return await self._acompute(state, key, args, kwargs, labels, values, extra, skip)

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The cache key of a call (its keywords left as they are)."""
        call_kwargs, extra = self.maker.split_extra(kwargs)
        return self.maker.key(args, call_kwargs, extra)

    def take_extra(self, kwargs: dict[str, Any]) -> Any:
        """Take an undeclared ``_extra_cache_key`` out of a call's keywords."""
        if kwargs and EXTRA in kwargs and not self._declares_extra:
            return kwargs.pop(EXTRA)
        return NO_EXTRA

    def lookup(self, state: State, key: str, lower_only: bool = False) -> Any:
        """The stored, unexpired and valid value of a key (counted as a hit), or ``MISS``: from
        the first tier, else the first lower one holding it (``lower_only``: the first tier
        was looked in already)."""
        value = (
            MISS
            if lower_only
            else state.store.load(self.name, key, self.serializers, state.secret_keys, self.max_age)
        )
        if value is MISS and state.lower:
            value = self._from_lower(state, key)
        if value is MISS:
            return MISS
        if self._validate is not None and not self._passes(value, key, cached=True):
            return MISS
        self.hits += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("hit %s %s", self.maker.qualname, key[:12])
        return value

    def find(self, state: State, key: str, labels: Any, values: Any, extra: Any) -> Any:
        """The stored value of a call (``key``, or an earlier code's key a blessing answers
        for), counted as a hit, or ``MISS``; nothing is computed."""
        value = self.lookup(state, key)
        return self.blessed_lookup(state, labels, values, extra) if value is MISS else value

    def blessings(self, state: State) -> tuple[str, ...]:
        """The earlier code fingerprints the current one answers for (read at a miss, then
        taken as read for a minute: a blessing another process writes is seen at the first
        miss after that)."""
        code = self.maker.code_fingerprint
        known = self._blessings
        if known is None or known[0] != code or monotonic() - known[2] > _BLESSINGS_FRESH:
            record = read_blessing(
                state.tiers, self.name, self.maker.qualname, code, state.secret_keys
            )
            earlier = tuple(record["from"]) if record else ()
            known = self._blessings = (code, earlier, monotonic())
        return known[1]

    def forget_blessings(self) -> None:
        """Read the blessings again at the next miss (one was just written)."""
        self._blessings = None

    def blessed_lookup(self, state: State, labels: Any, values: Any, extra: Any) -> Any:
        """The value an earlier code fingerprint stored for this call, where a blessing says
        the current one answers for it; else ``MISS``."""
        for earlier in self.blessings(state):
            value = self.lookup(state, self.maker.key_under(earlier, labels, values, extra))
            if value is not MISS:
                return value
        return MISS

    def _from_lower(self, state: State, key: str) -> Any:
        """The value of the first lower tier holding the key (or ``MISS``), its entry copied
        as it is into each writable tier above that one (digests checked first)."""
        above = [state.store]
        signed = bool(state.secret_keys)  # (then every tier's loads check signatures)
        for tier in state.lower:
            value = tier.load(self.name, key, self.serializers, state.secret_keys, self.max_age)
            if value is not MISS:
                for upper in above:
                    if not upper.read_only and upper.copy_from(tier, self.name, key, signed):
                        logger.debug("copied up %s %s", self.maker.qualname, key[:12])
                return value
            above.append(tier)
        return MISS

    def _compute(
        self,
        state: State,
        key: str,
        args: Any,
        kwargs: Any,
        labels: Any,
        values: Any,
        extra: Any,
        skip: bool,
    ) -> Any:
        """Compute a call under its key's lock and store the result (``labels`` and
        ``values``: the bound arguments, from ``KeyMaker.bind``)."""
        claim, held, value = self.claim(state, key, skip)
        try:
            if value is not MISS:
                return value
            debug = self.note_miss(key, skip)
            collected, token, started = self.begin()
            try:
                value = self.func(*args, **kwargs)
            finally:
                elapsed_ns = self.end(token, started)
            return self.store_result(
                state, key, value, labels, values, extra, elapsed_ns, collected, debug
            )
        finally:
            if claim is not None:
                state.writer.locks.release(key, claim, held)

    async def _acompute(
        self,
        state: State,
        key: str,
        args: Any,
        kwargs: Any,
        labels: Any,
        values: Any,
        extra: Any,
        skip: bool,
    ) -> Any:
        """``_compute`` for an ``async def``: the lock is waited for without blocking the loop."""
        locks = state.writer.locks
        try:
            held = await locks.acquire_async(key, self._lock_timeout, self.name)
        except (OSError, StoreError):
            held = False
        try:
            absent = held and locks.absent_async(key)
            value = self.stored_meanwhile(state, key, held, skip, absent)
            if value is not MISS:
                return value
            debug = self.note_miss(key, skip)
            collected, token, started = self.begin()
            try:
                value = await self.func(*args, **kwargs)
            finally:
                elapsed_ns = self.end(token, started)
            return self.store_result(
                state, key, value, labels, values, extra, elapsed_ns, collected, debug
            )
        finally:
            if held:
                locks.release_async(key)

    def claim(self, state: State, key: str, skip: bool, owner: Any = None) -> tuple[Any, bool, Any]:
        """Take a key's lock (for the thread ``owner``, by default this one) and look for an
        entry stored meanwhile: ``(claim, held, value)``, the value ``MISS`` unless found.
        Where locks cannot be used (a read-only directory) the caller computes without one;
        unless ``claim`` is None, give it back with ``state.writer.locks.release``."""
        locks = state.writer.locks  # (they make the directory if the store has not written yet)
        try:
            claim, held = locks.acquire(key, self._lock_timeout, self.name, owner)
        except (OSError, StoreError):
            claim, held = None, False  # cannot lock (e.g. read-only directory): compute anyway
        try:
            return claim, held, self.stored_meanwhile(state, key, held, skip, locks.absent(claim))
        except BaseException:
            if claim is not None:
                locks.release(key, claim, held)
            raise

    def stored_meanwhile(
        self, state: State, key: str, held: bool, skip: bool, absent: bool = False
    ) -> Any:
        """The entry another process stored while we waited for the lock, or ``MISS`` (asked
        first whether it exists: the usual answer, no entry, then costs no open).
        ``absent``: the lock showed it was not stored (object leases), so it is not looked
        for."""
        if held and not skip and not absent and state.writer.exists(self.name, key):
            return self.lookup(state, key)
        if not held:
            logger.debug("no lock for %s %s; computing anyway", self.maker.qualname, key[:12])
        return MISS

    @staticmethod
    def begin() -> tuple[dict[str, Any], Any, int]:
        """Start a computation: collect its ``add_metadata`` items and its time."""
        collected: dict[str, Any] = {}
        return collected, collecting(collected), perf_counter_ns()

    @staticmethod
    def end(token: Any, started: int) -> int:
        """End a computation ``_begin`` started; its time in nanoseconds."""
        elapsed_ns = perf_counter_ns() - started
        stop_collecting(token)
        return elapsed_ns

    def note_miss(self, key: str, skip: bool) -> bool:
        """Count a computation and log it (as a skip when the cache was bypassed); returns
        whether debug logging is on, for ``_store`` (asked once per miss)."""
        self.misses += 1
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            what = "skip (recomputing)" if skip else "miss"
            logger.debug("%s %s %s", what, self.maker.qualname, key[:12])
        return debug

    def store_result(
        self,
        state: State,
        key: str,
        value: Any,
        labels: Any,
        values: Any,
        extra: Any,
        elapsed_ns: int,
        user: dict[str, Any],
        debug: bool,
    ) -> Any:
        """Store a fresh value; returns the value the call gives: ``value``, or the one stored
        meanwhile by another caller, whose entry stands (so every caller gets what the entry
        holds). ``debug``: whether debug logging is on (asked once per miss)."""
        if state.writer.read_only:
            return value  # (what a read-only store is for: its misses are not stored)
        if self._validate is not None and not self._passes(value, key, cached=False):
            return value
        if self._store_if is not None and not self._wanted(value, key, debug):
            return value
        try:
            members = (
                f'"key":"{key}",{self.maker.describe(labels, values, extra)},'
                # Seconds as JSON numbers with an exponent: formatting a float costs more.
                f'"created":{time_ns()}e-9,"compute_seconds":{elapsed_ns}e-9'
            )
            if user:
                members += f',"user":{metadata_json(user)}'
            chosen = self.serializers.for_value(value)
            fixed = self._fixed
            code = self.maker.code_fingerprint
            # (_process_id, not os.getpid(): a system call)
            if fixed is None or fixed[0] != _process_id or fixed[1] != code:
                fixed = self._fixed = (_process_id, code, self._fixed_members())
            state.writer.save(self.name, key, value, members, chosen, fixed[2], state.secret)
            for copy in state.copies:
                self._save_copy(copy, key, value, members, chosen, fixed[2], state.secret)
        except EntryExistsError:
            stored = self.lookup(state, key)
            if debug:
                logger.debug("%s %s was stored meanwhile", self.maker.qualname, key[:12])
            return value if stored is MISS else stored
        except StoreError as exc:
            self.errors += 1
            warn_once(
                ("store", self.maker.qualname, type(exc.__cause__).__name__),
                f"memo: could not cache the result of {self.maker.qualname}: {exc}. "
                "The result was returned but not stored; later calls recompute it.",
                stacklevel=6,
            )
            return value
        self.stores += 1
        if debug:
            logger.debug("stored %s %s (%.3fs)", self.maker.qualname, key[:12], elapsed_ns / 1e9)
        if chosen.load_file is not None and self._maps(state):
            # A hit maps the stored file: so does the miss (a read-only memmap with "r", not
            # the writable array computed), and a call gives one kind of array either way.
            mapped = state.writer.load(self.name, key, self.serializers, state.secret_keys)
            if mapped is not MISS:
                return mapped
        return value

    def _save_copy(
        self,
        copy: EntryStore,
        key: str,
        value: Any,
        members: str,
        chosen: Any,
        fixed: str,
        secret: bytes | None,
    ) -> None:
        """Store a result in another writable tier too (``write="all"``): a failure there
        is warned once and does not touch the first tier's entry."""
        try:
            copy.save(self.name, key, value, members, chosen, fixed, secret)
        except (StoreError, EntryExistsError) as exc:
            warn_once(
                ("store copy", self.maker.qualname, str(copy.root)),
                f"memo: could not store the result of {self.maker.qualname} in the tier "
                f"{copy.root} as well: {exc}",
                stacklevel=7,
            )

    @staticmethod
    def _maps(state: State) -> bool:
        """Whether hits on this store memory-map (signed entries and remote ones are read)."""
        return not state.secret_keys and state.writer.capabilities.mmap

    def _passes(self, value: Any, key: str, *, cached: bool) -> bool:
        assert self._validate is not None
        try:
            ok = bool(self._validate(value))
        except Exception as exc:
            ok = False
            reason = f"validate raised {type(exc).__name__}: {exc}"
        else:
            reason = "validate returned False"
        if not ok:
            where = "a cached value" if cached else "a freshly computed value"
            what = "recomputed" if cached else "returned but not stored"
            warn_once(
                ("validate", self.maker.qualname, key, str(cached)),
                f"memo: {where} of {self.maker.qualname} failed validation ({reason}); "
                f"it is {what}",
                stacklevel=6,
            )
        return ok

    def _wanted(self, value: Any, key: str, debug: bool) -> bool:
        """Whether ``store_if`` wants ``value`` stored (if it raises: not, with a warning)."""
        assert self._store_if is not None
        try:
            wanted = bool(self._store_if(value))
        except Exception as exc:
            warn_once(
                ("store_if", self.maker.qualname, type(exc).__name__),
                f"memo: store_if of {self.maker.qualname} raised {type(exc).__name__}: {exc}; "
                "the value was returned but not stored",
                stacklevel=6,
            )
            return False
        if not wanted and debug:
            logger.debug("not stored (store_if) %s %s", self.maker.qualname, key[:12])
        return wanted

    def put(self, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> bool:
        """Store ``value`` as the result of this call (over a stored one), checked as a
        computed value is (``validate``, ``store_if``); whether it was stored."""
        state = self.setup()
        state.writer.refuse_if_read_only("put a value")
        extra = self.take_extra(kwargs)
        if state.disabled:
            return False
        key, labels, values = self.maker.bind(args, kwargs, extra)
        stores = self.stores
        debug = logger.isEnabledFor(logging.DEBUG)
        self.store_result(state, key, value, labels, values, extra, 0, {}, debug)
        return self.stores > stores

    def _fixed_members(self) -> str:
        """The metadata members shared by all of this process's entries, as JSON text (``_store``
        keeps it with the pid it holds; the rest, the call's own, it builds as text)."""
        members = {
            "function": self.maker.qualname,
            "name": self.name,
            "memo": __version__,
            "python": _PYTHON_VERSION,
            "pid": _process_id,
            "components": self.maker.components(),
        }
        return json.dumps(members, separators=(",", ":"))[1:-1]
