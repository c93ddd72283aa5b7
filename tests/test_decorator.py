"""The decorator's forms, options, environment switches, async functions and methods."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import memo


def counted(store: list[Any]) -> Any:
    """A body that records each call and returns its argument squared."""

    def square(x: int) -> int:
        store.append(x)
        return x * x

    return square


def test_three_decorator_forms(cache_dir: Path) -> None:
    """@decorate, @decorate(...) and partial(decorate, cache_path=...) all memoize."""
    calls: list[int] = []
    bare = memo.decorate(counted(calls))
    called = memo.decorate(cache_path=cache_dir)(counted(calls))
    mycache = functools.partial(memo.decorate, cache_path=cache_dir / "p")

    @mycache
    def power(a: int, b: int = 2) -> int:
        calls.append(a)
        return int(a**b)

    for f in (bare, called):
        assert f(3) == 9
        assert f(3) == 9
    assert power(3) == 9
    assert power(3) == 9
    assert calls == [3, 3, 3]
    assert any((cache_dir / "p").glob("power-*.memo"))


def test_cache_bare_uses_memo_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """@memo.cache stores under MEMO_CACHE_DIR."""
    monkeypatch.setenv("MEMO_CACHE_DIR", str(tmp_path / "env-cache"))

    @memo.cache
    def twice(x: int) -> int:
        return 2 * x

    assert twice(4) == 8
    assert twice.store.root == tmp_path / "env-cache"
    assert list((tmp_path / "env-cache").glob("twice-*.memo"))


def test_default_dir_without_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without MEMO_CACHE_DIR the platform user cache directory is used."""
    monkeypatch.delenv("MEMO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    @memo.cache
    def f(x: int) -> int:
        return x

    assert f.store.root == tmp_path / "xdg" / "memo"


def test_wrapper_keeps_identity() -> None:
    """Name, docstring, __wrapped__, signature and module are kept."""

    def documented(a: int, b: str = "x") -> str:
        """Docs."""
        return b * a

    wrapped = memo.cache(documented)
    assert wrapped.__name__ == "documented"
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is documented
    assert inspect.signature(wrapped) == inspect.signature(documented)
    assert wrapped.__module__ == documented.__module__
    assert isinstance(wrapped, memo.Memoized)


def test_cache_skip_recomputes_and_overwrites(cache_dir: Path) -> None:
    """cache_skip=True always runs the body and stores the new value."""
    calls: list[int] = []
    body = counted(calls)
    skipping = memo.decorate(body, cache_path=cache_dir, cache_skip=True)
    normal = memo.decorate(body, cache_path=cache_dir)
    skipping(2)
    skipping(2)
    assert calls == [2, 2]
    assert normal.key(2) == skipping.key(2)
    normal(2)
    assert calls == [2, 2]


def test_env_cache_skip_and_disable(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMO_CACHE_SKIP recomputes; MEMO_DISABLE bypasses the cache entirely."""
    calls: list[int] = []
    monkeypatch.setenv("MEMO_CACHE_SKIP", "1")
    skip = memo.decorate(counted(calls), cache_path=cache_dir)
    skip(1)
    skip(1)
    assert calls == [1, 1]
    monkeypatch.delenv("MEMO_CACHE_SKIP")
    monkeypatch.setenv("MEMO_DISABLE", "true")
    off = memo.decorate(counted(calls), cache_path=cache_dir / "off")
    off(1)
    off(1)
    assert calls == [1, 1, 1, 1]
    assert not (cache_dir / "off").exists()


def test_bad_env_flag_is_reported(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed MEMO_DISABLE says which values are accepted."""
    monkeypatch.setenv("MEMO_DISABLE", "maybe")
    f = memo.decorate(counted([]), cache_path=cache_dir)
    with pytest.raises(ValueError, match="MEMO_DISABLE"):
        f(1)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"versoin": 1}, TypeError),
        ({"ignore": "verbose"}, TypeError),
        ({"ignore": [1]}, TypeError),
        ({"key": 3}, TypeError),
        ({"validate": "yes"}, TypeError),
        ({"serializer": "nope"}, ValueError),
        ({"max_age": "7 fortnights"}, ValueError),
        ({"max_age": -1}, ValueError),
        ({"lock_timeout": "soon"}, ValueError),
        ({"cache_path": 3}, TypeError),
        ({"cache_skip": "yes"}, TypeError),
        ({"version": object()}, TypeError),
        ({"cache_path": "nosuchscheme://bucket/x"}, ValueError),
        ({"lazy": "yes"}, TypeError),
        ({"max_size": "lots"}, ValueError),
        ({"max_size": -5}, ValueError),
        ({"serializer": {"ndarray": "npy"}}, TypeError),
        ({"serializer": {int: "nope"}}, ValueError),
        ({"secret_key": 5}, TypeError),
        ({"secret_key": []}, ValueError),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, Any], error: type[Exception]) -> None:
    """Every bad option raises immediately, as a ConfigError that is also the builtin."""
    with pytest.raises(error) as info:
        memo.cache(**options)(counted([]))
    assert isinstance(info.value, memo.ConfigError)
    assert isinstance(info.value, memo.MemoError)


def test_generators_are_rejected() -> None:
    """Generator functions cannot be memoized; the error says to return a list."""

    def numbers() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="list"):
        memo.cache(numbers)
    with pytest.raises(TypeError, match="generator"):
        memo.cache(agen)


def test_double_decoration_is_rejected(cache_dir: Path) -> None:
    """Memoizing a memoized function is refused."""
    once = memo.decorate(counted([]), cache_path=cache_dir)
    with pytest.raises(TypeError, match="already memoized"):
        memo.decorate(once)


def test_partials_are_keyed_by_their_bound_arguments(cache_dir: Path) -> None:
    """A memoized functools.partial is named after its function and keyed by what it binds."""
    calls: list[tuple[int, int, int]] = []

    def add(a: int, b: int, *, c: int = 0) -> int:
        calls.append((a, b, c))
        return a + b + c

    one = memo.decorate(functools.partial(add, 1), cache_path=cache_dir)
    two = memo.cache(functools.partial(add, 2), cache_path=cache_dir)
    five = memo.cache(functools.partial(add, 1, c=5), cache_path=cache_dir)
    assert one.__name__ == "add"
    assert list(inspect.signature(one).parameters) == ["b", "c"]
    assert [one(3), two(3), five(3)] == [4, 5, 9]
    assert [one(b=3), two(3), five(3), one(3, c=0)] == [4, 5, 9, 4]
    assert calls == [(1, 3, 0), (2, 3, 0), (1, 3, 5)]
    assert len({one.key(3), two.key(3), five.key(3)}) == 3
    assert one.is_cached(3)
    assert not one.is_cached(4)
    assert len(list(cache_dir.glob("add-*.memo"))) == 3


def test_partial_binding_an_unencodable_value_is_refused(cache_dir: Path) -> None:
    """A partial binding a value memo cannot encode raises EncodingError rather than run."""

    def locked(lock: Any, x: int) -> int:
        return x

    guarded = memo.decorate(functools.partial(locked, threading.Lock()), cache_path=cache_dir)
    with pytest.raises(memo.EncodingError, match=r"functools\.partial"):
        guarded(1)


def test_callable_objects_and_partials_of_memoized_functions_are_refused(
    cache_dir: Path,
) -> None:
    """A callable instance, or a partial of a memoized function, raises ConfigError."""

    class Adder:
        def __call__(self, x: int) -> int:
            return x + 1

    with pytest.raises(memo.ConfigError, match="__call__"):
        memo.decorate(Adder(), cache_path=cache_dir)
    once = memo.decorate(counted([]), cache_path=cache_dir)
    with pytest.raises(memo.ConfigError, match="already memoized"):
        memo.decorate(functools.partial(once, 2))


def test_async_function(cache_dir: Path) -> None:
    """The awaited value of an async function is cached."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    async def fetch(x: int) -> dict[str, int]:
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    async def main() -> list[dict[str, int]]:
        first = await fetch(1)
        second = await fetch(1)
        both = await asyncio.gather(fetch(2), fetch(2))
        return [first, second, *both]

    assert asyncio.run(main()) == [{"x": 1}, {"x": 1}, {"x": 2}, {"x": 2}]
    assert calls == [1, 2]
    assert fetch.is_cached(2)


def test_methods_with_encodable_self(cache_dir: Path) -> None:
    """A method on a dataclass is keyed by the instance's fields."""
    calls: list[int] = []

    @dataclasses.dataclass
    class Scaler:
        factor: int

        @memo.cache(cache_path=cache_dir)
        def scale(self, x: int) -> int:
            calls.append(x)
            return self.factor * x

    assert Scaler(2).scale(3) == 6
    assert Scaler(2).scale(3) == 6
    assert Scaler(3).scale(3) == 9
    assert calls == [3, 3]
    assert Scaler(2).scale.is_cached(3)
    assert Scaler.scale.key(Scaler(2), 3) == Scaler(2).scale.key(3)


def test_methods_with_unencodable_self(cache_dir: Path) -> None:
    """An opaque self gets an error suggesting ignore=['self']; ignoring it works."""

    class Service:
        @memo.cache(cache_path=cache_dir)
        def get(self, x: int) -> int:
            return x

        @memo.cache(cache_path=cache_dir, ignore=["self"])
        def get_ignoring(self, x: int) -> int:
            return x + 1

    with pytest.raises(memo.EncodingError, match=r"ignore=\['self'\]"):
        Service().get(1)
    assert Service().get_ignoring(1) == 2
    assert Service().get_ignoring.is_cached(1)


def test_validate_rejects_bad_values(cache_dir: Path) -> None:
    """A fresh value failing validate is returned but not stored, with a warning."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir, validate=lambda value: value >= 0)
    def f(x: int) -> int:
        calls.append(x)
        return x

    with pytest.warns(memo.MemoWarning, match="not stored"):
        assert f(-1) == -1
    assert not f.is_cached(-1)
    f(5)
    f(5)
    assert calls == [-1, 5]


def test_validate_discards_cached_values(cache_dir: Path) -> None:
    """A cached value failing validate is recomputed."""
    calls: list[int] = []
    state = {"ok": True}

    def check(value: int) -> bool:
        return state["ok"] or value > 100

    @memo.cache(cache_path=cache_dir, validate=check)
    def f(x: int) -> int:
        calls.append(x)
        return x if state["ok"] else x + 1000

    f(1)
    state["ok"] = False
    with pytest.warns(memo.MemoWarning, match="recomputed"):
        assert f(1) == 1001
    assert calls == [1, 1]


def test_max_age_expires_entries(cache_dir: Path) -> None:
    """Entries older than max_age are recomputed."""
    calls: list[int] = []
    f = memo.decorate(counted(calls), cache_path=cache_dir, max_age=0.3)
    f(2)
    f(2)
    assert calls == [2]
    assert f.is_cached(2)
    time.sleep(0.4)
    assert not f.is_cached(2)
    f(2)
    assert calls == [2, 2]


def test_counters(cache_dir: Path) -> None:
    """hits, misses and stores count this process's activity."""
    f = memo.decorate(counted([]), cache_path=cache_dir)
    f(1)
    f(1)
    f(2)
    assert (f.hits, f.misses, f.stores, f.errors) == (1, 2, 2, 0)


def test_memoized_helper_inside_memoized_function(cache_dir: Path) -> None:
    """Nested memoized calls each cache their own results."""
    inner_calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def inner(x: int) -> int:
        inner_calls.append(x)
        return x + 1

    @memo.cache(cache_path=cache_dir)
    def outer(x: int) -> int:
        return inner(x) * 2

    assert outer(1) == 4
    outer.invalidate(1)
    assert outer(1) == 4
    assert inner_calls == [1]


@memo.cache
def module_level_square(x: int) -> int:
    """A module-level memoized function, importable by reference."""
    return x * x


def test_memoized_functions_pickle_by_reference() -> None:
    """A module-level memoized function pickles by reference and stays the same object."""
    import pickle

    clone = pickle.loads(pickle.dumps(module_level_square))
    assert clone is module_level_square


def test_memoized_functions_work_in_process_pools(tmp_path: Path) -> None:
    """A process pool can run a memoized function; results land in the shared store."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        assert list(pool.map(module_level_square, [2, 3])) == [4, 9]
    assert module_level_square.is_cached(2)


def test_bound_methods_of_two_instances_keep_their_own_results(tmp_path: Path) -> None:
    """memo.decorate(A(2).f) and memo.decorate(A(5).f) never share results."""

    class A:
        def __init__(self, n: int) -> None:
            self.n = n

        def f(self, x: int) -> int:
            return self.n * x

    two = memo.decorate(A(2).f, cache_path=tmp_path)
    five = memo.decorate(A(5).f, cache_path=tmp_path)
    assert (two(3), five(3), two(3), five(3)) == (6, 15, 6, 15)
    assert two.misses == five.misses == 1


def test_cache_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """A cache_path naming a file is a ConfigError at decoration, naming the path."""
    results = tmp_path / "results.csv"
    results.write_text("a,b\n")
    for given in (results, str(results), f"file://{results}"):
        with pytest.raises(memo.ConfigError, match=r"results\.csv.* is a file"):
            memo.decorate(counted([]), cache_path=given)
    assert results.read_text() == "a,b\n"
