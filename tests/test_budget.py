"""Size budgets: least-recently-used eviction as entries are written."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pytest

import memo
from memo._storage._budget import Budget
from memo._storage._disk import DiskBackend
from tests.stores import entry_store


def _entry_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.memo"))


def _total(directory: Path) -> int:
    return sum(path.stat().st_size for path in _entry_files(directory))


def test_store_stays_under_budget(cache_dir: Path) -> None:
    """Writing past max_size evicts entries until the store is under it again."""

    @memo.cache(cache_path=cache_dir, max_size="20KB")
    def blob(i: int) -> bytes:
        return bytes([i % 256]) * 2000

    for i in range(40):
        assert blob(i) == bytes([i % 256]) * 2000
        assert _total(cache_dir) <= 20_000
    assert 5 <= len(_entry_files(cache_dir)) < 40
    assert blob.is_cached(39)


def test_least_recently_used_goes_first(cache_dir: Path) -> None:
    """An entry used recently survives eviction; the oldest unused one does not."""

    @memo.cache(cache_path=cache_dir, max_size=12_000)
    def blob(i: int) -> bytes:
        return b"x" * 2000

    for i in range(4):
        blob(i)
    assert len(_entry_files(cache_dir)) == 4
    paths = {i: Path(entry_store(blob).path("blob", blob.key(i))) for i in range(4)}
    now = time.time()
    for age, i in enumerate([1, 2, 3, 0]):
        # Last use is the access time: make 0 the most recent, 1 the least.
        os.utime(paths[i], (now - 1000 + age * 100, paths[i].stat().st_mtime))
    blob(4)
    blob(5)
    assert not blob.is_cached(1)
    assert blob.is_cached(0)


def test_hits_record_last_use(cache_dir: Path) -> None:
    """A hit on an entry not used for a while moves its access time to now."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        return x

    f(1)
    path = Path(f.entries()[0]["path"])
    old = time.time() - 3600
    mtime = path.stat().st_mtime
    os.utime(path, (old, mtime))
    f(1)
    assert path.stat().st_atime > old + 3000
    assert path.stat().st_mtime == mtime  # publish time unchanged


def test_result_larger_than_budget_is_returned_not_stored(cache_dir: Path) -> None:
    """A result bigger than the whole budget is returned with a warning and not stored."""

    @memo.cache(cache_path=cache_dir, max_size="1KB")
    def big(n: int) -> bytes:
        return b"y" * n

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert big(5000) == b"y" * 5000
    assert any("budget" in str(w.message) for w in caught)
    assert not big.is_cached(5000)
    assert big(10) == b"y" * 10
    assert big.is_cached(10)


def test_budget_from_environment(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMO_MAX_SIZE sets the budget of stores whose functions set none."""
    monkeypatch.setenv("MEMO_MAX_SIZE", "8KB")

    @memo.cache(cache_path=cache_dir)
    def blob(i: int) -> bytes:
        return b"z" * 1500

    for i in range(20):
        blob(i)
    assert _total(cache_dir) <= 8000
    assert entry_store(blob).max_size == 8000


def test_eviction_never_breaks_an_open_reader(tmp_path: Path) -> None:
    """A file evicted while a reader has it open is still read whole by that reader."""
    root = tmp_path / "store"
    root.mkdir()
    victim = root / f"a-{'0' * 32}.memo"
    victim.write_bytes(b"v" * 5000)
    with open(victim, "rb") as reader:
        budget = Budget(DiskBackend(root), 1000)
        assert budget.record(5000) == 1
        assert not victim.exists()
        assert reader.read() == b"v" * 5000


def test_cacheable_directories_count_and_go(tmp_path: Path) -> None:
    """An entry's directory counts toward the budget and is removed with its entry."""
    root = tmp_path / "store"
    root.mkdir()
    entry = root / f"m-{'1' * 32}.memo"
    entry.write_bytes(b"e" * 100)
    folder = root / f"m-{'1' * 32}.d"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w" * 4000)
    budget = Budget(DiskBackend(root), 2000)
    assert budget.used() == 4100
    assert budget.record(100) == 1
    assert not folder.exists()
    assert not entry.exists()
