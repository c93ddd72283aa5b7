"""memo.Store: listing, lookup, verification and pruning of real cache directories."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import memo
from tests.stores import entry_store

DAY = 86400.0


class Blob:
    """A Cacheable result that keeps its text in a file of its entry's directory."""

    def __init__(self, text: str) -> None:
        self.text = text

    def to_cache(self, directory: Path) -> None:
        """Write the text."""
        (directory / "data.txt").write_text(self.text)

    @classmethod
    def from_cache(cls, directory: Path) -> Blob:
        """Read the text back."""
        return cls((directory / "data.txt").read_text())


def _fill(cache_dir: Path, count: int = 5) -> tuple[Any, Any]:
    """Store ``count`` entries of ``simulate`` and two of ``load``."""

    @memo.cache(cache_path=cache_dir)
    def simulate(n: int, scale: float = 1.0) -> list[float]:
        return [n * scale] * 100

    @memo.cache(cache_path=cache_dir)
    def load(name: str) -> str:
        return name * 10

    for n in range(count):
        simulate(n)
    load("a")
    load("b")
    return simulate, load


def _set_last_use(path: Path, when: float) -> None:
    os.utime(path, (when, path.stat().st_mtime))


def test_functions_have_totals(cache_dir: Path) -> None:
    """functions() lists each function name with its entry count, bytes and times."""
    _fill(cache_dir)
    infos = {info.name: info for info in memo.Store(cache_dir).functions()}
    assert set(infos) == {"simulate", "load"}
    assert infos["simulate"].entries == 5
    assert infos["load"].entries == 2
    files = sorted(cache_dir.glob("simulate-*.memo"))
    assert infos["simulate"].bytes == sum(path.stat().st_size for path in files)
    assert infos["simulate"].oldest <= infos["simulate"].newest <= time.time()


def test_entries_and_lazy_metadata(cache_dir: Path) -> None:
    """entries() gives one record per entry, newest first; metadata() reads the JSON line."""
    simulate, _ = _fill(cache_dir)
    store = memo.Store(cache_dir)
    entries = store.entries("simulate")
    assert len(entries) == 5
    assert len(store.entries()) == 7
    assert [entry.created for entry in entries] == sorted(
        (entry.created for entry in entries), reverse=True
    )
    by_key = {entry.key: entry for entry in entries}
    metadata = by_key[simulate.key(3)].metadata()
    assert metadata is not None
    assert metadata["arguments"]["n"] == "3"
    assert metadata["function"].endswith("simulate")
    assert store.entries("nothing") == []


def test_find_by_key_prefix_and_file_name(cache_dir: Path) -> None:
    """find() accepts a full key, a unique prefix, name-prefix and the entry's file name."""
    simulate, _ = _fill(cache_dir)
    store = memo.Store(cache_dir)
    key = simulate.key(2)
    assert store.find(key).key == key
    assert store.find(key[:10].upper()).key == key
    assert store.find(f"simulate-{key[:8]}").key == key
    assert store.find(str(cache_dir / f"simulate-{key}.memo")).key == key


def test_ambiguous_and_unknown_keys(cache_dir: Path) -> None:
    """A prefix shared by several entries, or matching none, raises EntryNotFoundError."""
    _fill(cache_dir, count=17)  # 19 keys: some first hex digit is shared
    store = memo.Store(cache_dir)
    firsts = [entry.key[0] for entry in store.entries()]
    shared = next(digit for digit in firsts if firsts.count(digit) > 1)
    with pytest.raises(memo.EntryNotFoundError, match="matches") as caught:
        store.find(shared)
    assert len(caught.value.candidates) == firsts.count(shared)
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, memo.MemoError)
    with pytest.raises(KeyError, match="no entry"):
        store.find("f" * 32)
    with pytest.raises(memo.EntryNotFoundError, match="not a key"):
        store.find("xyz")


def test_delete_and_clear(cache_dir: Path) -> None:
    """delete() removes one entry by prefix; clear() one function's entries, then all."""
    simulate, load = _fill(cache_dir)
    store = memo.Store(cache_dir)
    assert store.delete(simulate.key(1)[:12])
    assert not simulate.is_cached(1)
    assert simulate.is_cached(2)
    with pytest.raises(memo.EntryNotFoundError):
        store.delete(simulate.key(1))
    removed = store.clear("load")
    assert sorted(entry.key for entry in removed) == sorted([load.key("a"), load.key("b")])
    assert len(store.entries()) == 4
    assert len(store.clear()) == 4
    assert store.functions() == []


def test_verify_finds_damage_and_orphans_and_fix_removes_them(cache_dir: Path) -> None:
    """Truncated and bit-flipped entries, an old orphan directory and a dead writer's temp
    file are reported, and removed with fix=True; good entries stay."""
    simulate, load = _fill(cache_dir)
    store = memo.Store(cache_dir)
    truncated = Path(entry_store(simulate).path("simulate", simulate.key(0)))
    truncated.write_bytes(truncated.read_bytes()[:-10])
    flipped = Path(entry_store(simulate).path("simulate", simulate.key(1)))
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    orphan = cache_dir / f"simulate-{'a' * 32}.d"
    orphan.mkdir()
    (orphan / "x").write_text("x")
    young = cache_dir / f"simulate-{'b' * 32}.d"  # possibly being written: not reported
    young.mkdir()
    old = time.time() - 2 * DAY
    os.utime(orphan, (old, old))
    temp = cache_dir / ".tmp" / f"load-{'c' * 32}.{os.getpid()}.0123abcd.tmp"
    temp.write_bytes(b"partial")
    os.utime(temp, (old, old))

    problems = store.verify()
    found = {(problem.kind, problem.path) for problem in problems}
    assert found == {
        ("damaged", truncated),
        ("damaged", flipped),
        ("orphan-directory", orphan),
        ("temp-file", temp),
    }
    assert not any(problem.fixed for problem in problems)
    assert truncated.exists()

    fixed = store.verify(fix=True)
    assert all(problem.fixed for problem in fixed)
    assert len(fixed) == 4
    assert not truncated.exists()
    assert not flipped.exists()
    assert not orphan.exists()
    assert not temp.exists()
    assert young.exists()
    assert store.verify() == []
    assert simulate.is_cached(2)
    assert load.is_cached("a")


def test_verify_checks_cacheable_directories(cache_dir: Path) -> None:
    """A changed file in a Cacheable entry's directory makes the entry damaged."""

    @memo.cache(cache_path=cache_dir)
    def make(text: str) -> Blob:
        return Blob(text)

    make("hello")
    store = memo.Store(cache_dir)
    (entry,) = store.entries()
    assert entry.directory is not None
    assert entry.bytes == entry.path.stat().st_size + len("hello")
    assert store.verify() == []
    (entry.directory / "data.txt").write_text("HELLO")
    (problem,) = store.verify(fix=True)
    assert problem.kind == "damaged"
    assert "differ" in problem.detail
    assert problem.fixed
    assert not entry.directory.exists()


def test_reading_leaves_last_use_alone(cache_dir: Path) -> None:
    """verify() and metadata() read entries without moving their access time (last use)."""
    _fill(cache_dir)
    store = memo.Store(cache_dir)
    long_ago = time.time() - 10 * DAY
    for entry in store.entries():
        _set_last_use(entry.path, long_ago)
    assert store.verify() == []
    for entry in store.entries():
        assert entry.metadata() is not None
    assert all(abs(entry.last_used - long_ago) < 1 for entry in store.entries())


def test_prune_by_size_least_recently_used_first(cache_dir: Path) -> None:
    """prune(max_size=...) removes the least recently used entries until the rest fit."""
    simulate, _ = _fill(cache_dir)
    store = memo.Store(cache_dir)
    now = time.time()
    order = [3, 0, 4, 1, 2]  # least recently used first
    for rank, n in enumerate(order):
        _set_last_use(
            Path(entry_store(simulate).path("simulate", simulate.key(n))), now - 100 + rank
        )
    entries = store.entries("simulate")
    size = entries[0].bytes  # all simulate entries have the same size
    total = sum(entry.bytes for entry in store.entries())
    removed = store.prune(max_size=total - 2 * size + 1)
    assert [entry.key for entry in removed] == [simulate.key(n) for n in order[:2]]
    assert sum(entry.bytes for entry in store.entries()) <= total - 2 * size + 1
    assert simulate.is_cached(4)
    assert not simulate.is_cached(0)


def test_prune_by_age_function_and_dry_run(cache_dir: Path) -> None:
    """older_than goes by last use; function limits the candidates; dry_run removes none."""
    simulate, load = _fill(cache_dir)
    store = memo.Store(cache_dir)
    old = time.time() - 40 * DAY
    for n in (0, 1):
        _set_last_use(Path(entry_store(simulate).path("simulate", simulate.key(n))), old)
    _set_last_use(Path(entry_store(load).path("load", load.key("a"))), old)

    preview = store.prune(older_than="30d", function="simulate", dry_run=True)
    assert sorted(entry.key for entry in preview) == sorted([simulate.key(0), simulate.key(1)])
    assert len(store.entries()) == 7
    assert store.prune(older_than="30d", function="simulate") == preview
    assert len(store.entries()) == 5
    assert [entry.key for entry in store.prune(older_than=30 * DAY)] == [load.key("a")]
    assert store.prune(max_size="1GB") == []


def test_prune_needs_a_limit(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prune() without a size or age uses MEMO_MAX_SIZE, and refuses without it."""
    _fill(cache_dir)
    store = memo.Store(cache_dir)
    with pytest.raises(memo.ConfigError, match="max_size"):
        store.prune()
    with pytest.raises(memo.ConfigError, match="not a size"):
        store.prune(max_size="10XB")
    monkeypatch.setenv("MEMO_MAX_SIZE", "0")
    assert len(store.prune(dry_run=True)) == 7


def test_stats(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """stats() has totals, functions largest first and the MEMO_MAX_SIZE budget."""
    _fill(cache_dir)
    store = memo.Store(cache_dir)
    stats = store.stats()
    assert stats.entries == 7
    assert stats.max_size is None
    assert stats.bytes == sum(path.stat().st_size for path in cache_dir.glob("*.memo"))
    assert [info.name for info in stats.functions] == ["simulate", "load"]
    monkeypatch.setenv("MEMO_MAX_SIZE", "10MB")
    assert store.stats().max_size == 10_000_000


def test_diff_names_what_changed(cache_dir: Path) -> None:
    """diff() names the argument, or the version, that sets two entries apart."""
    simulate, _ = _fill(cache_dir)
    simulate(1, scale=2.0)
    store = memo.Store(cache_dir)
    assert store.diff(simulate.key(1), simulate.key(2)) == [("argument n", "1", "2")]
    assert store.diff(simulate.key(1), simulate.key(1, scale=2.0)) == [
        ("argument scale", "1.0", "2.0")
    ]
    assert store.diff(simulate.key(1), simulate.key(1)) == []
    first, second = _versioned(cache_dir, 1), _versioned(cache_dir, 2)
    first(1)
    second(1)
    ((component, old, new),) = store.diff(first.key(1), second.key(1))
    assert component == "version"
    assert old != new


def _versioned(cache_dir: Path, version: int) -> Any:
    @memo.cache(cache_path=cache_dir, version=version)
    def versioned(n: int) -> int:
        return n

    return versioned


def test_opening_stores(cache_dir: Path, tmp_path: Path) -> None:
    """Store() takes paths and file:// URLs of existing directories; unknown schemes are refused."""
    _fill(cache_dir)
    assert memo.Store(f"file://{cache_dir}").root == cache_dir
    (tmp_path / "default-cache").mkdir()  # MEMO_CACHE_DIR, set by conftest
    assert memo.Store.default().root == tmp_path / "default-cache"
    with pytest.raises(FileNotFoundError, match="no cache directory"):
        memo.Store(tmp_path / "missing")
    with pytest.raises(memo.ConfigError, match="nosuchscheme://"):
        memo.Store("nosuchscheme://bucket/cache")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        memo.Store(tmp_path / "file")


def test_one_letter_function_names(cache_dir: Path) -> None:
    """Entries of a function named with a single letter are listed like any other."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        return x

    f(1)
    (info,) = memo.Store(cache_dir).functions()
    assert (info.name, info.entries) == ("f", 1)
    assert memo.Store(cache_dir).find(f.key(1)[:6]).name == "f"


def test_a_functions_store_is_the_public_store(tmp_path: Path) -> None:
    """``f.store`` is a ``memo.Store`` over the function's own store: its root, its entries,
    its budget (the function's ``max_size``), verify and delete, before and after writes."""

    @memo.cache(cache_path=tmp_path / "not-yet", max_size=10_000)
    def double(x: int) -> int:
        return 2 * x

    store = double.store
    assert isinstance(store, memo.Store)
    assert store.root == tmp_path / "not-yet"
    assert store.entries() == []  # no directory yet: nothing stored, not an error
    assert double(4) == 8
    (entry,) = double.store.entries()
    assert (entry.name, entry.key) == ("double", double.key(4))
    assert double.store.find(double.key(4)[:8]) == entry
    assert double.store.stats().max_size == 10_000
    assert double.store.verify() == []
    assert double.store.delete(entry)
    assert not double.is_cached(4)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root``, with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def test_a_read_only_store_is_read_and_never_written(tmp_path: Path) -> None:
    """A function given ``memo.Store(path, read_only=True)`` hits what is stored there and
    computes a miss without storing it: the directory is left exactly as it was (no entry,
    lock file or temporary file); explain says so."""
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    writer = memo.decorate(square, cache_path=tmp_path)
    assert writer(2) == 4
    before = _tree(tmp_path)
    reader = memo.decorate(square, cache_path=memo.Store(tmp_path, read_only=True))
    assert reader(2) == 4  # a hit: stored by the writer
    assert reader(3) == 9
    assert reader(3) == 9  # computed again: nothing was stored
    assert calls == [2, 3, 3]
    assert reader.cache_info() == (1, 2, 0, 0)
    assert not reader.is_cached(3)
    assert _tree(tmp_path) == before
    assert "read-only" in reader.explain(3)
    assert reader.store.read_only
    assert writer(3) == 9  # the writable function on the same directory still stores
    assert reader(3) == 9
    assert calls == [2, 3, 3, 3]


def test_a_read_only_store_refuses_every_write(tmp_path: Path) -> None:
    """Deleting, clearing, pruning and fixing through a read-only store, and ``invalidate``,
    ``clear``, ``refresh`` and ``put`` of a function on one, raise ``ReadOnlyError`` (a
    ``PermissionError``) and remove nothing; listing and checking work."""
    simulate, _ = _fill(tmp_path, count=3)
    store = memo.Store(tmp_path, read_only=True)
    entry = store.entries()[0]
    for write in (
        lambda: store.delete(entry),
        lambda: store.clear(),
        lambda: store.prune(older_than=0),
        lambda: store.verify(fix=True),
    ):
        with pytest.raises(memo.ReadOnlyError, match="read-only"):
            write()
    assert store.verify() == []
    assert store.prune(older_than=0, dry_run=True) != []
    assert store.stats().read_only
    reader = memo.decorate(simulate.__wrapped__, cache_path=store)
    for write in (
        lambda: reader.invalidate(0),
        lambda: reader.clear(),
        lambda: reader.refresh(0),
        lambda: reader.put(0, value=[]),
    ):
        with pytest.raises(PermissionError):
            write()
    assert len(memo.Store(tmp_path).entries()) == 5  # (3 of simulate, 2 of load)
    with pytest.raises(memo.ConfigError, match="read-only store is never written"):
        memo.decorate(simulate.__wrapped__, cache_path=store, max_size="1GB")
    with pytest.raises(memo.ConfigError, match="read_only must be True or False"):
        memo.Store(tmp_path, read_only="yes")  # type: ignore[arg-type]
