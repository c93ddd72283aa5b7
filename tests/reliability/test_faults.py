"""Fail the N-th filesystem operation of a call, for every N, as SQLite's I/O-error tests do.

Every ``os`` function memo's store uses is wrapped (see ``_support.FaultyOS``), and so are
``close``, the key locks' ``fcntl.lockf`` and the file operations of ``Cacheable`` directories
(``pathlib``, ``os.walk``, ``open``); the N-th call raises ``OSError`` with a chosen errno,
once (transient) or from then on (persistent). N goes
1, 2, ... until a call finishes without reaching the fault. Each time the call must return the
right value (a warning is allowed, an exception from memo or a wrong value never), and then,
with the fault gone, every entry on disk must load right or be rejected, and a fresh process
must compute, store and hit normally.
"""

from __future__ import annotations

import errno
import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

import memo
from memo._exceptions import reset_warnings
from memo._storage._backend import MISS
from memo._storage._open import forget_stores, open_store
from tests.stores import LocalStore, disk

from ._support import SOAK, FaultyOS, close_lock_files, faulty_os, figure

ERRORS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC, "EACCES": errno.EACCES}
if SOAK:  # more kinds of failure: read-only filesystem, quota, file too large, no descriptors
    ERRORS.update(EROFS=errno.EROFS, EDQUOT=errno.EDQUOT, EFBIG=errno.EFBIG, EMFILE=errno.EMFILE)
# "named": a miss through named temp files, as where O_TMPFILE is missing.
SCENARIOS = ("miss", "hit", "refresh", "evict", "named")
MAX_N = 400  # far more operations than one call makes; reaching it means the loop is broken
# EACCES from lockf is how POSIX says another process holds the lock: failing every lockf
# with it looks like a lock never released, which memo waits out for lock_timeout (short here).
LOCK_TIMEOUT = 0.1
_totals: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _close_lock_files(tmp_path: Path) -> Iterator[None]:
    """Close the lock files of the test's many stores afterwards (else thousands stay open)."""
    yield
    close_lock_files(tmp_path)


def _payload(x: int, size: int) -> bytes:
    seed = hashlib.sha256(str(x).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def small_value(x: int) -> tuple[int, bytes]:
    """A 4 KiB result: one write, one read."""
    return x, _payload(x, 4096)


def large_value(x: int) -> tuple[int, bytes]:
    """A 2 MiB result: several chunks written, read through the large-entry path."""
    return x, _payload(x, 2 * 2**20)


class Frame:
    """A Cacheable result: two files, one in a subdirectory, that ``to_cache`` writes."""

    def __init__(self, x: int, data: bytes) -> None:
        self.x = x
        self.data = data

    def to_cache(self, directory: Path) -> None:
        """Write ``data.bin`` and ``parts/x.txt``."""
        (directory / "data.bin").write_bytes(self.data)
        (directory / "parts").mkdir()
        (directory / "parts" / "x.txt").write_text(str(self.x))

    @classmethod
    def from_cache(cls, directory: Path) -> Self:
        """Read both files back."""
        x = int((directory / "parts" / "x.txt").read_text())
        return cls(x, (directory / "data.bin").read_bytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (other.x, other.data) == (self.x, self.data)

    __hash__ = None  # type: ignore[assignment]


def cacheable_value(x: int) -> Frame:
    """A 4 KiB result stored as a Cacheable entry directory."""
    return Frame(x, _payload(x, 4096))


PRODUCERS: dict[str, Any] = {
    "small": small_value,
    "large": large_value,
    "cacheable": cacheable_value,
}
LIMITS = {"small": 20_000, "large": 7 * 2**20, "cacheable": 24_000}


def _make(root: Path, size: str, scenario: str) -> memo.Memoized[[int], Any]:
    forget_stores()
    limit = LIMITS[size] if scenario == "evict" else None
    func: memo.Memoized[[int], Any] = memo.decorate(
        PRODUCERS[size], cache_path=root, max_size=limit, lock_timeout=LOCK_TIMEOUT
    )
    if scenario == "named":
        disk(open_store(root))._tmpfile = False
    return func


def _check_disk(root: Path, size: str) -> None:
    """Every entry file loads as the right value for its argument, or is rejected."""
    store = LocalStore(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memo.MemoWarning)
        for name, key in [(entry.name, entry.key) for entry in store.listing()]:
            value: Any = store.load(name, key)
            if value is not MISS:
                x = value.x if isinstance(value, Frame) else value[0]
                assert value == PRODUCERS[size](x), f"wrong value in {name}-{key}"


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("size", list(PRODUCERS))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_failing_the_nth_operation_never_fails_the_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scenario: str,
    size: str,
    error: str,
    persistent: bool,
) -> None:
    """For every N, an OSError at memo's N-th file operation still gives the right value."""
    expected = PRODUCERS[size](7)
    injected = 0
    for n in range(1, MAX_N + 1):
        root = tmp_path / f"n{n}"
        reset_warnings()
        func = _make(root, size, scenario)
        if scenario not in ("miss", "named"):
            assert func(7) == expected
        if scenario == "evict":
            for other in range(8):  # the budget holds about three: writing 7 again evicts
                func(100 + other)
            func.invalidate(7)
        fake = FaultyOS(ERRORS[error], n, persistent)
        with warnings.catch_warnings(record=True) as caught, faulty_os(monkeypatch, fake):
            warnings.simplefilter("always")
            result = func.refresh(7) if scenario == "refresh" else func(7)
        assert result == expected, f"wrong value with a fault at operation {n}"
        foreign = [w for w in caught if not issubclass(w.category, memo.MemoWarning)]
        assert foreign == [], [str(w.message) for w in foreign]
        assert len(caught) <= 2, [str(w.message) for w in caught]  # a read and a write, at most
        injected += fake.injected
        _totals["iterations"] += 1
        for name in ("lockf", "close"):
            _totals[f"faults {name}"] += fake.injected_into.get(name, 0)
        if size == "cacheable":
            _totals["faults cacheable"] += fake.injected
        if not persistent:  # with one fault, nothing is left in .tmp (a persistent one may
            # fail the cleanup too; a later process sweeps it)
            temp = root / ".tmp"  # (not made at all if the fault stopped the first write)
            assert not temp.exists() or not os.listdir(temp), f"a fault at {n} left temp files"

        _check_disk(root, size)
        fresh = _make(root, size, scenario)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", memo.MemoWarning)
            assert fresh(7) == expected
        assert fresh.is_cached(7), f"a fault at operation {n} left the store unable to store"
        assert fresh(7) == expected
        if fake.calls < n:  # the call finished before reaching the fault: every N was tried
            break
    else:
        pytest.fail(f"a call made more than {MAX_N} file operations")
    assert injected >= 1
    _totals["faults"] += injected


def report_figures() -> None:
    """How many faults the loop injected (reported at the end of the session)."""
    figure("injected I/O faults", _totals["faults"])
    figure("fault-loop iterations", _totals["iterations"])
    figure("injected I/O faults: into fcntl.lockf", _totals["faults lockf"])
    figure("injected I/O faults: into os.close", _totals["faults close"])
    figure("injected I/O faults: with Cacheable directory results", _totals["faults cacheable"])
