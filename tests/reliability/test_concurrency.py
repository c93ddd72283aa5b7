"""Many real processes on one store: compute once, complete values, eviction, reentrancy, fork.

Counts of work done come from ``O_APPEND`` log lines written by the function bodies, so they
are exact across processes. Every child reports through its exit code and a result file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._storage._open import forget_stores

from ._support import figure, scale

CTX = multiprocessing.get_context("fork")
JOIN = 120.0


def _log(log: str, text: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


def _payload(seed: int, size: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // 32 + 1))[:size]


def keyed(log: str, k: int) -> tuple[int, bytes]:
    """Log one line per run of the body, then return a value derived from ``k``."""
    _log(log, str(k))
    time.sleep(0.005)
    return k, _payload(k, 2048)


def versioned(log: str, version: int) -> tuple[int, bytes]:
    """A value whose payload is derived from ``version`` (which is not part of the key)."""
    _log(log, str(version))
    return version, _payload(version, 256 * 1024)


def evictable(k: int) -> tuple[int, bytes]:
    """A 16 KiB value derived from ``k``."""
    return k, _payload(k, 16 * 1024)


def nested(log: str, x: int, depth: int) -> int:
    """Calls itself with the same key (``depth`` is ignored) until depth 0."""
    _log(log, str(depth))
    if depth == 0:
        return x
    inner: int = NESTED(log, x, depth - 1)
    return inner + 1


NESTED: Any = None


def slow_square(log: str, x: int, delay: float) -> int:
    """Log, sleep ``delay`` seconds, return x squared."""
    _log(log, str(x))
    time.sleep(delay)
    return x * x


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _run(workers: list[Callable[[], None]]) -> list[Any]:
    """Start each worker in a forked process; wait; return them (all must exit 0)."""
    processes = [CTX.Process(target=worker, daemon=True) for worker in workers]
    for process in processes:
        process.start()
    deadline = time.monotonic() + JOIN
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0.1))
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.kill()
        process.join(5)
    assert not alive, f"{len(alive)} processes hung"
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return processes


def _exit_with(check: Callable[[], None]) -> Callable[[], None]:
    """A process body: run ``check``; exit 0 only if it raised nothing and warned nothing."""

    def body() -> None:
        code = 1
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check()
            code = 0 if not caught else 3
            if caught:
                print("warnings:", [str(w.message) for w in caught])
        except BaseException as exc:  # reported through the exit code
            print("failed:", type(exc).__name__, exc)
        finally:
            os._exit(code)

    return body


def _leftovers(root: Path) -> list[str]:
    tmp = root / ".tmp"
    temps = sorted(os.listdir(tmp)) if tmp.is_dir() else []
    others = [
        n
        for n in os.listdir(root)
        if not n.endswith(".memo") and n not in (".tmp", ".lock", ".gitignore")
    ]
    return temps + others


@pytest.fixture
def clean_shared() -> Iterator[None]:
    """Forked children must not inherit store objects made by earlier tests."""
    forget_stores()
    yield
    forget_stores()


def test_sixteen_processes_compute_each_key_once(
    cache_dir: Path, tmp_path: Path, clean_shared: None
) -> None:
    """16 processes x 1,000 calls over 50 keys: each key computed once, every value right."""
    log = tmp_path / "runs.log"
    calls, processes, keys = scale(1000, 5000), 16, 50
    func = memo.decorate(keyed, cache_path=cache_dir)

    def worker(seed: int) -> Callable[[], None]:
        def check() -> None:
            rng = random.Random(seed)
            for _ in range(calls):
                k = rng.randrange(keys)
                assert func(str(log), k) == (k, _payload(k, 2048))

        return _exit_with(check)

    _run([worker(seed) for seed in range(processes)])
    runs = Counter(_lines(log))
    assert sorted(runs) == sorted(str(k) for k in range(keys)), "every key computed"
    assert set(runs.values()) == {1}, f"keys computed more than once: {runs.most_common(3)}"
    assert _leftovers(cache_dir) == []
    figure("concurrent calls (16 processes)", calls * processes)


def test_readers_racing_a_refreshing_writer_see_complete_values(
    cache_dir: Path, tmp_path: Path, clean_shared: None
) -> None:
    """Readers of a key a writer keeps replacing always get a whole, consistent, newer value."""
    log = tmp_path / "runs.log"
    func = memo.decorate(versioned, cache_path=cache_dir, ignore=["version"])
    assert func(str(log), 0)[0] == 0
    duration = scale(2, 20)
    stop_at = time.time() + duration
    counts = tmp_path / "reads"
    counts.mkdir()

    def writer() -> None:
        version = 1
        while time.time() < stop_at:
            func.refresh(str(log), version)
            version += 1

    def reader(index: int) -> Callable[[], None]:
        def check() -> None:
            last, reads = 0, 0
            while time.time() < stop_at:
                version, payload = func(str(log), -1)
                assert version >= last, f"went back from version {last} to {version}"
                assert payload == _payload(version, 256 * 1024), f"torn value at {version}"
                last, reads = version, reads + 1
            (counts / str(index)).write_text(json.dumps([reads, last]))

        return _exit_with(check)

    _run([_exit_with(writer), *(reader(i) for i in range(4))])
    results = [json.loads(p.read_text()) for p in counts.iterdir()]
    written = len(_lines(log))
    assert "-1" not in _lines(log), "a reader found no entry and computed"
    assert written > 5, "the writer must have replaced the entry many times"
    assert all(last > 0 for _, last in results), "readers saw new versions"
    assert _leftovers(cache_dir) == []
    figure("racing reads of a refreshed key", sum(reads for reads, _ in results))
    figure("refreshes raced by readers", written - 1)


def test_eviction_and_clear_while_other_processes_use_the_store(
    cache_dir: Path, clean_shared: None
) -> None:
    """With a tiny budget and another process clearing, every call still returns its value."""
    func = memo.decorate(evictable, cache_path=cache_dir, max_size=6 * 17 * 1024)
    duration = scale(2, 20)
    stop_at = time.time() + duration

    def user(seed: int) -> Callable[[], None]:
        def check() -> None:
            rng = random.Random(seed)
            while time.time() < stop_at:
                k = rng.randrange(20)
                assert func(k) == (k, _payload(k, 16 * 1024))

        return _exit_with(check)

    def clearer() -> None:
        while time.time() < stop_at:
            func.clear()
            time.sleep(0.01)

    _run([*(user(seed) for seed in range(4)), _exit_with(clearer)])
    # Each process counts what it writes; writers racing each other can overshoot until the
    # next write, which rescans and evicts: the bound is the budget plus one entry per writer.
    total = sum(p.stat().st_size for p in cache_dir.glob("*.memo"))
    assert total <= 6 * 17 * 1024 + 4 * 17 * 1024
    assert func(99) == (99, _payload(99, 16 * 1024))  # a write in this (new) process
    assert sum(p.stat().st_size for p in cache_dir.glob("*.memo")) <= 6 * 17 * 1024
    assert _leftovers(cache_dir) == []


def test_reentrant_same_key_call_computes_without_waiting(cache_dir: Path, tmp_path: Path) -> None:
    """A function calling itself with its own key computes at once instead of waiting."""
    global NESTED
    log = tmp_path / "runs.log"
    NESTED = memo.decorate(nested, cache_path=cache_dir, ignore=["depth"], lock_timeout=30)
    started = time.monotonic()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(NESTED(str(log), 5, 3)), daemon=True)
    thread.start()
    thread.join(60)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), "a reentrant call hung"
    assert elapsed < 5, f"a reentrant call waited {elapsed:.1f} s for its own lock"
    assert result == [8]
    assert _lines(log) == ["3", "2", "1", "0"]
    assert NESTED(str(log), 5, 0) == 8, "the outermost value is the one stored last"


def test_fork_while_a_thread_holds_the_key_lock(
    cache_dir: Path, tmp_path: Path, clean_shared: None
) -> None:
    """A child forked while a parent thread computes a key waits for it, not for ever."""
    log = tmp_path / "runs.log"
    func = memo.decorate(slow_square, cache_path=cache_dir, ignore=["delay"], lock_timeout=60)
    computing = threading.Thread(target=func, args=(str(log), 6, 1.5), daemon=True)
    computing.start()
    deadline = time.monotonic() + 10
    while not _lines(log) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _lines(log) == ["6"], "the parent thread is computing, holding the key's lock"

    def child() -> None:
        assert func(str(log), 6, 0.0) == 36
        assert func(str(log), 7, 0.0) == 49

    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        _run([_exit_with(child)])
    elapsed = time.monotonic() - started
    computing.join(10)
    assert elapsed < 15, f"the child waited {elapsed:.1f} s"
    assert _lines(log) == ["6", "7"], "the child loaded the parent's value once it was stored"
