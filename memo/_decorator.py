"""The decorators: ``decorate`` (genno-compatible core) and ``cache`` (the friendly front)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._catalog import Store
from ._exceptions import ConfigError
from ._keys._key import named_function
from ._memoized import AsyncMemoized, LazyMemoized, Memoized
from ._options import parse_options

__all__ = ["cache", "decorate"]

P = ParamSpec("P")
R = TypeVar("R")


@overload
def decorate(
    func: Callable[P, R],
    /,
    *,
    cache_path: str | os.PathLike[str] | Store | None = None,
    cache_skip: bool = False,
    **options: Any,
) -> Memoized[P, R]: ...


@overload
def decorate(
    func: None = None,
    /,
    *,
    cache_path: str | os.PathLike[str] | Store | None = None,
    cache_skip: bool = False,
    **options: Any,
) -> Callable[[Callable[P, R]], Memoized[P, R]]: ...


def decorate(
    func: Callable[P, R] | None = None,
    /,
    *,
    cache_path: str | os.PathLike[str] | Store | None = None,
    cache_skip: bool = False,
    **options: Any,
) -> Memoized[P, R] | Callable[[Callable[P, R]], Memoized[P, R]]:
    """Memoize ``func`` persistently; the core decorator behind ``memo.cache``.

    Works as ``@decorate``, ``@decorate(...)`` and ``functools.partial(decorate, cache_path=...)``.
    ``cache_path`` is a directory (default: ``MEMO_CACHE_DIR``, else the user cache directory);
    ``cache_skip=True`` recomputes and overwrites. Options (keyword-only, checked now):
    ``version``, ``ignore``, ``key``, ``serializer``, ``validate``, ``store_if``, ``max_age``,
    ``max_size``, ``lazy``, ``secret_key``, ``lock_timeout``. A bad option raises ``ConfigError`` (a
    TypeError and ValueError) here.
    """
    where: object = cache_path
    read_only = False
    if isinstance(cache_path, Store):
        where, read_only = cache_path.location, cache_path.read_only
    parsed = parse_options(where, cache_skip, options, read_only)

    def wrap(target: Callable[P, R]) -> Memoized[P, R]:
        if isinstance(named_function(target), Memoized):
            raise ConfigError(f"{target!r} is already memoized")
        if inspect.iscoroutinefunction(target):
            if parsed.lazy:
                raise ConfigError("lazy=True is not available for async functions")
            wrapper: Memoized[P, R] = AsyncMemoized(cast(Any, target), parsed)
            mark = getattr(inspect, "markcoroutinefunction", None)
            if mark is not None:  # Python 3.12+: iscoroutinefunction(wrapper) is then True
                mark(wrapper)
            return wrapper
        if parsed.lazy:
            return LazyMemoized(target, parsed)
        return Memoized(target, parsed)

    if func is None:
        return wrap
    if not callable(func):
        raise ConfigError(
            f"decorate takes the function to memoize, got {type(func).__name__}; "
            "pass options as keywords: @memo.cache(version=2)"
        )
    return wrap(func)


@overload
def cache(func: Callable[P, R], /, **options: Any) -> Memoized[P, R]: ...


@overload
def cache(func: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Memoized[P, R]]: ...


def cache(
    func: Callable[P, R] | None = None, /, **options: Any
) -> Memoized[P, R] | Callable[[Callable[P, R]], Memoized[P, R]]:
    """Memoize a function in the default store: ``@memo.cache`` or ``@memo.cache(version=2)``.

    Takes the same keyword options as ``decorate``.
    """
    return decorate(func, **options)
