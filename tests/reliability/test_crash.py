"""Writers of a 200 MB result SIGKILLed at every phase of publishing, and at random moments.

A forked child computes a 200 MB array (derived from the argument and a stamp that is not part
of the key, so old and new values tell apart) and stores it: pickled, as ``.npy``, through
named temp files (as where ``O_TMPFILE`` is missing) and as a ``Cacheable`` directory. At a
pause point of publishing (``_files.phase_hook``, which only tests set) the child touches a
marker and sleeps, and the parent SIGKILLs it; other children are killed after a random delay.
After each kill: every entry on disk loads complete and right or is rejected, the key's lock
is free at once, a new store returns the right value (loaded when an entry survived, else
computed again) within seconds, its first write sweeps the dead writer's temp files, and
``Store.verify`` finds nothing wrong.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import random
import signal
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash

import memo
from memo._exceptions import reset_warnings
from memo._storage import _files
from memo._storage._backend import MISS
from memo._storage._open import forget_stores, open_store
from tests.stores import LocalStore, disk

from ._support import figure, scale

# fork, not spawn: the child starts in milliseconds and shares the 200 MB base array with the
# parent (copy on write); it still is a separate process that the kernel kills and cleans up.
CTX = multiprocessing.get_context("fork")
SIZE = 200 * 2**20
JOIN = 60.0  # no child takes this long; a hang fails the test, not the suite
WAIT = 20.0  # a call after a kill must finish within this (its lock must not block)
ARG = 1
# The phases each kind of writer is stopped at (``_files.reached``), in publishing order; "#2"
# is a phase's second time (an npy entry publishes its payload file, then its record). The
# writers replace an entry, so the replacing phases ("named", "moved-aside") are reached.
PHASES = {
    "pickle": ("locked", "opened", "payload", "written", "named", "published"),
    "named": ("opened", "payload", "written", "named", "published"),
    "npy": ("payload", "written", "named", "published", "payload#2", "published#2"),
    "cacheable": ("staged", "moved-aside", "placed", "written", "published"),
}
# Phases at which the killed writer leaves something in .tmp for a later run to sweep.
LEAVES_TEMP = {
    "pickle": {"named"},
    "named": {"opened", "payload", "written", "named"},
    "npy": {"named"},
    "cacheable": {"staged", "moved-aside", "named"},
}
# A replaced npy entry's record is removed first: until the new record is published, the
# entry is gone (a clean miss, computed again), never the old record over the new payload.
GONE = {("npy", phase) for phase in PHASES["npy"][:-1]}
# The phase after which the new entry is complete.
DONE = {"pickle": "published", "named": "published", "npy": "published#2", "cacheable": "published"}
# A Cacheable entry whose directory was swapped but whose entry file was not yet replaced is
# rejected (its files differ from its manifest), never loaded.
REJECTED = {("cacheable", "moved-aside"), ("cacheable", "placed"), ("cacheable", "written")}
_kills: Counter[str] = Counter()  # by phase, and "random"
_finished: Counter[str] = Counter()  # writers meant to be killed at random that finished first


@functools.cache
def _base() -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.random.default_rng(20240901).integers(0, 256, SIZE, dtype=np.uint8)


@functools.cache
def _tail_digest() -> bytes:
    return xxhash.xxh3_128(_base()[16:].data).digest()


def _array(arg: int, stamp: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    array = _base().copy()
    array[:8] = np.frombuffer(stamp.to_bytes(8, "little"), dtype=np.uint8)
    array[8:16] = np.frombuffer(arg.to_bytes(8, "little"), dtype=np.uint8)
    return array


class Blob:
    """A Cacheable result: the array in one file, its size in another."""

    def __init__(self, array: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        self.array = array

    def to_cache(self, directory: Path) -> None:
        """Write ``size.txt``, then the array's bytes to ``data.bin``."""
        (directory / "size.txt").write_text(str(self.array.size))
        self.array.tofile(directory / "data.bin")

    @classmethod
    def from_cache(cls, directory: Path) -> Blob:
        """Read the array back."""
        array = np.fromfile(directory / "data.bin", dtype=np.uint8)
        assert array.size == int((directory / "size.txt").read_text())
        return cls(array)


def _log(log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"run\n")
    finally:
        os.close(fd)


def produce(log: str, arg: int, stamp: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Log a run, then return 200 MB derived from ``arg`` and ``stamp`` (not in the key)."""
    _log(log)
    return _array(arg, stamp)


def produce_blob(log: str, arg: int, stamp: int) -> Blob:
    """The same array as a Cacheable result."""
    _log(log)
    return Blob(_array(arg, stamp))


def _func(kind: str, root: Path, lock_timeout: float | None = None) -> Any:
    function: Any = produce_blob if kind == "cacheable" else produce
    serializer = "npy" if kind == "npy" else None
    func = memo.decorate(
        function,
        cache_path=root,
        ignore=["log", "stamp"],
        serializer=serializer,
        lock_timeout=lock_timeout,
    )
    if kind == "named":
        disk(open_store(root))._tmpfile = False  # as on a filesystem without O_TMPFILE
    return func


def tick(n: int) -> int:
    """A small function whose first store in a process sweeps dead writers' temp files."""
    return n


def _stamp(value: Any, arg: int) -> int:
    """The stamp of a right value for ``arg``; fails on anything partial or wrong."""
    array = value.array if isinstance(value, Blob) else value
    assert isinstance(array, np.ndarray), type(array)
    assert array.dtype == np.uint8
    assert array.size == SIZE, f"a value of {array.size} bytes, not {SIZE}"
    assert int.from_bytes(array[8:16].tobytes(), "little") == arg, "a value of another argument"
    assert xxhash.xxh3_128(array[16:].data).digest() == _tail_digest(), "a value with wrong bytes"
    return int.from_bytes(array[:8].tobytes(), "little")


def _writer(root: Path, kind: str, log: str, arg: int, stamp: int, phase: str | None) -> None:
    """In a child: store ``arg``'s value under ``stamp``; at ``phase``, touch a marker, sleep."""
    forget_stores()
    reset_warnings()
    if phase is not None:
        marker = root.parent / f"paused-{os.getpid()}"

        name, _, nth = phase.partition("#")
        seen: Counter[str] = Counter()

        def hook(reached: str) -> None:
            seen[reached] += 1
            if reached == name and seen[reached] == int(nth or 1):
                marker.touch()
                time.sleep(3600)

        _files.phase_hook = hook
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning in a writer fails it (exit code 1)
        _func(kind, root).refresh(log, arg, stamp)


def _start(*args: Any) -> Any:
    process = CTX.Process(target=_writer, args=args, daemon=True)
    process.start()
    return process


def _wait_paused(root: Path, process: Any, phase: str) -> None:
    marker = root.parent / f"paused-{process.pid}"
    deadline = time.monotonic() + JOIN
    while not marker.exists():
        assert process.is_alive(), f"the writer ended without reaching {phase!r}"
        assert time.monotonic() < deadline, f"the writer did not reach {phase!r}"
        time.sleep(0.005)
    marker.unlink()


def _kill(process: Any) -> bool:
    """SIGKILL the writer if it still runs; True if the kill is what ended it."""
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
    process.join(JOIN)
    assert process.exitcode in (0, -signal.SIGKILL), f"writer exit code {process.exitcode}"
    return bool(process.exitcode == -signal.SIGKILL)


def _runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _on_disk(root: Path) -> tuple[dict[int, int | None], list[str]]:
    """Each entry's stamp by argument (None: rejected), and the damage warnings."""
    store = LocalStore(root)
    found: dict[int, int | None] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reset_warnings()
        for name, key in [(entry.name, entry.key) for entry in store.listing()]:
            if name == "tick":
                continue
            value = store.load(name, key)
            if value is MISS:
                found[-len(found) - 1] = None
                continue
            array = value.array if isinstance(value, Blob) else value
            arg = int.from_bytes(array[8:16].tobytes(), "little")
            found[arg] = _stamp(value, arg)
    return found, [str(w.message) for w in caught]


def _next_run(root: Path, kind: str, log: Path, arg: int, stamp: int) -> tuple[int, bool]:
    """As a new process: call for ``arg``; (the value's stamp, whether it was computed)."""
    forget_stores()
    reset_warnings()
    key = _func(kind, root).key(str(log), arg, stamp)
    with LocalStore(root).lock(key, 0.0) as held:
        assert held, "the key's lock is still held after its holder was killed"
    func = _func(kind, root, lock_timeout=WAIT)
    runs = _runs(log)
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memo.MemoWarning)  # a rejected entry warns once
        value = func(str(log), arg, stamp)
    elapsed = time.monotonic() - started
    assert elapsed < WAIT, f"the call after a kill took {elapsed:.1f} s"
    computed = _runs(log) > runs
    found = _stamp(value, arg)
    # A later run's first write sweeps the temp files of writers that died.
    assert memo.decorate(tick, cache_path=root)(stamp) == stamp
    assert os.listdir(root / ".tmp") == [], "a dead writer's temp files survived the sweep"
    assert memo.Store(root).verify() == []
    del value
    return found, computed


@pytest.mark.parametrize("kind", list(PHASES))
def test_writer_killed_at_each_phase_leaves_no_partial_entry(tmp_path: Path, kind: str) -> None:
    """A writer SIGKILLed at each pause point of publishing leaves old, new or no entry."""
    root = tmp_path / "cache"
    log = tmp_path / "runs.log"
    _tail_digest()  # made once, before forking: the children share it
    first = _start(root, kind, str(log), ARG, 0, None)
    first.join(JOIN)
    assert first.exitcode == 0
    current = 0
    for number, phase in enumerate(PHASES[kind], start=1):
        writer = _start(root, kind, str(log), ARG, number, phase)
        _wait_paused(root, writer, phase)
        assert _kill(writer), f"the writer paused at {phase!r} was not killed"
        _kills[phase.partition("#")[0]] += 1
        temps = os.listdir(root / ".tmp")
        assert bool(temps) == (phase in LEAVES_TEMP[kind]), (phase, temps)

        found, damaged = _on_disk(root)
        done = phase == DONE[kind]
        if (kind, phase) in REJECTED:
            assert list(found.values()) == [None], found
            assert len(damaged) == 1, damaged
        elif (kind, phase) in GONE:
            assert damaged == [], damaged
            assert found == {}, (phase, found)
        else:
            assert damaged == [], damaged
            expected = number if done else current
            assert found == {ARG: expected}, (phase, found)

        runs = _runs(log)
        later, computed = _next_run(root, kind, log, ARG, 100 + number)
        assert computed == ((kind, phase) in REJECTED | GONE), (phase, computed)
        if computed:
            assert later == 100 + number
        else:
            assert later == (number if done else current)
        current = later
        assert _runs(log) == runs + computed


def test_writer_killed_at_random_moments_leaves_no_partial_entry(tmp_path: Path) -> None:
    """Writers SIGKILLed after random delays leave a right entry or none, never a partial one."""
    rng = random.Random(20240902)
    kinds = list(PHASES)
    roots = {kind: tmp_path / kind for kind in kinds}
    log = tmp_path / "runs.log"
    longest = {}
    _tail_digest()
    for kind in kinds:
        started = time.monotonic()
        first = _start(roots[kind], kind, str(log), ARG, 0, None)
        first.join(JOIN)
        assert first.exitcode == 0
        longest[kind] = time.monotonic() - started
    current = dict.fromkeys(kinds, 0)
    killed = 0
    count = scale(10, 60)
    for number in range(1, count + 1):
        kind = kinds[number % len(kinds)]
        root = roots[kind]
        # Half the writers store a new key (a miss), half replace ARG's entry.
        arg = ARG if (number // len(kinds)) % 2 == 0 else 1000 + number
        writer = _start(root, kind, str(log), arg, number, None)
        delay = rng.uniform(0.0, longest[kind])
        time.sleep(delay)
        if not _kill(writer):
            longest[kind] = delay  # it finished sooner: aim the next kills earlier
        else:
            killed += 1

        found, damaged = _on_disk(root)
        assert damaged == [] or kind == "cacheable", damaged
        for which, value in found.items():
            allowed = {current[kind], number} if which == ARG else {number}
            assert value is None or value in allowed, (which, value, allowed)
        later, computed = _next_run(root, kind, log, arg, 10_000 + number)
        if computed:
            assert later == 10_000 + number
        else:
            assert later == found.get(arg)
        if arg == ARG:
            current[kind] = later
        else:  # keep the disk use of the test bounded
            assert _func(kind, root).invalidate(str(log), arg, 0)
    _kills["random"] += killed
    _finished["random"] += count - killed
    assert killed >= count // 3, f"only {killed} of {count} writers were killed before finishing"


def report_figures() -> None:
    """How many writers were SIGKILLed, per phase and at random (reported at the end)."""
    phases = sorted({phase.partition("#")[0] for names in PHASES.values() for phase in names})
    for phase in phases:
        figure(f"writers SIGKILLed at phase {phase}", _kills[phase])
    figure("writers SIGKILLed at random moments", _kills["random"])
    figure("random-delay writers that finished before their kill", _finished["random"])
    figure("writers SIGKILLed in total", sum(_kills.values()))
