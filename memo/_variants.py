"""Variants of ``Memoized`` chosen at decoration time: async functions, ``lazy=True``, and
methods looked up on an instance."""

from __future__ import annotations

import functools
import time
from typing import Any, ParamSpec, TypeVar, cast

from ._keys._key import EXTRA, NO_EXTRA
from ._lazy import collecting, stop_collecting
from ._memoized import Memoized
from ._storage._local import MISS, StoreError

__all__ = ["AsyncMemoized", "BoundMemoized", "LazyMemoized"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncMemoized(Memoized[P, R]):
    """A memoized ``async def``: the awaited value is what is stored."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:  # type: ignore[override]
        state = self._state or self._setup()
        extra: Any = NO_EXTRA
        if kwargs and EXTRA in kwargs and not self._declares_extra:
            extra = kwargs.pop(EXTRA)
        if state.disabled:
            return await cast(Any, self._func(*args, **kwargs))
        key, labels, values = self._maker.bind(args, kwargs, extra)
        store = state.store
        if not state.skip:
            value = self._lookup(state, key)
            if value is not MISS:
                return value
        locks = store.locks
        try:
            held = await locks.acquire_async(key, self._lock_timeout)
        except (OSError, StoreError):
            held = False
        try:
            if held and not state.skip and store.exists(self._name, key):
                value = self._lookup(state, key)
                if value is not MISS:
                    return value
            debug = self._note_miss(key, state.skip)
            collected: dict[str, Any] = {}
            token = collecting(collected)
            started = time.perf_counter_ns()
            try:
                value = await cast(Any, self._func(*args, **kwargs))
            finally:
                elapsed_ns = time.perf_counter_ns() - started
                stop_collecting(token)
            self._store(state, key, value, labels, values, extra, elapsed_ns, collected, debug)
            return value
        finally:
            if held:
                locks.release_async(key)


class LazyMemoized(Memoized[P, R]):
    """``lazy=True``: calling returns a ``memo.Lazy`` handle instead of the value."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.lazy(*args, **kwargs)


class BoundMemoized:
    """A memoized method looked up on an instance: the instance is the first argument."""

    __slots__ = ("_instance", "_memoized")

    def __init__(self, memoized: Memoized[..., Any], instance: Any) -> None:
        self._memoized = memoized
        self._instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._memoized(self._instance, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._memoized, name)
        if name in {"key", "is_cached", "invalidate", "refresh", "lazy"}:
            return functools.partial(attribute, self._instance)
        return attribute
