"""Fail the N-th filesystem operation of a call, for every N, as SQLite's I/O-error tests do.

Every ``os`` function memo's store uses is wrapped (see ``_support.FaultyOS``); the N-th call
raises ``OSError`` with a chosen errno, once (transient) or from then on (persistent). N goes
1, 2, ... until a call finishes without reaching the fault. Each time the call must return the
right value (a warning is allowed, an exception from memo or a wrong value never), and then,
with the fault gone, every entry on disk must load right or be rejected, and a fresh process
must compute, store and hit normally.
"""

from __future__ import annotations

import errno
import hashlib
import warnings
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._exceptions import reset_warnings
from memo._storage import _local
from memo._storage._local import MISS, LocalStore

from ._support import SOAK, FaultyOS, faulty_os, figure

ERRORS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC, "EACCES": errno.EACCES}
if SOAK:  # more kinds of failure: read-only filesystem, quota, file too large, no descriptors
    ERRORS.update(EROFS=errno.EROFS, EDQUOT=errno.EDQUOT, EFBIG=errno.EFBIG, EMFILE=errno.EMFILE)
SCENARIOS = ("miss", "hit", "refresh", "evict")
MAX_N = 400  # far more operations than one call makes; reaching it means the loop is broken
_totals: dict[str, int] = {"faults": 0, "iterations": 0}


def _payload(x: int, size: int) -> bytes:
    seed = hashlib.sha256(str(x).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def small_value(x: int) -> tuple[int, bytes]:
    """A 4 KiB result: one write, one read."""
    return x, _payload(x, 4096)


def large_value(x: int) -> tuple[int, bytes]:
    """A 2 MiB result: several chunks written, read through the large-entry path."""
    return x, _payload(x, 2 * 2**20)


PRODUCERS = {"small": small_value, "large": large_value}


def _make(root: Path, size: str, scenario: str) -> memo.Memoized[[int], tuple[int, bytes]]:
    _local._shared.clear()
    limit = {"small": 20_000, "large": 7 * 2**20}[size] if scenario == "evict" else None
    return memo.decorate(PRODUCERS[size], cache_path=root, max_size=limit)


def _check_disk(root: Path, size: str) -> None:
    """Every entry file loads as the right value for its argument, or is rejected."""
    store = LocalStore(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memo.MemoWarning)
        for name, key, _ in store.iter_entries():
            value: Any = store.load(name, key)
            if value is not MISS:
                assert value == PRODUCERS[size](value[0]), f"wrong value in {name}-{key}"


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
        if scenario != "miss":
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


def test_zz_fault_figures() -> None:
    """Report how many faults the loop injected (run after the loop, by name order)."""
    figure("injected I/O faults", _totals["faults"])
    figure("fault-loop iterations", _totals["iterations"])
