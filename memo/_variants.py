"""Variants of ``Memoized`` chosen at decoration time: async functions and ``lazy=True``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ParamSpec, TypeVar, cast

from ._exceptions import ConfigError, MemoError
from ._lazy import Lazy
from ._map import arun_map
from ._memoized import Memoized
from ._storage._backend import MISS

__all__ = ["AsyncMemoized", "LazyMemoized"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncMemoized(Memoized[P, R]):
    """A memoized ``async def``: the awaited value is what is stored.

    Every verb that runs the function is awaited: ``await f(x)``, ``await f.refresh(x)``,
    ``await f.lazy(x)``, ``await f.map(items)``; the others (``key``, ``is_cached``,
    ``explain``, ``entries``, ...) are plain calls, as for a ``def``.
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, self._acall(*args, **kwargs))

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute this call (awaited), overwrite its stored result and return it."""
        return cast(R, self._arefresh(args, kwargs))

    async def _arefresh(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state = self._setup()
        call_kwargs, extra = self._maker.split_extra(kwargs)
        if state.disabled:
            return await cast(Any, self._func(*args, **call_kwargs))
        key, labels, values = self._maker.bind(args, call_kwargs, extra)
        return await self._acompute(state, key, args, call_kwargs, labels, values, extra, True)

    def lazy(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """``await f.lazy(x)``: a handle to this call's result (see ``Memoized.lazy``)."""
        return self._alazy(args, kwargs)

    async def _alazy(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Lazy[Any]:
        state, key, handle = self._stored_handle(args, kwargs)
        if handle is not None:
            return handle
        value = await self._acall(*args, **kwargs)
        return self._new_handle(state, key, args, kwargs, value)

    def _handle_value(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # Lazy.load() of a handle: the stored value; recomputing means awaiting, which a
        # plain load can do only outside a running event loop.
        import asyncio  # (async callers only: not imported with memo)

        state, key, _ = self._stored_handle(args, kwargs)
        value = MISS if state.skip or state.disabled else self._lookup(state, key)
        if value is not MISS:
            return value
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._acall(*args, **kwargs))
        raise MemoError(
            f"the stored result of {self._maker.qualname} for this handle is gone, and "
            "recomputing it means awaiting: use `await handle.aload()` in async code"
        )

    async def _ahandle_value(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await self._acall(*args, **kwargs)

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
        key_of, load = self._batch_steps()
        return arun_map(
            self._acall,
            items,
            key_of,
            load,
            MISS,
            progress=progress,
            max_workers=max_workers,
            label=self._maker.qualname,
        )


class LazyMemoized(Memoized[P, R]):
    """``lazy=True``: calling returns a ``memo.Lazy`` handle instead of the value."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self.lazy(*args, **kwargs)
