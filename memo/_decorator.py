"""The decorators: ``decorate`` (genno-compatible core) and ``cache`` (the friendly front)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast, overload

from ._catalog import Store
from ._exceptions import ConfigError
from ._keys._key import named_function
from ._memoized import AsyncMemoized, LazyMemoized, Memoized
from ._options import parse_options

__all__ = ["cache", "decorate"]

P = ParamSpec("P")
R = TypeVar("R")
Location = str | os.PathLike[str] | Store


@overload
def decorate(
    func: Callable[P, R],
    /,
    *,
    cache_path: Location | Sequence[Location] | None = None,
    cache_skip: bool = False,
    **options: Any,
) -> Memoized[P, R]: ...


@overload
def decorate(
    func: None = None,
    /,
    *,
    cache_path: Location | Sequence[Location] | None = None,
    cache_skip: bool = False,
    **options: Any,
) -> Callable[[Callable[P, R]], Memoized[P, R]]: ...


def decorate(
    func: Callable[P, R] | None = None,
    /,
    *,
    cache_path: Location | Sequence[Location] | None = None,
    cache_skip: bool = False,
    **options: Any,
) -> Memoized[P, R] | Callable[[Callable[P, R]], Memoized[P, R]]:
    """Memoize ``func`` persistently; the core decorator behind ``memo.cache``.

    Works as ``@decorate``, ``@decorate(...)`` and ``functools.partial(decorate, cache_path=...)``.
    ``cache_path`` is a directory (default: ``MEMO_CACHE_DIR``, else the user cache directory),
    an fsspec URL, a ``memo.Store`` (``read_only=True``: read, never written), or a list of
    those: tiers, read in order (a hit in a lower tier is copied up), written to the first
    writable one (all writable ones with ``write="all"``);
    ``cache_skip=True`` recomputes and overwrites. Options (keyword-only, checked now):
    ``version``, ``ignore``, ``key``, ``serializer``, ``validate``, ``store_if``, ``max_age``,
    ``max_size``, ``lazy``, ``secret_key``, ``lock_timeout``, ``write``. A bad option raises
    ``ConfigError`` (a TypeError and ValueError) here.
    """
    parsed = parse_options(_tiers(cache_path), cache_skip, options)

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


def _tiers(cache_path: object) -> list[tuple[object, bool, bool]]:
    """``cache_path`` as its tiers: each location, whether it is read-only and whether only
    signed entries are used there (a ``memo.Store`` says; a path or URL is neither). One
    tier, None, for the default."""
    given = cache_path if isinstance(cache_path, list | tuple) else [cache_path]
    if not given:
        raise ConfigError("cache_path is an empty list: give one location or more")
    tiers: list[tuple[object, bool, bool]] = []
    for where in given:
        if isinstance(where, Store):
            tiers.append((where.location, where.read_only, where.signed_only))
        elif where is None and len(given) > 1:
            raise ConfigError("cache_path's list holds None: give each tier's location")
        else:
            tiers.append((where, False, False))
    return tiers


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
