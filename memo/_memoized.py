"""``Memoized``: the wrapper ``memo.cache`` returns, and its methods to inspect and manage its
cache (keys, lookups without computing, refresh, lazy handles, batches, explanations); with its
two variants chosen at decoration, ``AsyncMemoized`` (an ``async def``) and ``LazyMemoized``
(``lazy=True``). Each holds a ``CallPath``, which makes the calls."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar, cast

from ._bless import bless
from ._bound import BoundMemoized
from ._calls import CallPath, State
from ._catalog import Store, store_of
from ._dry_run import NeedsValue, dry_call, dry_runs, ready, why_computed
from ._exceptions import ConfigError, MemoError
from ._explain import Plan, PlannedCall, described_call, explain_text
from ._keys._bytes import Context
from ._keys._canonical import add_rules, encode_into
from ._keys._key import named_function
from ._lazy import Lazy, stored_fingerprint, value_fingerprint
from ._map import Batch, arun_map, normalize, run_map
from ._options import Options
from ._pending import Pending
from ._storage._backend import MISS
from ._storage._cacheable import resolve_qualified

__all__ = ["AsyncMemoized", "CacheInfo", "LazyMemoized", "Memoized"]

P = ParamSpec("P")
R = TypeVar("R")
_WIDTH = 16  # a batch's round trips in flight at once on an object store


class CacheInfo(NamedTuple):
    """A memoized function's counts in this process (like ``functools.lru_cache``'s)."""

    hits: int
    misses: int
    stores: int
    errors: int


class Memoized(Generic[P, R]):
    """A function whose results are stored and reused across calls, processes and runs.

    Call it like the function. It keeps the function's ``__name__``, ``__doc__``,
    ``__wrapped__`` and signature, and adds methods to inspect and manage its cache.
    """

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(self, func: Callable[P, R], options: Options) -> None:
        named = named_function(func)
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise ConfigError(
                f"{named.__qualname__} is a generator function; memo cannot store a generator. "
                "Return a list (or other concrete value) instead and decorate that function."
            )
        if not callable(func):
            raise ConfigError(f"memo can only decorate functions, not {type(func).__name__}")
        if not hasattr(named, "__qualname__"):
            # Entries are named after the function, and a callable object's state is not
            # part of its code fingerprint, so two instances would share results.
            raise ConfigError(
                f"memo can only decorate functions, not an instance of {type(named).__qualname__}; "
                "decorate its class's __call__ method instead"
            )
        self.__memo_wrapped__ = func
        functools.update_wrapper(self, named)
        self.__wrapped__ = func  # a partial's signature, not its function's
        self._calls = CallPath(func, options, named.__qualname__)
        self._maker = self._calls.maker  # (read by every verb)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if dry_runs:
            return cast(R, self._dry_call(args, kwargs))
        value: R = self._calls.call(args, kwargs)  # (annotated: cast() is a call on every hit)
        return value

    def __repr__(self) -> str:
        return f"<memo.Memoized {self._maker.qualname}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference, like a plain function, when its name leads back to it; otherwise
        # (e.g. memo.decorate(f) kept under another name) as the function and its options.
        try:
            named = resolve_qualified(self.__module__, self.__qualname__)
        except (ImportError, AttributeError):
            named = None
        if named is self and self.__module__ != "__main__":
            return (resolve_qualified, (self.__module__, self.__qualname__))
        # A script's __main__ is not another process's: send the function itself (cloudpickle,
        # as dask uses, sends its code; plain pickle names it, which forked workers can use).
        return (_rebuild, (type(self), self._calls.func, self._calls.options))

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundMemoized(self, instance)

    @property
    def store(self) -> Store:
        """The store this function's entries live in, as ``memo.Store`` (``root``,
        ``entries()``, ``stats()``, ``verify()``, ``prune()``, ...: the whole store, not only
        this function's entries)."""
        return store_of(self._calls.setup().store)

    # --- counts (this process's) ----------------------------------------------------------

    @property
    def hits(self) -> int:
        """Calls answered from the store."""
        return self._calls.hits

    @property
    def misses(self) -> int:
        """Calls computed."""
        return self._calls.misses

    @property
    def stores(self) -> int:
        """Results stored."""
        return self._calls.stores

    @property
    def errors(self) -> int:
        """Results that could not be stored (returned all the same)."""
        return self._calls.errors

    # --- inspecting and managing ---------------------------------------------------------

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key (32 hex digits) this call would use."""
        return self._calls.key(args, kwargs)

    def is_cached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether this call has an undamaged stored result (checked, not loaded: so
        ``validate``, which needs the value, is not run; a call may still reject it)."""
        state = self._calls.setup()
        call_kwargs, extra = self._maker.split_extra(kwargs)
        key, labels, values = self._maker.bind(args, call_kwargs, extra)
        return self._stored(state, key) or self._blessed_stored(state, labels, values, extra)

    def _stored(self, state: State, key: str) -> bool:
        """Whether some tier holds an undamaged, unexpired entry of ``key``."""
        calls = self._calls
        return any(
            tier.contains(calls.name, key, calls.max_age, state.secret_keys) for tier in state.tiers
        )

    def _blessed_stored(self, state: State, labels: Any, values: Any, extra: Any) -> bool:
        """Whether an entry of an earlier code fingerprint, which a blessing says the current
        one answers for, holds this call (``labels`` and ``values`` as ``bind`` gave them)."""
        return any(
            self._stored(state, self._maker.key_under(earlier, labels, values, extra))
            for earlier in self._calls.blessings(state)
        )

    def path(self, *args: P.args, **kwargs: P.kwargs) -> str | None:
        """Where this call's stored value is, for other tools, or None if it is not stored.

        For ``npy``, ``parquet`` and ``json`` entries it is the value's own file (``.npy``,
        ``.parquet``, ``.json``) that ``np.load``, pandas, pyarrow, DuckDB or ``json.load``
        open as it is (a URL on a remote store); for other entries, the entry file. Opening
        it yourself skips memo's checks: read-only use, please.
        """
        calls = self._calls
        key = calls.key(args, kwargs)
        for tier in calls.setup().tiers:
            where = tier.value_path(calls.name, key)
            if where is not None:
                return where
        return None

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete this call's stored result (from every writable tier); True if there was
        one. ``memo.ReadOnlyError`` if no tier is writable."""
        calls = self._calls
        state = calls.setup()
        state.writer.refuse_if_read_only("delete an entry")
        key = calls.key(args, kwargs)
        deleted = False
        for tier in state.writable:
            deleted = tier.delete(calls.name, key) or deleted
        return deleted

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute this call, overwrite its stored result and return the new value."""
        if dry_runs:
            return cast(R, self._dry_call(args, kwargs, "refresh"))
        return cast(R, self._calls.call_missing(args, kwargs, refresh=True))

    def put(self, *args: Any, value: R, **kwargs: Any) -> bool:
        """Store ``value`` as the result of this call, computed elsewhere (a batched GPU
        run, another tool): ``f.put(3, scale=2, value=v)``, then ``f(3, scale=2)`` hits.
        It replaces a stored result, and goes through the checks a computed value does
        (``validate``, ``store_if``, the serializer); True if it was stored. A parameter of
        the function named ``value`` is passed by position here."""
        return self._calls.put(args, dict(kwargs), value)

    def lazy(self, *args: P.args, **kwargs: P.kwargs) -> Lazy[R]:
        """A handle to this call's result that reads only the entry's header.

        On a miss the value is computed and stored first. ``.load()`` reads the value;
        ``.fingerprint`` identifies it; passing the handle to another memoized function keys
        that call on the fingerprint, without loading.
        """
        try:
            state, key, handle = self._stored_handle(args, kwargs)
        except NeedsValue:  # (a dry run's stand-in among the arguments)
            handle = None
        if handle is not None:
            return handle
        if dry_runs:  # (a stand-in: what the handle would be is not known yet)
            return cast(Lazy[R], self._dry_call(args, kwargs))
        return self._new_handle(state, key, args, kwargs, self._call_eagerly(*args, **kwargs))

    def _stored_handle(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[State, str, Lazy[R] | None]:
        """The state, the call's key, and a handle to its stored (unexpired) entry or None."""
        calls = self._calls
        state = calls.setup()
        key = calls.key(args, kwargs)
        if state.skip or state.disabled:
            return state, key, None
        header = next(
            (found for tier in state.tiers if (found := tier.header(calls.name, key))), None
        )
        max_age = calls.max_age
        if header is None or (
            max_age is not None and (time.time_ns() - header.created_ns) / 1e9 > max_age
        ):
            return state, key, None
        fingerprint = stored_fingerprint(header.serializer, header.fingerprint)
        return state, key, Lazy(fingerprint, self._handle_call(args, kwargs))

    def _new_handle(
        self, state: State, key: str, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
    ) -> Lazy[R]:
        """A handle to a value just computed (kept by the handle: not read back later)."""
        call = self._handle_call(args, kwargs)
        header = None if state.disabled else state.writer.header(self._calls.name, key)
        if header is not None:
            return Lazy(stored_fingerprint(header.serializer, header.fingerprint), call, (value,))
        # Not stored (disabled, or caching failed): the handle carries the value itself.
        return Lazy(value_fingerprint(value), call, (value,))

    def _handle_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Callable[..., R], tuple[Any, ...], dict[str, Any]]:
        return (cast(Callable[..., R], self), args, dict(kwargs))

    def _handle_value(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What ``Lazy.load`` gives for a handle of this function: the call, made eagerly."""
        return self._call_eagerly(*args, **kwargs)

    def map(
        self,
        items: Iterable[Any],
        *,
        executor: Any = None,
        progress: bool | None = None,
        max_workers: int | None = None,
        chunksize: int | None = None,
    ) -> list[R]:
        """Call the function on every item, computing only the missing ones; results in order.

        An item that is a tuple is unpacked as positional arguments, a dict as keywords,
        ``memo.Args(...)`` as both, anything else is the single argument. Identical items
        are computed once. ``executor``: ``None`` (serial, in this process), ``"threads"``,
        ``"processes"``, any ``concurrent.futures.Executor``, or a ``dask.distributed.Client``.
        Each result is stored by the worker that computed it as soon as it is done, so an
        interrupted batch resumes where it stopped. Shows progress with the counts ("N
        cached, M to compute", and failures) on the bar (tqdm if installed, else log lines;
        ``progress=False`` for none). Failed items do not stop the others: they raise one
        ``memo.MapError`` (an ``ExceptionGroup``) at the end, whose ``results`` hold the
        successful values.
        """
        if dry_runs:
            return [self._dry_call(*normalize(item)) for item in items]
        return run_map(
            self._compute_missing,
            items,
            self._batch(),
            executor=executor,
            progress=progress,
            max_workers=max_workers,
            chunksize=chunksize,
            label=self._maker.qualname,
        )

    def _batch(self) -> Batch:
        """What ``map`` needs: keys, loads and, on an object store, one listing of the keys
        stored, and loads that run concurrently (each is a round trip)."""
        calls = self._calls
        state = calls.setup()
        store = state.writer
        skip = state.skip or state.disabled
        remote = not store.capabilities.files

        def load(key: str) -> Any:
            return MISS if skip else calls.lookup(state, key)

        def stored() -> set[str]:
            return set() if skip else {entry.key for entry in store.listing(calls.name)}

        def stage(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Pending:
            return Pending(calls, args, dict(kwargs), threading.get_ident())

        if not remote:
            return Batch(calls.key, load, MISS, None, 1, None)
        # (A listing plans a batch of one tier; over several, each key is looked up.)
        listed = None if state.lower or store is not state.store else stored
        return Batch(calls.key, load, MISS, listed, _WIDTH, None if state.disabled else stage)

    def _call_eagerly(self, *args: Any, **kwargs: Any) -> Any:
        if dry_runs:
            return self._dry_call(args, kwargs)
        return self._calls.call(args, kwargs)

    def _dry_call(self, args: Any, kwargs: dict[str, Any], reason: str | None = None) -> Any:
        return dry_call(self._calls, args, kwargs, self.entries, reason)

    def _compute_missing(self, *args: Any, **kwargs: Any) -> Any:
        return self._calls.call_missing(args, kwargs)

    def explain(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Say whether this call would hit and, on a miss, which key component differs from
        the nearest stored entry of this function: an argument (by name), the code (and which
        function of yours changed), ``version``, ``_extra_cache_key`` or the Python version."""
        calls = self._calls
        state = calls.setup()
        call_kwargs, extra = self._maker.split_extra(kwargs)
        key, labels, values = self._maker.bind(args, call_kwargs, extra)
        call = described_call(self._maker, labels, values, extra)
        hit = self._stored(state, key)
        text = explain_text(self._maker.qualname, key, call, self.entries(), hit)
        for tier in state.tiers:
            if tier.read_only:
                text += f"\nstore: {tier.root} is read-only here: nothing is stored there"
            if tier.signed_only:
                text += f"\nstore: {tier.root} is signed_only: only signed entries are used there"
        if len(state.tiers) > 1:
            text += "\ntiers, read in order: " + ", ".join(str(tier.root) for tier in state.tiers)
        blessed = calls.blessings(state)
        if blessed:
            found = self._blessed_stored(state, labels, values, extra)
            text += (
                f"\nblessed: this code ({self._maker.code_fingerprint[:12]}) answers for "
                + ", ".join(code[:12] for code in blessed)
                + ("; an entry of that code answers this call" if found else "")
            )
        return text

    def bless(self, check: Iterable[Any] | int | None = None) -> dict[str, Any]:
        """Record that this function's current code answers for the code that stored its
        newest entries (a harmless edit: a rename, a refactor), so those entries hit again;
        earlier blessings of that code are carried on. Never implicit: nothing is skipped
        without this record (who, when, from, to), which ``explain`` and ``memo show`` show.

        ``check``: items (as ``map`` takes them) to compute with the current code and compare
        with what the earlier code stored for them, or a number of stored calls to sample
        (those whose arguments the entries record as plain literals, newest first); if any
        value differs, or an item has no such entry, ``memo.MemoError`` and nothing is
        recorded. Returns the record.
        """
        return bless(self._calls, self.entries(), check)

    def plan(self, items: Iterable[Any]) -> Plan:
        """Say which calls of a batch (items as ``map`` takes them) would hit and which would
        compute, and why, grouped (new arguments, code changed in a helper, ``version``, an
        input file's content through ``_extra_cache_key``, expired by ``max_age``), running
        nothing; ``print(f.plan(items))``."""
        calls = self._calls
        state = calls.setup()
        entries = self.entries()
        planned: list[PlannedCall] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            args, kwargs = normalize(item)
            call_kwargs, extra = self._maker.split_extra(kwargs)
            key, labels, values = self._maker.bind(args, call_kwargs, extra)
            if key in seen:
                continue
            seen.add(key)
            hit = not state.skip and (
                self._stored(state, key) or self._blessed_stored(state, labels, values, extra)
            )
            reason = None
            if not hit:
                reason = why_computed(calls, state, key, labels, values, extra, entries)
            planned.append(PlannedCall(index, key, hit, reason))
        return Plan(self._maker.qualname, planned)

    def cache_info(self) -> CacheInfo:
        """This process's counts: hits, misses (computations), stores and store errors."""
        return CacheInfo(self.hits, self.misses, self.stores, self.errors)

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of this function's stored entries, newest first: each with its ``path``
        and, where the payload is a file of its own format, its ``value_file``."""
        found = []
        for store in self._calls.setup().tiers:
            for entry in store.listing(self._calls.name):
                meta = store.metadata(entry.name, entry.key)
                if meta is not None and meta.get("function") == self._maker.qualname:
                    found.append({**meta, "path": entry.location})
                    if entry.payload is not None:
                        found[-1]["value_file"] = entry.payload  # what np.load, pyarrow open
        return sorted(found, key=lambda meta: meta.get("created", 0), reverse=True)

    def clear(self) -> int:
        """Delete every stored entry of this function (all arguments, all code versions) from
        every writable tier. ``memo.ReadOnlyError`` if no tier is writable."""
        state = self._calls.setup()
        state.writer.refuse_if_read_only("clear entries")
        removed = 0
        for store in state.writable:
            for entry in store.listing(self._calls.name):
                meta = store.metadata(entry.name, entry.key)
                if meta is None or meta.get("function") == self._maker.qualname:
                    removed += store.delete(entry.name, entry.key, entry.part)
        return removed


class AsyncMemoized(Memoized[P, R]):
    """A memoized ``async def``: the awaited value is what is stored.

    Every verb that runs the function is awaited: ``await f(x)``, ``await f.refresh(x)``,
    ``await f.lazy(x)``, ``await f.map(items)``; the others (``key``, ``is_cached``,
    ``explain``, ``entries``, ...) are plain calls, as for a ``def``.
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if dry_runs:
            return cast(R, ready(self._dry_call(args, kwargs)))
        return cast(R, self._calls.acall(args, kwargs))

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute this call (awaited), overwrite its stored result and return it."""
        if dry_runs:
            return cast(R, ready(self._dry_call(args, kwargs, "refresh")))
        return cast(R, self._calls.acall_missing(args, kwargs, refresh=True))

    def put(self, *args: Any, value: Any, **kwargs: Any) -> bool:
        """Store ``value``, the awaited result, as this call's (see ``Memoized.put``; not
        awaited: nothing runs)."""
        return self._calls.put(args, dict(kwargs), value)

    def lazy(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """``await f.lazy(x)``: a handle to this call's result (see ``Memoized.lazy``)."""
        return self._alazy(args, kwargs)

    async def _alazy(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Lazy[Any]:
        try:
            state, key, handle = self._stored_handle(args, kwargs)
        except NeedsValue:  # (a dry run's stand-in among the arguments)
            handle = None
        if handle is not None:
            return handle
        if dry_runs:
            return cast(Lazy[Any], self._dry_call(args, kwargs))
        value = await self._calls.acall(args, dict(kwargs))
        return self._new_handle(state, key, args, kwargs, value)

    def _handle_value(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Lazy.load() of a handle: the stored value; recomputing means awaiting, which a
        # plain load can do only outside a running event loop.
        import asyncio  # (async callers only: not imported with memo)

        state, key, _ = self._stored_handle(args, kwargs)
        value = MISS if state.skip or state.disabled else self._calls.lookup(state, key)
        if value is not MISS:
            return value
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._calls.acall(args, dict(kwargs)))
        raise MemoError(
            f"the stored result of {self._maker.qualname} for this handle is gone, and "
            "recomputing it means awaiting: use `await handle.aload()` in async code"
        )

    async def _ahandle_value(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await self._calls.acall(args, dict(kwargs))

    def map(
        self,
        items: Iterable[Any],
        *,
        executor: Any = None,
        progress: bool | None = None,
        max_workers: int | None = None,
        chunksize: int | None = None,
    ) -> Any:
        """``await f.map(items)``: as ``Memoized.map``, with the missing items awaited
        concurrently on the running event loop (at most ``max_workers``, default 32, at a
        time). ``executor`` and ``chunksize`` are for ``def`` functions only."""
        if executor is not None or chunksize is not None:
            raise ConfigError(
                f"{self._maker.qualname} is an async function: its map awaits the items on the "
                "event loop; leave out executor= and chunksize= (use max_workers= to bound "
                "how many run at once)"
            )
        if dry_runs:
            return ready([self._dry_call(*normalize(item)) for item in items])
        return arun_map(
            self._acompute_missing,
            items,
            self._batch(),
            progress=progress,
            max_workers=max_workers,
            label=self._maker.qualname,
        )

    def _acompute_missing(self, *args: Any, **kwargs: Any) -> Any:
        return self._calls.acall_missing(args, kwargs)


class LazyMemoized(Memoized[P, R]):
    """``lazy=True``: calling returns a ``memo.Lazy`` handle instead of the value."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.lazy(*args, **kwargs)


def _memoized_value(obj: Memoized[Any, Any], out: bytearray, ctx: Context) -> None:
    # A memoized function passed as an argument (or held in a global dict of routes) computes
    # what the function it wraps computes: it is keyed by that function's code fingerprint.
    out += b"Y"
    encode_into(obj.__memo_wrapped__, out, ctx)


add_rules({}, [(Memoized, _memoized_value)])


def _rebuild(cls: type[Memoized[P, R]], func: Callable[P, R], options: Options) -> Memoized[P, R]:
    return cls(func, options)
