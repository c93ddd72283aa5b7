"""Remote stores: memo against a real S3 API (moto's server on 127.0.0.1) and fsspec memory://."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memo
from memo._lazy import stored_fingerprint
from memo._storage._backend import MISS
from memo._storage._entries import EntryExistsError, EntryStore
from memo._storage._fsspec import FsspecBackend
from memo._storage._open import forget_stores, open_store
from memo._storage._serializers import PICKLE
from memo._storage._urls import MissingPackageError
from memo.cli import main
from tests.s3 import FAST, s3_client, start_server
from tests.stores import entry_store

_SCRIPT = """
import sys
from pathlib import Path

import memo

marker = Path(sys.argv[2])


@memo.cache(cache_path=sys.argv[1])
def slow(n):
    with marker.open("a") as handle:
        handle.write("x")
    return n * n


print(slow(7), slow.cache_info().hits)
"""


@memo.Encoder.ignore
class Calls(list[Any]):
    """The arguments a test's function body ran with; ignored in keys, so a redefined function
    (as a new process would define it) has the same key whatever has been recorded."""


@pytest.fixture(autouse=True)
def _fresh_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no remote store objects and fast-failing S3 settings."""
    monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps(FAST))
    monkeypatch.delenv("MEMO_REMOTE_TIMEOUT", raising=False)
    forget_stores()
    yield
    forget_stores()


def _memoized(url: str, calls: Calls, **options: Any) -> memo.Memoized[[int], int]:
    @memo.cache(cache_path=url, **options)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    return square


def _memo_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, memo.MemoWarning)]


def test_hits_and_misses_on_s3(endpoint: str, bucket: str, url: str) -> None:
    """A result is stored as one object in the bucket and read back, also by a new store."""
    calls = Calls()
    square = _memoized(url, calls)
    assert square(3) == 9
    assert square(3) == 9
    assert calls == [3]
    assert square.cache_info() == memo.CacheInfo(hits=1, misses=1, stores=1, errors=0)
    listed = s3_client(endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == [
        f"cache/.leases/square-{square.key(3)}.lease",  # (done: kept while the entry is)
        f"cache/square-{square.key(3)}.memo",
    ]
    assert str(square.store.root) == url
    assert square.is_cached(3)
    assert not square.is_cached(4)
    forget_stores()  # as a new process would see it
    again = _memoized(url, calls)
    assert again(3) == 9
    assert calls == [3]


def test_metadata_entries_and_explain(url: str) -> None:
    """entries() shows each entry's metadata and URL; explain names the differing argument."""

    @memo.cache(cache_path=url)
    def area(w: int, h: int) -> int:
        memo.add_metadata(unit="m2")
        return w * h

    area(3, 5)
    entries = area.entries()
    assert len(entries) == 1
    assert entries[0]["user"] == {"unit": "m2"}
    assert entries[0]["arguments"] == {"w": "3", "h": "5"}
    assert entries[0]["path"] == f"{url}/area-{area.key(3, 5)}.memo"
    assert area.explain(3, 5).startswith("hit")
    assert "argument 'h'" in area.explain(3, 7)


def test_fingerprints_and_lazy(url: str) -> None:
    """A Lazy handle reads only the header (also of a large entry) and keys a later stage."""
    loads: list[int] = []

    @memo.cache(cache_path=url)
    def table(n: int) -> bytes:
        loads.append(n)
        return bytes(n)

    @memo.cache(cache_path=url)
    def size(data: memo.Lazy[bytes]) -> int:
        return len(data.load())

    handle = table.lazy(300_000)  # larger than one header read: read in ranges
    assert size(handle) == 300_000
    forget_stores()
    again = table.lazy(300_000)
    assert again.fingerprint == handle.fingerprint
    assert size(again) == 300_000
    assert loads == [300_000]
    store = open_store(url)
    header = store.header("table", table.key(300_000))
    assert header is not None
    assert stored_fingerprint(header.serializer, header.fingerprint) == handle.fingerprint
    assert store.header("table", "0" * 32) is None


def test_signed_entries(url: str) -> None:
    """Signed entries load with the key; with another key they are refused and recomputed."""
    calls = Calls()
    signed = _memoized(url, calls, secret_key="first-secret-key-123")
    assert signed(4) == 16
    assert signed(4) == 16
    forget_stores()
    other = _memoized(url, calls, secret_key="other-secret-key-456")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert other(4) == 16
    assert calls == [4, 4]
    assert any("signature" in text for text in _memo_warnings(caught))


def test_max_age(url: str) -> None:
    """An entry older than max_age is a miss and is recomputed."""
    calls = Calls()
    square = _memoized(url, calls, max_age=0.2)
    square(2)
    square(2)
    time.sleep(0.3)
    square(2)
    assert calls == [2, 2]


def test_json_and_npy_serializers(url: str) -> None:
    """The json and npy serializers store and load through S3."""

    @memo.cache(cache_path=url, serializer="json")
    def report(n: int) -> dict[str, Any]:
        return {"n": n, "items": list(range(n))}

    @memo.cache(cache_path=url, serializer=memo.NpySerializer(mmap_mode="r"))
    def ramp(n: int) -> Any:
        return np.arange(n, dtype=np.float32)

    assert report(3) == report(3) == {"n": 3, "items": [0, 1, 2]}
    assert report.cache_info().hits == 1
    first = ramp(1000)
    second = ramp(1000)
    assert ramp.cache_info().hits == 1
    np.testing.assert_array_equal(first, second)
    assert report.entries()[0]["serializer"] == "json"


def test_two_processes_share_a_bucket(url: str, tmp_path: Path) -> None:
    """A second process with its own local settings gets the first one's result from S3."""
    script = tmp_path / "shared.py"
    script.write_text(_SCRIPT)
    marker = tmp_path / "ran"
    outputs = []
    for run in ("first", "second"):
        env = {**os.environ, "MEMO_CACHE_DIR": str(tmp_path / f"local-{run}")}
        result = subprocess.run(
            [sys.executable, str(script), url, str(marker)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.split())
    assert outputs == [["49", "0"], ["49", "1"]]
    assert marker.read_text() == "x"  # the body ran once, in the first process
    assert not (tmp_path / "local-first").exists()


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_objects(endpoint: str, bucket: str, url: str, damage: str) -> None:
    """A damaged object is warned about once, recomputed and replaced."""
    calls = Calls()
    square = _memoized(url, calls)
    square(5)
    client = s3_client(endpoint)
    name = f"cache/square-{square.key(5)}.memo"
    data = bytearray(client.get_object(Bucket=bucket, Key=name)["Body"].read())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) - 20] ^= 0x10
    client.put_object(Bucket=bucket, Key=name, Body=bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert square(5) == 25
        assert square(5) == 25
    assert calls == [5, 5]
    messages = _memo_warnings(caught)
    assert len(messages) == 1
    assert "damaged" in messages[0]
    assert square.is_cached(5)


def test_stopped_server(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the server gone, calls return correct values, warn once per problem, and are quick."""
    server, endpoint = start_server()
    try:
        monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps({**FAST, "endpoint_url": endpoint}))
        calls = Calls()
        square = _memoized(f"s3://{bucket}/stopped", calls)
        assert square(2) == 4
    finally:
        server.stop()
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert square(2) == 4
        first = len(_memo_warnings(caught))
        assert [square(n) for n in range(5)] == [0, 1, 4, 9, 16]
    assert time.monotonic() - started < 30
    messages = _memo_warnings(caught)
    assert calls == [2, 2, 0, 1, 2, 3, 4]
    # One for reading, one for the lease, one for writing; none repeated.
    assert len(messages) == first == 3
    assert "could not read from the remote store" in messages[0]
    assert "could not take the lease" in messages[1]
    assert "could not cache the result" in messages[2]
    assert not square.is_cached(2)
    with pytest.raises(OSError, match="could not list"):
        square.entries()


def test_stalled_endpoint_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint that accepts connections but never answers costs MEMO_REMOTE_TIMEOUT."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        host, port = silent.getsockname()
        options = {
            "endpoint_url": f"http://{host}:{port}",
            "config_kwargs": {"read_timeout": 60, "retries": {"total_max_attempts": 1}},
        }
        monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps(options))
        monkeypatch.setenv("MEMO_REMOTE_TIMEOUT", "0.3")
        calls = Calls()
        square = _memoized("s3://silent-bucket/cache", calls)
        started = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert square(6) == 36
        assert time.monotonic() - started < 10
    assert calls == [6]
    assert any("FSTimeoutError" in text for text in _memo_warnings(caught))


def test_store_and_cli_on_a_url(
    endpoint: str, bucket: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """memo.Store and the memo command list, show, verify, prune and clear a bucket."""
    calls = Calls()
    square = _memoized(url, calls)
    for n in range(3):
        square(n)
    store = memo.Store(url)
    assert repr(store) == f"memo.Store({url!r})"
    assert str(store.root) == url
    assert [(info.name, info.entries) for info in store.functions()] == [("square", 3)]
    key = square.key(1)
    entry = store.find(key[:8])
    assert str(entry.path) == f"{url}/square-{key}.memo"
    assert (entry.metadata() or {})["arguments"] == {"x": "1"}
    assert store.diff(key, square.key(2))[0][0] == "argument x"
    assert store.stats().entries == 3

    assert main(["--cache-path", url, "ls"]) == 0
    assert "1 function, 3 entries" in capsys.readouterr().out
    assert main(["--cache-path", url, "show", key[:10]]) == 0
    assert f"{url}/square-{key}.memo" in capsys.readouterr().out
    assert main(["--cache-path", url, "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["root"] == url

    name = f"cache/square-{square.key(2)}.memo"
    s3_client(endpoint).put_object(Bucket=bucket, Key=name, Body=b"not an entry\n")
    assert main(["--cache-path", url, "verify"]) == 1
    assert "square-" in capsys.readouterr().out
    assert [problem.fixed for problem in store.verify(fix=True)] == [True]
    assert len(store.entries()) == 2

    assert store.delete(key[:8])
    assert not square.is_cached(1)
    assert [entry.key for entry in store.prune(max_size=0, dry_run=True)] == [square.key(0)]
    assert main(["--cache-path", url, "clear", "--yes"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert store.entries() == []
    square(7)
    assert square.clear() == 1
    assert square.entries() == []


def test_memory_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// works too, also as MEMO_CACHE_DIR (the default store) and for Store.default."""
    name = f"memory://memo-{uuid.uuid4().hex[:8]}/cache"
    monkeypatch.setenv("MEMO_CACHE_DIR", name)
    calls = Calls()

    @memo.cache
    def cube(x: int) -> int:
        calls.append(x)
        return x**3

    assert cube(2) == cube(2) == 8
    assert calls == [2]
    assert isinstance(entry_store(cube).backend, FsspecBackend)
    assert [entry.key for entry in memo.Store.default().entries()] == [cube.key(2)]
    assert cube.invalidate(2)
    assert not cube.invalidate(2)
    assert cube.refresh(2) == 8
    assert calls == [2, 2]


@pytest.mark.parametrize("serializer", ["npy", "pickle"])
def test_large_results_on_memory_urls(serializer: str) -> None:
    """A result of several MiB (its payload in several buffers) stores and loads whole on a
    filesystem other than S3 (given the buffers joined)."""

    @memo.cache(cache_path=f"memory://memo-{uuid.uuid4().hex[:8]}", serializer=serializer)
    def ramp(n: int) -> Any:
        return np.arange(n, dtype=np.float64)

    stored = ramp(600_000)
    loaded = ramp(600_000)
    assert ramp.cache_info().hits == 1
    np.testing.assert_array_equal(loaded, stored)


def test_create_only_after_a_miss(url: str) -> None:
    """After a miss, an entry another process stored meanwhile stands; a refresh overwrites."""
    mine, theirs = EntryStore(FsspecBackend(url)), EntryStore(FsspecBackend(url))
    key = "ab" * 16
    pickle = PICKLE
    assert mine.load("f", key) is MISS
    theirs.save("f", key, "theirs", "", pickle)
    with pytest.raises(EntryExistsError):
        mine.save("f", key, "mine", "", pickle)
    assert mine.load("f", key) == "theirs"
    mine.save("f", key, "mine", "", pickle)  # not after a miss: overwrites
    assert theirs.load("f", key) == "mine"


def test_threads_of_one_process_compute_once() -> None:
    """Threads asking for the same missing key wait for each other (in-process lock)."""
    calls = Calls()
    gate = threading.Event()

    @memo.cache(cache_path=f"memory://memo-{uuid.uuid4().hex[:8]}")
    def slow(x: int) -> int:
        calls.append(x)
        gate.wait(0.2)
        return x + 1

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2, 2, 2, 2]
    assert calls == [1]


def test_a_function_calling_itself_does_not_wait_for_itself() -> None:
    """A same-key call made while computing is not blocked by its own thread's lock."""
    calls = Calls()

    @memo.cache(cache_path=f"memory://memo-{uuid.uuid4().hex[:8]}", lock_timeout=30)
    def nested(x: int) -> int:
        calls.append(x)
        return x if len(calls) > 1 else nested(x) + 1

    started = time.monotonic()
    assert nested(3) == 4
    assert time.monotonic() - started < 5
    assert calls == [3, 3]


def test_async_functions() -> None:
    """An async memoized function works on a remote store (async in-process locks)."""
    calls = Calls()

    @memo.cache(cache_path=f"memory://memo-{uuid.uuid4().hex[:8]}")
    async def double(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.01)
        return 2 * x

    async def both() -> list[int]:
        return list(await asyncio.gather(double(5), double(5)))

    assert asyncio.run(both()) == [10, 10]
    assert asyncio.run(both()) == [10, 10]
    assert calls == [5]


def test_cacheable_and_max_size_are_refused_with_a_warning() -> None:
    """A Cacheable result is returned unstored; max_size is warned about as not enforced."""

    class Model:
        def to_cache(self, directory: Path) -> None:
            (directory / "weights").write_bytes(b"w")

        @classmethod
        def from_cache(cls, directory: Path) -> Model:
            return cls()

    @memo.cache(cache_path=f"memory://memo-{uuid.uuid4().hex[:8]}", max_size="1MB")
    def train(n: int) -> Model:
        return Model()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(train(1), Model)
    messages = _memo_warnings(caught)
    assert any("max_size is not enforced" in text for text in messages)
    assert any("Cacheable results need a local cache_path" in text for text in messages)


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown schemes, bad options and missing packages are ConfigErrors at decoration."""
    with pytest.raises(memo.ConfigError, match="no nosuchscheme://"):
        memo.cache(cache_path="nosuchscheme://x")
    monkeypatch.setenv("MEMO_STORAGE_OPTIONS", "{not json")
    with pytest.raises(memo.ConfigError, match="MEMO_STORAGE_OPTIONS"):
        memo.cache(cache_path="s3://bucket/x")
    monkeypatch.delenv("MEMO_STORAGE_OPTIONS")
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(MissingPackageError, match='pip install "memo-cache\\[remote\\]"') as info:
        memo.cache(cache_path="s3://bucket/x")
    assert isinstance(info.value, ImportError)
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError, match='pip install "memo-cache\\[remote\\]"'):
        memo.Store("memory://x")
