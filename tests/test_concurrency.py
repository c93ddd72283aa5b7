"""Real processes and threads sharing one store: compute once, survive kills, fail safely."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._exceptions import reset_warnings
from memo._storage import _files
from memo._storage._backend import MISS
from memo._storage._locks import Claims
from memo._storage._open import forget_stores
from memo._storage._serializers import PICKLE
from tests.stores import LocalStore

CTX = multiprocessing.get_context("fork")
JOIN = 30.0  # no child should take this long; a hang fails the test instead of the suite
BIG = 48 * 2**20
PATTERN = bytes(range(256)) * (BIG // 256)


def square_slowly(log: str, delay: float, n: int) -> int:
    """Append one line per run of the body to ``log`` (O_APPEND), then sleep ``delay`` s."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(delay)
    return n * n


def big_result(n: int, stamp: int) -> tuple[int, bytes]:
    """A large result (48 MiB), so that writing it takes a while; ``stamp`` is not in the key."""
    return stamp, PATTERN


def large_bytes(n: int) -> bytes:
    """4 MiB of bytes, more than the file-size limit of the disk-full test."""
    return bytes([n % 256]) * (4 * 2**20)


def _runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _slow(cache_dir: Path) -> memo.Memoized[[str, float, int], int]:
    return memo.decorate(square_slowly, cache_path=cache_dir, ignore=["delay"])


def _start(target: Callable[..., Any], *args: Any) -> Any:
    process = CTX.Process(target=target, args=args, daemon=True)
    process.start()
    return process


@pytest.fixture
def children() -> Iterator[list[Any]]:
    """Processes started by a test; any still alive at the end are killed."""
    started: list[Any] = []
    yield started
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(JOIN)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


# --- compute once -------------------------------------------------------------------------


def test_processes_compute_a_missing_key_once(
    cache_dir: Path, tmp_path: Path, children: list[Any]
) -> None:
    """Eight processes asking for one missing key at once run the body exactly once."""
    log = tmp_path / "runs.log"
    func = _slow(cache_dir)
    barrier = CTX.Barrier(8)
    receive, send = CTX.Pipe(duplex=False)

    def worker() -> None:
        barrier.wait(JOIN)
        send.send((os.getpid(), func(str(log), 0.5, 12)))

    children.extend(_start(worker) for _ in range(8))
    send.close()
    results = []
    for _ in range(8):
        assert receive.poll(JOIN), "a worker did not answer"
        results.append(receive.recv())
    for process in children:
        process.join(JOIN)
        assert process.exitcode == 0
    assert sorted(pid for pid, _ in results) == sorted(p.pid for p in children)
    assert [value for _, value in results] == [144] * 8
    assert _runs(log) == 1
    assert func.is_cached(str(log), 0.0, 12)


def test_threads_compute_a_missing_key_once(cache_dir: Path, tmp_path: Path) -> None:
    """Eight threads of one process asking for one missing key run the body exactly once."""
    log = tmp_path / "runs.log"
    func = _slow(cache_dir)
    barrier = threading.Barrier(8)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(JOIN)
            results.append(func(str(log), 0.3, 7))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive()
    assert errors == []
    assert results == [49] * 8
    assert _runs(log) == 1
    assert (func.misses, func.stores) == (1, 1)


def test_killed_lock_holder_does_not_block_others(
    cache_dir: Path, tmp_path: Path, children: list[Any]
) -> None:
    """A process SIGKILLed while computing (holding the key's lock) does not block the next."""
    log = tmp_path / "runs.log"
    func = _slow(cache_dir)
    holder = _start(func, str(log), 30.0, 5)
    children.append(holder)
    _wait_for(lambda: _runs(log) == 1, JOIN, "the first process to start computing")
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(JOIN)
    assert holder.exitcode == -signal.SIGKILL

    def second() -> None:
        os._exit(0 if func(str(log), 0.0, 5) == 25 else 1)

    started = time.monotonic()
    other = _start(second)
    children.append(other)
    other.join(JOIN)
    elapsed = time.monotonic() - started
    assert other.exitcode == 0
    assert elapsed < 10, f"the second process waited {elapsed:.1f} s for a dead holder's lock"
    assert _runs(log) == 2, "the second process must compute the value itself"
    assert func(str(log), 0.0, 5) == 25
    assert _runs(log) == 2


# --- crash safety -------------------------------------------------------------------------


def _big(cache_dir: Path) -> memo.Memoized[[int, int], tuple[int, bytes]]:
    return memo.decorate(big_result, cache_path=cache_dir, ignore=["stamp"])


def _check_entries(cache_dir: Path, stamps: range) -> int:
    """Every entry file loads as a value some writer wrote, or is a miss; returns the count."""
    store = LocalStore(cache_dir)
    loaded = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memo.MemoWarning)
        for name, key in [(entry.name, entry.key) for entry in store.listing()]:
            value = store.load(name, key)
            if value is MISS:
                continue
            stamp, data = value
            assert stamp in stamps
            assert data == PATTERN
            loaded += 1
    return loaded


def _paused_or_done(marker: Path, writer: Any) -> bool:
    return marker.exists() or not writer.is_alive()


def _pause_at(phase: str, marker: Path) -> None:
    """In a writer: stop forever at ``phase`` of publishing, after touching ``marker``."""

    def hook(reached: str) -> None:
        if reached == phase:
            marker.touch()
            time.sleep(3600)

    _files.phase_hook = hook


def test_writer_killed_at_random_moments_never_leaves_a_wrong_value(
    cache_dir: Path, children: list[Any]
) -> None:
    """Killing a writer of a large entry at any moment leaves the old entry, the new, or none."""
    func = _big(cache_dir)
    tmp = cache_dir / ".tmp"

    def write(stamp: int, phase: str | None = None) -> None:
        if phase is not None:
            _pause_at(phase, cache_dir.parent / f"paused-{stamp}")
        func.refresh(0, stamp)

    started = time.monotonic()
    first = _start(write, 0)
    children.append(first)
    first.join(JOIN)
    write_time = time.monotonic() - started
    assert first.exitcode == 0
    assert _check_entries(cache_dir, range(1)) == 1

    rng = random.Random(1234)
    killed_mid_write = 0
    for stamp in range(1, 16):
        # Every third writer stops with all bytes written but unpublished, or with them under
        # a temporary name: deterministic kills in the middle of publishing.
        phase = {0: "written", 1: "named"}.get(stamp % 3) if stamp % 3 != 2 else None
        writer = _start(write, stamp, phase)
        children.append(writer)
        if phase is not None:
            marker = cache_dir.parent / f"paused-{stamp}"
            _wait_for(functools.partial(_paused_or_done, marker, writer), JOIN, "the pause")
        else:
            time.sleep(rng.uniform(0, write_time))
        if writer.is_alive():
            os.kill(writer.pid, signal.SIGKILL)
        writer.join(JOIN)
        assert writer.exitcode in (0, -signal.SIGKILL)
        killed_mid_write += phase is not None and writer.exitcode == -signal.SIGKILL
        if phase == "named":
            assert os.listdir(tmp), "a writer killed while its file had a temporary name"
        elif phase == "written":
            assert not os.listdir(tmp), "an unnamed file vanishes with its writer"
        # The entry is published atomically, so it is always a complete one.
        assert _check_entries(cache_dir, range(stamp + 1)) == 1
        assert func(0, 99)[1] == PATTERN
    assert killed_mid_write == 10

    forget_stores()  # as in a new process: a new store, whose first write sweeps
    later = _big(cache_dir)
    stamp, data = later(0, 99)
    assert stamp in range(16)
    assert data == PATTERN
    assert later.refresh(0, 100) == (100, PATTERN)
    assert os.listdir(tmp) == []
    assert later(0, 101) == (100, PATTERN)


# --- disk full ----------------------------------------------------------------------------


def _disk_full_child(cache_dir: str, limit: int, send: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    reset_warnings()
    func = memo.decorate(large_bytes, cache_path=cache_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        correct = [func(3) == large_bytes(3) for _ in range(5)]
    send.send(
        {
            "correct": correct,
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
            "counts": (func.misses, func.stores, func.errors, func.hits),
        }
    )


def test_disk_full_returns_the_value_and_leaves_nothing(
    cache_dir: Path, children: list[Any]
) -> None:
    """A write that hits the file-size limit returns the value, warns once, leaves no file."""
    limit = 2**20
    receive, send = CTX.Pipe(duplex=False)
    child = _start(_disk_full_child, str(cache_dir), limit, send)
    children.append(child)
    send.close()
    assert receive.poll(JOIN), "the child did not answer"
    report = receive.recv()
    child.join(JOIN)
    assert child.exitcode == 0
    assert report["correct"] == [True] * 5
    assert len(report["warnings"]) == 1, report["warnings"]
    assert report["warnings"][0].startswith("MemoWarning: memo: could not cache")
    assert "File too large" in report["warnings"][0]
    assert report["counts"] == (5, 0, 5, 0)
    assert list(cache_dir.glob("*.memo")) == []
    assert os.listdir(cache_dir / ".tmp") == []

    func = memo.decorate(large_bytes, cache_path=cache_dir)  # no limit here: it is stored
    assert func(3) == large_bytes(3)
    assert func.is_cached(3)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _lock_is_free(directory: Path, key: str) -> bool:
    """Whether another process can take ``key``'s lock in ``directory`` right now."""
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2][:15], 16))\n"
        "except OSError:\n"
        "    sys.exit(1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(directory / ".lock"), key], check=False, timeout=60
    )
    return done.returncode == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count descriptors")
def test_short_lived_stores_do_not_keep_lock_files_open(tmp_path: Path) -> None:
    """A store's lock-file descriptor is closed once no store object for that directory is left."""
    import gc

    before = _open_descriptors()
    for i in range(200):
        store = LocalStore(tmp_path / f"job-{i}")
        store.save("f", "0" * 32, i, "", PICKLE)
        with store.lock("0" * 32, 1.0) as held:
            assert held
        del store
    gc.collect()
    assert _open_descriptors() - before < 10
    # Two stores of one directory share a descriptor: a second one opening the lock file, or
    # being dropped, never releases the first one's locks (POSIX drops them on any close).
    first, second = LocalStore(tmp_path / "shared"), LocalStore(tmp_path / "shared")
    with first.lock("1" * 32, 1.0) as held:
        assert held
        with second.lock("2" * 32, 1.0):
            pass
        del second
        gc.collect()
        assert not _lock_is_free(tmp_path / "shared", "1" * 32)
    assert _lock_is_free(tmp_path / "shared", "1" * 32)


def test_a_function_calling_itself_does_not_wait_for_its_own_lock(cache_dir: Path) -> None:
    """A same-key call made while computing (sync, or async in the same task) is computed at
    once rather than waiting out the lock timeout for the call that is waiting on it."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir, lock_timeout=60)
    def nested(x: int) -> int:
        calls.append(x)
        return x if len(calls) > 1 else nested(x) + 1

    @memo.cache(cache_path=cache_dir, lock_timeout=60)
    async def nested_async(x: int) -> int:
        calls.append(x)
        return x if len(calls) > 3 else await nested_async(x) + 1

    started = time.monotonic()
    assert nested(3) == 4
    assert asyncio.run(nested_async(5)) == 6
    assert time.monotonic() - started < 30
    assert calls == [3, 3, 5, 5]


def test_claims_wait_for_the_holder_time_out_and_leave_nothing_behind() -> None:
    """A claimed key makes other owners wait (until dropped, or until their timeout), tells
    the holder itself at once, and the table is empty once every claim is dropped."""
    claims = Claims()
    mine = claims.claim("k", "first", 1.0)
    assert mine is not None
    assert claims.claim("k", "first", 60.0) is None  # the holder asking again: at once
    assert claims.holder("k") == "first"
    assert claims.claim("k", "second", 0.05) is None  # timed out
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(claims.claim("k", "second", 60.0)))
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()  # waiting for the holder
    claims.drop("k", mine)
    waiter.join(timeout=30)
    assert len(got) == 1
    assert got[0] is not None
    claims.drop_owned("k", "first")  # not its holder any more: nothing happens
    assert claims.holder("k") == "second"
    claims.drop_owned("k", "second")
    assert claims.busy == {}
    assert claims.holder("k") is None


def test_claims_keep_threads_apart_and_wake_every_waiter() -> None:
    """Threads racing for a few keys never hold one key together, and every wait ends when
    the key is dropped (a lost wake-up would sit out the 60-second timeout)."""
    claims = Claims()
    holders: dict[str, int] = {}
    overlaps: list[str] = []
    slowest: list[float] = []

    def work(number: int) -> None:
        for round_ in range(150):
            key = f"k{(number + round_) % 3}"
            started = time.monotonic()
            mine = claims.claim(key, number, 60.0)
            slowest.append(time.monotonic() - started)
            assert mine is not None
            if holders.setdefault(key, number) != number:
                overlaps.append(key)
            time.sleep(0.0001)
            del holders[key]
            claims.drop(key, mine)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert overlaps == []
    assert len(slowest) == 8 * 150
    assert max(slowest) < 30.0
    assert claims.busy == {}
