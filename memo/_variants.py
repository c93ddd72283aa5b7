"""Variants of ``Memoized`` chosen at decoration time: async functions and ``lazy=True``."""

from __future__ import annotations

import time
from typing import Any, ParamSpec, TypeVar, cast

from ._keys._key import EXTRA, NO_EXTRA
from ._lazy import collecting, stop_collecting
from ._memoized import Memoized
from ._storage._backend import MISS, StoreError

__all__ = ["AsyncMemoized", "LazyMemoized"]

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
            held = await locks.acquire_async(key, self._lock_timeout, self._name)
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
            return self._store(
                state, key, value, labels, values, extra, elapsed_ns, collected, debug
            )
        finally:
            if held:
                locks.release_async(key)


class LazyMemoized(Memoized[P, R]):
    """``lazy=True``: calling returns a ``memo.Lazy`` handle instead of the value."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.lazy(*args, **kwargs)
