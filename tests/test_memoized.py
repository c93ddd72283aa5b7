"""Memoized functions' verbs, for a ``def`` and an ``async def`` alike (awaited where they run
code), and the options that act on every stored result (``store_if``)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memo


def _resolve(value: Any) -> Any:
    """A verb's result: awaited (in a fresh event loop) when the verb returned an awaitable."""
    if inspect.isawaitable(value):

        async def wait() -> Any:
            return await value

        return asyncio.run(wait())
    return value


@pytest.fixture(params=["def", "async def"])
def square(request: Any, cache_dir: Path) -> tuple[Any, list[int]]:
    """``square(x) = x * x`` memoized, as a def and as an async def, with its computations."""
    calls: list[int] = []
    if request.param == "def":

        def plain(x: int) -> int:
            calls.append(x)
            if x < 0:
                raise ValueError(f"negative: {x}")
            return x * x

        return memo.decorate(plain, cache_path=cache_dir), calls

    async def coroutine(x: int) -> int:
        await asyncio.sleep(0)
        calls.append(x)
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x * x

    return memo.decorate(coroutine, cache_path=cache_dir), calls


def test_a_call_computes_once_then_hits(square: tuple[Any, list[int]]) -> None:
    """The first call computes and stores; the next one hits."""
    func, calls = square
    assert _resolve(func(3)) == 9
    assert _resolve(func(3)) == 9
    assert calls == [3]
    assert func.cache_info() == (1, 1, 1, 0)


def test_refresh_recomputes_and_stores(square: tuple[Any, list[int]]) -> None:
    """refresh recomputes a stored call, returns the value and stores it; the next call hits."""
    func, calls = square
    _resolve(func(4))
    assert _resolve(func.refresh(4)) == 16
    assert calls == [4, 4]
    assert _resolve(func(4)) == 16
    assert calls == [4, 4]
    assert func.cache_info().stores == 2


def test_lazy_gives_a_handle_and_stores(square: tuple[Any, list[int]]) -> None:
    """lazy on a miss computes and stores; again it hits without computing; load reads."""
    func, calls = square
    handle = _resolve(func.lazy(5))
    assert isinstance(handle, memo.Lazy)
    assert handle.load() == 25
    again = _resolve(func.lazy(5))
    assert again == handle
    assert again.load() == 25
    assert calls == [5]
    assert func.is_cached(5)


def test_a_handle_whose_entry_is_gone_recomputes(square: tuple[Any, list[int]]) -> None:
    """load() and aload() of a handle whose entry was removed recompute the value."""
    func, calls = square
    _resolve(func(6))
    handle = _resolve(func.lazy(6))
    func.invalidate(6)
    assert handle.load() == 36
    func.invalidate(6)
    assert _resolve(handle.aload()) == 36
    assert calls == [6, 6, 6]


def test_map_computes_only_the_missing(square: tuple[Any, list[int]]) -> None:
    """map loads what is stored, computes the rest once each, and keeps the input order."""
    func, calls = square
    _resolve(func(2))
    assert _resolve(func.map([1, 2, 3, 1], progress=False)) == [1, 4, 9, 1]
    assert sorted(calls) == [1, 2, 3]
    assert _resolve(func.map([3, 1], progress=False)) == [9, 1]
    assert sorted(calls) == [1, 2, 3]


def test_map_collects_failures(square: tuple[Any, list[int]]) -> None:
    """A failed item raises one MapError at the end; the other items are stored."""
    func, _ = square
    with pytest.raises(memo.MapError) as caught:
        _resolve(func.map([1, -1, 2], progress=False))
    assert caught.value.failed == [1]
    assert caught.value.results == [1, None, 4]
    assert func.is_cached(2)


def test_key_is_cached_and_explain(square: tuple[Any, list[int]]) -> None:
    """key, is_cached, explain and entries are plain calls for both kinds of function."""
    func, _ = square
    assert not func.is_cached(7)
    assert "miss" in func.explain(7)
    _resolve(func(7))
    assert func.is_cached(7)
    assert func.explain(7).startswith("hit")
    assert [entry["key"] for entry in func.entries()] == [func.key(7)]


def test_disabled_verbs_store_nothing(
    square: tuple[Any, list[int]], monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    """With MEMO_DISABLE=1 every verb computes and nothing is stored."""
    monkeypatch.setenv("MEMO_DISABLE", "1")
    func, calls = square
    assert _resolve(func(1)) == 1
    assert _resolve(func.refresh(1)) == 1
    assert _resolve(func.lazy(1)).load() == 1
    assert _resolve(func.map([1], progress=False)) == [1]
    assert calls == [1, 1, 1, 1]
    assert not cache_dir.exists()


def test_put_stores_a_value_computed_elsewhere(square: tuple[Any, list[int]]) -> None:
    """``put`` stores a given value under a call's key, over a stored one: the call then
    hits it without running the body."""
    func, calls = square
    assert func.put(4, value=-16) is True
    assert _resolve(func(4)) == -16
    assert _resolve(func(5)) == 25
    assert func.put(5, value=5.0) is True  # replaces the computed entry
    assert _resolve(func(5)) == 5.0
    assert calls == [5]
    assert func.key(4) in {entry["key"] for entry in func.entries()}


def test_store_if_returns_but_does_not_store_what_it_refuses(cache_dir: Path) -> None:
    """A result ``store_if`` refuses (None here) is returned and computed again next time;
    others are stored; ``put`` is refused the same way."""
    calls: list[int] = []

    def lookup(x: int) -> int | None:
        calls.append(x)
        return None if x % 2 else x

    found = memo.decorate(lookup, cache_path=cache_dir, store_if=lambda v: v is not None)
    assert [found(1), found(1), found(2), found(2)] == [None, None, 2, 2]
    assert calls == [1, 1, 2]
    assert found.cache_info().stores == 1
    assert found.put(3, value=None) is False
    assert not found.is_cached(3)
    assert found.put(3, value=33) is True
    assert found(3) == 33


def test_store_if_that_raises_stores_nothing_and_warns_once(cache_dir: Path) -> None:
    """A ``store_if`` that raises is taken as a refusal, with one warning; the value is
    returned."""

    def fussy(value: int) -> bool:
        raise RuntimeError("cannot tell")

    double = memo.decorate(lambda x: 2 * x, cache_path=cache_dir, store_if=fussy)
    with pytest.warns(memo.MemoWarning, match="store_if .* raised RuntimeError"):
        assert double(1) == 2
    assert double(2) == 4
    assert not double.is_cached(1)


def test_put_runs_validate_and_a_bad_store_if_is_refused_at_decoration(cache_dir: Path) -> None:
    """A put value failing ``validate`` is not stored (with a warning); ``store_if`` must
    be callable, checked when decorating."""

    def magnitude(x: int) -> int:
        return abs(x)

    positive = memo.decorate(magnitude, cache_path=cache_dir, validate=lambda v: v >= 0)
    with pytest.warns(memo.MemoWarning, match="failed validation"):
        assert positive.put(-3, value=-3) is False
    assert positive(-3) == 3
    with pytest.raises(memo.ConfigError, match="store_if must be a callable"):
        memo.decorate(magnitude, cache_path=cache_dir, store_if=True)


def test_async_map_awaits_items_concurrently_within_max_workers(cache_dir: Path) -> None:
    """An async function's map runs its missing items on the loop at once, at most
    max_workers at a time."""
    running: list[int] = []
    most: list[int] = [0]

    @memo.cache(cache_path=cache_dir)
    async def slow(x: int) -> int:
        running.append(x)
        most[0] = max(most[0], len(running))
        await asyncio.sleep(0.02)
        running.remove(x)
        return x

    batch: Any = slow.map(range(12), progress=False, max_workers=4)  # (typed as a def's map)
    assert asyncio.run(batch) == list(range(12))
    assert most[0] == 4


def test_async_map_refuses_an_executor(cache_dir: Path) -> None:
    """executor= is for def functions: an async function's map says what to use instead."""

    @memo.cache(cache_path=cache_dir)
    async def f(x: int) -> int:
        return x

    with pytest.raises(memo.ConfigError, match="max_workers"):
        f.map([1], executor="threads")


def test_a_handle_of_an_async_function_in_a_running_loop(cache_dir: Path) -> None:
    """Inside a running loop, load() of a handle whose entry is gone says to await aload()."""

    @memo.cache(cache_path=cache_dir)
    async def f(x: int) -> int:
        return x + 1

    async def scenario() -> tuple[int, int]:
        await f(1)
        pending: Any = f.lazy(1)  # (typed as a def's lazy)
        handle = await pending  # of a stored entry: it does not keep the value
        stored = handle.load()  # the entry is there: read without awaiting
        f.invalidate(1)
        with pytest.raises(memo.MemoError, match="aload"):
            handle.load()
        return stored, await handle.aload()

    assert asyncio.run(scenario()) == (2, 2)


@pytest.mark.parametrize("verb", ["__call__", "refresh", "lazy", "map"])
def test_async_verbs_return_awaitables(cache_dir: Path, verb: str) -> None:
    """The verbs that run an async function return awaitables, never a stored coroutine."""

    @memo.cache(cache_path=cache_dir)
    async def f(x: int) -> int:
        return x

    method: Callable[..., Any] = getattr(f, verb)
    pending = method([1]) if verb == "map" else method(1)
    assert inspect.isawaitable(pending)
    result = _resolve(pending)
    assert not inspect.isawaitable(result)
