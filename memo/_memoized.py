"""``Memoized``: the wrapper ``memo.cache`` returns, and its methods to inspect and manage its
cache (keys, lookups without computing, refresh, lazy handles, batches, explanations)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast

from ._bound import BoundMemoized
from ._calls import Calls
from ._explain import explain_text
from ._lazy import Lazy, stored_fingerprint
from ._map import run_map
from ._options import Options
from ._storage._backend import MISS
from ._storage._cacheable import resolve_qualified
from ._storage._entries import EntryStore
from ._storage._serializers import PickleSerializer

__all__ = ["CacheInfo", "Memoized"]

P = ParamSpec("P")
R = TypeVar("R")
_PICKLE = PickleSerializer()


class CacheInfo(NamedTuple):
    """A memoized function's counts in this process (like ``functools.lru_cache``'s)."""

    hits: int
    misses: int
    stores: int
    errors: int


class Memoized(Calls[P, R]):
    """A function whose results are stored and reused across calls, processes and runs.

    Call it like the function. It keeps the function's ``__name__``, ``__doc__``,
    ``__wrapped__`` and signature, and adds methods to inspect and manage its cache.
    """

    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

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
        return (_rebuild, (type(self), self._func, self._options))

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundMemoized(self, instance)

    @property
    def store(self) -> EntryStore:
        """The store this function's entries live in."""
        return self._setup().store

    # --- inspecting and managing ---------------------------------------------------------

    def _key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        kwargs, extra = self._maker.split_extra(kwargs)
        return self._maker.key(args, kwargs, extra)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key (32 hex digits) this call would use."""
        return self._key_of(args, kwargs)

    def is_cached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Whether this call has an undamaged stored result (checked, not loaded: so
        ``validate``, which needs the value, is not run; a call may still reject it)."""
        key = self._key_of(args, kwargs)
        state = self._setup()
        return state.store.contains(self._name, key, self._max_age, state.secret_keys)

    def path(self, *args: P.args, **kwargs: P.kwargs) -> str | None:
        """Where this call's stored value is, for other tools, or None if it is not stored.

        For ``npy``, ``parquet`` and ``json`` entries it is the value's own file (``.npy``,
        ``.parquet``, ``.json``) that ``np.load``, pandas, pyarrow, DuckDB or ``json.load``
        open as it is (a URL on a remote store); for other entries, the entry file. Opening
        it yourself skips memo's checks: read-only use, please.
        """
        return self._setup().store.value_path(self._name, self._key_of(args, kwargs))

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete this call's stored result; True if there was one."""
        return self._setup().store.delete(self._name, self._key_of(args, kwargs))

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute this call, overwrite its stored result and return the new value."""
        state = self._setup()
        call_kwargs, extra = self._maker.split_extra(kwargs)
        if state.disabled:
            return self._func(*args, **call_kwargs)  # MEMO_DISABLE: nothing is stored
        key, labels, values = self._maker.bind(args, call_kwargs, extra)
        return cast(R, self._compute(state, key, args, call_kwargs, labels, values, extra, True))

    def lazy(self, *args: P.args, **kwargs: P.kwargs) -> Lazy[R]:
        """A handle to this call's result that reads only the entry's header.

        On a miss the value is computed and stored first. ``.load()`` reads the value;
        ``.fingerprint`` identifies it; passing the handle to another memoized function keys
        that call on the fingerprint, without loading.
        """
        state, key, handle = self._stored_handle(args, kwargs)
        if handle is not None:
            return handle
        return self._new_handle(state, key, args, kwargs, self._call_eagerly(*args, **kwargs))

    def _stored_handle(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, str, Lazy[R] | None]:
        """The state, the call's key, and a handle to its stored (unexpired) entry or None."""
        state = self._setup()
        call_kwargs, extra = self._maker.split_extra(kwargs)
        key = self._maker.key(args, call_kwargs, extra)
        if state.skip or state.disabled:
            return state, key, None
        header = state.store.header(self._name, key)
        if header is None or (
            self._max_age is not None and (time.time_ns() - header.created_ns) / 1e9 > self._max_age
        ):
            return state, key, None
        fingerprint = stored_fingerprint(header.serializer, header.fingerprint)
        return state, key, Lazy(fingerprint, self._handle_call(args, kwargs))

    def _new_handle(
        self, state: Any, key: str, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any
    ) -> Lazy[R]:
        """A handle to a value just computed (kept by the handle: not read back later)."""
        call = self._handle_call(args, kwargs)
        header = None if state.disabled else state.store.header(self._name, key)
        if header is not None:
            return Lazy(stored_fingerprint(header.serializer, header.fingerprint), call, (value,))
        # Not stored (disabled, or caching failed): the handle carries the value itself.
        return Lazy(_fingerprint_of(value), call, (value,))

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
        key_of, load = self._batch_steps()
        return run_map(
            self._call_eagerly,
            items,
            key_of,
            load,
            MISS,
            executor=executor,
            progress=progress,
            max_workers=max_workers,
            chunksize=chunksize,
            label=self._maker.qualname,
        )

    def _batch_steps(
        self,
    ) -> tuple[Callable[[tuple[Any, ...], dict[str, Any]], str], Callable[[str], Any]]:
        """For a batch: the key of an item's call, and the load of a key (or ``MISS``)."""
        state = self._setup()

        def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            call_kwargs, extra = self._maker.split_extra(kwargs)
            return self._maker.key(args, call_kwargs, extra)

        def load(key: str) -> Any:
            if state.skip or state.disabled:
                return MISS
            return self._lookup(state, key)

        return key_of, load

    def _call_eagerly(self, *args: Any, **kwargs: Any) -> Any:
        return Calls.__call__(self, *args, **kwargs)

    def explain(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Say whether this call would hit and, on a miss, which key component differs from
        the nearest stored entry of this function: an argument (by name), the code (and which
        function of yours changed), ``version``, ``_extra_cache_key`` or the Python version."""
        state = self._setup()
        call_kwargs, extra = self._maker.split_extra(kwargs)
        key, labels, values = self._maker.bind(args, call_kwargs, extra)
        call = json.loads("{" + self._maker.describe(labels, values, extra) + "}")
        call["components"] = self._maker.components()
        hit = state.store.contains(self._name, key, self._max_age, state.secret_keys)
        return explain_text(self._maker.qualname, key, call, self.entries(), hit)

    def cache_info(self) -> CacheInfo:
        """This process's counts: hits, misses (computations), stores and store errors."""
        return CacheInfo(self.hits, self.misses, self.stores, self.errors)

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of this function's stored entries, newest first: each with its ``path``
        and, where the payload is a file of its own format, its ``value_file``."""
        store = self._setup().store
        found = []
        for entry in store.listing(self._name):
            meta = store.metadata(entry.name, entry.key)
            if meta is not None and meta.get("function") == self._maker.qualname:
                found.append({**meta, "path": entry.location})
                if entry.payload is not None:
                    found[-1]["value_file"] = entry.payload  # what np.load, pyarrow, jq open
        return sorted(found, key=lambda meta: meta.get("created", 0), reverse=True)

    def clear(self) -> int:
        """Delete every stored entry of this function (all arguments, all code versions)."""
        store = self._setup().store
        removed = 0
        for entry in store.listing(self._name):
            meta = store.metadata(entry.name, entry.key)
            if meta is None or meta.get("function") == self._maker.qualname:
                removed += store.delete(entry.name, entry.key, entry.part)
        return removed


def _rebuild(cls: type[Memoized[P, R]], func: Callable[P, R], options: Options) -> Memoized[P, R]:
    return cls(func, options)


def _fingerprint_of(value: Any) -> str:
    """The fingerprint the value would have if pickle stored it; for a value pickle cannot
    write, one used once (a call keyed on it never hits, rather than hit another's)."""
    import xxhash

    try:
        chunks = _PICKLE.dumps(value)
    except Exception:
        return f"unstored-{uuid.uuid4().hex}"
    hasher = xxhash.xxh3_128()
    for chunk in chunks:
        hasher.update(chunk)
    return stored_fingerprint(_PICKLE.name, hasher.digest())
