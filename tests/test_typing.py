"""Static typing of the public API, checked by mypy --strict (and run as plain tests).

Lines ending in ``# type: ignore[...]`` must stay errors: with ``warn_unused_ignores`` (part of
``--strict``) mypy fails if one of them stops being an error, so the negative cases are checked
too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, assert_type

import memo


@memo.cache
def scaled(x: int, unit: str = "m") -> float:
    """A module-level memoized function, as most are."""
    return x * (1000.0 if unit == "km" else 1.0)


def _make(cache_dir: Path) -> Any:
    scaled._calls.state = None  # this test's MEMO_CACHE_DIR
    return scaled


def test_decorated_function_keeps_its_types(cache_dir: Path) -> None:
    """Parameters and return type survive decoration; wrong calls are type errors."""
    _make(cache_dir)
    assert_type(scaled(2), float)
    assert_type(scaled(2, "km"), float)
    assert scaled(2, unit="km") == 2000.0


def _wrong_calls_are_type_errors() -> None:
    """Never run: mypy must report every line here (see the module docstring)."""
    scaled("2")  # type: ignore[arg-type]
    scaled(2, 3)  # type: ignore[arg-type]
    scaled()  # type: ignore[call-arg]
    scaled.key("1")  # type: ignore[arg-type]


def test_memoized_methods_are_typed(cache_dir: Path) -> None:
    """key, is_cached, invalidate, refresh, lazy, map, explain and cache_info are typed."""
    _make(cache_dir)
    assert_type(scaled.key(1), str)
    assert_type(scaled.is_cached(1), bool)
    assert_type(scaled.refresh(1), float)
    assert_type(scaled.lazy(1), memo.Lazy[float])
    assert_type(scaled.lazy(1).load(), float)
    assert_type(scaled.lazy(1).fingerprint, str)
    assert_type(scaled.map([1, 2]), list[float])
    assert_type(scaled.explain(1), str)
    assert_type(scaled.cache_info(), memo.CacheInfo)
    assert_type(scaled.invalidate(1), bool)
    assert_type(scaled.entries(), list[dict[str, Any]])
    assert_type(scaled.clear(), int)


def test_async_functions_stay_awaitable(cache_dir: Path) -> None:
    """A memoized async def returns a coroutine of its declared type."""

    @memo.cache(cache_path=cache_dir)
    async def fetch(x: int) -> list[int]:
        return [x]

    pending = assert_type(fetch(1), Coroutine[Any, Any, list[int]])
    pending.close()

    async def main() -> list[int]:
        value = await fetch(3)
        assert_type(value, list[int])
        return value

    assert asyncio.run(main()) == [3]


def test_partial_decorate_is_typed(cache_dir: Path) -> None:
    """functools.partial(memo.decorate, cache_path=...) still gives a typed Memoized."""
    from functools import partial

    mycache = partial(memo.decorate, cache_path=cache_dir)

    @mycache
    def power(a: int, b: int = 2) -> int:
        return int(a**b)

    assert power(3) == 9
    assert_type(memo.hash_args(1, x=2), str)
    assert_type(memo.hash_code(power), str)
