"""Lazy handles and output fingerprints; add_metadata."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memo
from memo._storage._entries import EntryStore as LocalStore


@pytest.fixture
def counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the entries whose values were read from disk during the test."""
    loaded: list[str] = []
    real = LocalStore.load

    def load(self: LocalStore, name: str, key: str, *args: Any, **kwargs: Any) -> Any:
        loaded.append(name)
        return real(self, name, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "load", load)
    return loaded


def test_chain_that_hits_downstream_loads_nothing_upstream(
    cache_dir: Path, counting_loads: list[str]
) -> None:
    """g(f.lazy(x)) hitting in g performs zero loads of f's value."""
    ran: list[str] = []

    @memo.cache(cache_path=cache_dir)
    def produce(n: int) -> np.ndarray:
        ran.append("produce")
        return np.arange(n, dtype=np.float64)

    @memo.cache(cache_path=cache_dir)
    def consume(data: memo.Lazy[np.ndarray]) -> float:
        ran.append("consume")
        return float(data.load().sum())

    assert consume(produce.lazy(1000)) == 499500.0
    assert ran == ["produce", "consume"]
    counting_loads.clear()
    assert consume(produce.lazy(1000)) == 499500.0
    assert ran == ["produce", "consume"]
    assert "produce" not in counting_loads
    assert counting_loads == ["consume"]


def test_fingerprint_known_without_loading(cache_dir: Path, counting_loads: list[str]) -> None:
    """A handle to a stored entry has its fingerprint before any load."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> list[int]:
        return [x] * 3

    f(2)
    counting_loads.clear()
    handle = f.lazy(2)
    assert len(handle.fingerprint) == 32
    assert counting_loads == []
    assert handle.load() == [2, 2, 2]
    assert counting_loads == ["f"]


def test_identical_values_share_a_fingerprint(cache_dir: Path) -> None:
    """Two calls producing identical values have the same fingerprint; different ones differ."""

    @memo.cache(cache_path=cache_dir)
    def parity(x: int) -> str:
        return "even" if x % 2 == 0 else "odd"

    assert parity.lazy(2).fingerprint == parity.lazy(4).fingerprint
    assert parity.lazy(2).fingerprint != parity.lazy(3).fingerprint
    assert parity.lazy(2) == parity.lazy(4)
    assert hash(parity.lazy(2)) == hash(parity.lazy(4))
    assert parity.key(2) != parity.key(4)


def test_downstream_key_follows_upstream_value(cache_dir: Path) -> None:
    """A new upstream value (same call) gives the downstream call a new key."""
    state = {"offset": 0}

    @memo.cache(cache_path=cache_dir)
    def upstream(x: int) -> int:
        return x + state["offset"]

    @memo.cache(cache_path=cache_dir)
    def downstream(value: memo.Lazy[int]) -> int:
        return value.load() * 10

    assert downstream(upstream.lazy(1)) == 10
    first = downstream.key(upstream.lazy(1))
    state["offset"] = 5
    upstream.refresh(1)
    assert downstream.key(upstream.lazy(1)) != first
    assert downstream(upstream.lazy(1)) == 60


def test_lazy_option_returns_handles(cache_dir: Path) -> None:
    """lazy=True makes calls return memo.Lazy; load() gives the value."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir, lazy=True)
    def f(x: int) -> int:
        calls.append(x)
        return x * 3

    handle: Any = f(2)
    assert isinstance(handle, memo.Lazy)
    assert handle.load() == 6
    again: Any = f(2)
    assert again.load() == 6
    assert calls == [2]
    assert "f" in repr(handle)


def test_lazy_of_missing_entry_computes_once(cache_dir: Path, counting_loads: list[str]) -> None:
    """f.lazy on a miss computes and stores once; the handle keeps the fresh value."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x}

    handle = f.lazy(7)
    assert calls == [7]
    assert f.is_cached(7)
    counting_loads.clear()
    assert handle.load() == {"x": 7}
    assert calls == [7]
    assert counting_loads == []


def test_handle_recomputes_if_entry_is_gone(cache_dir: Path) -> None:
    """A handle whose entry was evicted recomputes on load."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    f(1)
    handle = f.lazy(1)
    f.clear()
    assert handle.load() == 2
    assert calls == [1, 1]


def test_handle_of_unstorable_value_keeps_the_value(cache_dir: Path) -> None:
    """When the value cannot be stored, the handle still loads it (and warns once)."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> Any:
        return (i for i in range(x))  # generators cannot be pickled

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handle = f.lazy(3)
    assert any(issubclass(w.category, memo.MemoWarning) for w in caught)
    assert list(handle.load()) == [0, 1, 2]


def test_handles_pickle_by_reference(cache_dir: Path) -> None:
    """A handle travels to other processes as (function, arguments, fingerprint)."""
    handle = module_square.lazy(4)
    clone = pickle.loads(pickle.dumps(handle))
    assert clone == handle
    assert clone.load() == 16


def test_handle_of_a_local_function_pickles(cache_dir: Path) -> None:
    """A handle of a function defined inside another one pickles (its call by value)."""

    @memo.cache(cache_path=cache_dir)
    def local_cube(x: int) -> int:
        return x**3

    handle = local_cube.lazy(3)
    clone = pickle.loads(pickle.dumps(handle))
    assert clone == handle
    assert clone.load() == 27


_SCRIPT = """
import pickle, sys
import memo

@memo.cache(cache_path=sys.argv[1])
def cube(x):
    return x ** 3

with open(sys.argv[2], "wb") as out:
    pickle.dump(cube.lazy(4), out)
"""


def test_handle_of_a_scripts_main_function_loads_in_another_process(
    cache_dir: Path, tmp_path: Path
) -> None:
    """A handle made in a script's __main__ loads in a process that never ran the script."""
    import subprocess
    import sys

    script, sent = tmp_path / "make_handle.py", tmp_path / "handle.pickle"
    script.write_text(_SCRIPT)
    subprocess.run([sys.executable, str(script), str(cache_dir), str(sent)], check=True)
    read = "import pickle, sys; h = pickle.load(open(sys.argv[1], 'rb')); print(h.load())"
    done = subprocess.run(
        [sys.executable, "-c", read, str(sent)], check=True, capture_output=True, text=True
    )
    assert done.stdout.strip() == "64"


def test_fingerprint_names_the_serializer(cache_dir: Path) -> None:
    """The same stored bytes written by two serializers give two fingerprints."""

    class Raw:
        """Stores bytes as they are (as a second serializer could read them differently)."""

        def __init__(self, name: str) -> None:
            self.name = name

        def dumps(self, value: bytes) -> list[bytes]:
            return [value]

        def loads(self, data: memoryview) -> bytes:
            return bytes(data)

    handles = []
    for name in ("raw-a", "raw-b"):

        @memo.cache(cache_path=cache_dir / name, serializer=Raw(name))
        def blob(x: int) -> bytes:
            return b"same bytes"

        handles.append(blob.lazy(1))
    assert handles[0].load() == handles[1].load()
    assert handles[0].fingerprint != handles[1].fingerprint


def test_unpicklable_unstored_values_never_share_a_fingerprint(cache_dir: Path) -> None:
    """Two values that could not be stored or pickled get fingerprints of their own, so a
    call keyed on one never hits the other's entry."""
    made: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def gen(x: int) -> Any:
        made.append(x)
        return (i for i in range(x))

    @memo.cache(cache_path=cache_dir)
    def total(items: memo.Lazy[Any]) -> int:
        return sum(items.load())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = gen.lazy(3), gen.lazy(4)
        assert first.fingerprint != second.fingerprint
        assert total(first) == 3
        assert total(second) == 6


def test_disabled_lazy_and_refresh_store_nothing(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MEMO_DISABLE=1, lazy() and refresh() compute and store nothing, as calls do."""
    monkeypatch.setenv("MEMO_DISABLE", "1")
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir / "off")
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    assert f.refresh(1) == 2
    assert f.lazy(2).load() == 3
    assert f(1) == 2
    assert calls == [1, 2, 1]
    assert not (cache_dir / "off").exists()


@memo.cache
def module_square(x: int) -> int:
    """A module-level memoized function, importable by reference."""
    return x * x


def test_add_metadata_records_user_items(cache_dir: Path) -> None:
    """Items added during the computation appear under "user" in the entry's metadata."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        assert memo.add_metadata(rows=x, source="sensor")
        return x

    f(3)
    (entry,) = f.entries()
    assert entry["user"] == {"rows": 3, "source": "sensor"}
    assert memo.add_metadata(outside=True) is False


def test_add_metadata_in_async_function(cache_dir: Path) -> None:
    """add_metadata works inside async memoized functions too."""
    import asyncio

    @memo.cache(cache_path=cache_dir)
    async def f(x: int) -> int:
        memo.add_metadata(step="async")
        return x

    assert asyncio.run(f(1)) == 1
    assert f.entries()[0]["user"] == {"step": "async"}


def test_oversized_added_metadata_is_a_failure_to_cache_not_an_error(cache_dir: Path) -> None:
    """Metadata over the entry format's 64 KiB line is refused like any failure to cache: the
    value is returned, one warning, no entry; the next call recomputes."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def annotated(x: int) -> int:
        calls.append(x)
        memo.add_metadata(blob="x" * 70_000)
        return x * 2

    with pytest.warns(memo.MemoWarning, match="add_metadata"):
        assert annotated(3) == 6
    assert not annotated.is_cached(3)
    assert list(cache_dir.glob("*.memo")) == []
    assert annotated(3) == 6
    assert calls == [3, 3]


def test_added_metadata_json_cannot_write_is_a_failure_to_cache_not_an_error(
    cache_dir: Path,
) -> None:
    """Values given to add_metadata that JSON cannot write at all (a dict holding itself)
    leave the call's value returned, one warning naming add_metadata, and no entry."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def annotated(x: int) -> int:
        calls.append(x)
        loop: dict[str, Any] = {}
        loop["self"] = loop
        memo.add_metadata(loop=loop, when=object())  # object(): shown by its str, fine alone
        return x * 2

    with pytest.warns(memo.MemoWarning, match="add_metadata"):
        assert annotated(3) == 6
    assert list(cache_dir.glob("*.memo")) == []
    assert annotated(3) == 6
    assert calls == [3, 3]
