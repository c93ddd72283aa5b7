"""npy, parquet and json entries keep their value as the plain file of the format: other tools
open it as it is, and memo checks it against its record before every load."""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import memo
from memo._exceptions import reset_warnings
from memo._storage._backend import sanitize
from memo._storage._entry_file import outgoing
from memo._storage._serializers import NpySerializer
from memo.cli import main
from tests.stores import entry_store

# Files a store directory holds beside its entries.
_STORE_FILES = (".gitignore", ".lock")

TABLE = pd.DataFrame({"city": ["Bern", "Zürich", "Genf"], "rain": [1.5, -2.0, 3.25]})
ARRAY = np.arange(12, dtype=np.float32).reshape(3, 4)
REPORT = {"runs": 3, "mean": 0.5, "name": "Zürich", "ok": True, "none": None}


@pytest.fixture
def record() -> Iterator[list[warnings.WarningMessage]]:
    """The warnings raised in the test."""
    reset_warnings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _counting(cache_path: Any, value: Any, serializer: Any) -> tuple[Any, list[int]]:
    calls: list[int] = []

    @memo.cache(cache_path=cache_path, serializer=serializer)
    def produce(x: int) -> Any:
        calls.append(x)
        return value

    return produce, calls


def _memo_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, memo.MemoWarning)]


def test_npy_entries_open_with_np_load(cache_dir: Path) -> None:
    """An npy entry's value file is a .npy that np.load reads, mapped or not."""
    func, _ = _counting(cache_dir, ARRAY, "npy")
    func(1)
    path = func.path(1)
    assert path is not None
    assert path.endswith(".npy")
    assert Path(path).name == f"produce-{func.key(1)}.npy"
    assert np.array_equal(np.load(path), ARRAY)
    assert np.array_equal(np.load(path, mmap_mode="r"), ARRAY)


def test_parquet_entries_open_with_pandas_and_pyarrow(cache_dir: Path) -> None:
    """A parquet entry's value file is a .parquet that pandas and pyarrow read as it is."""
    func, _ = _counting(cache_dir, TABLE, "parquet")
    func(1)
    path = func.path(1)
    assert path is not None
    assert path.endswith(".parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), TABLE)
    pd.testing.assert_frame_equal(pq.read_table(path).to_pandas(), TABLE)


def test_json_entries_open_with_json_load(cache_dir: Path) -> None:
    """A json entry's value file is a .json that json.load (or an editor, or jq) reads."""
    func, _ = _counting(cache_dir, REPORT, "json")
    func(1)
    path = func.path(1)
    assert path is not None
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle) == REPORT
    assert '"name": "Zürich"' in Path(path).read_text(encoding="utf-8")


def test_pickles_stay_one_file_and_missing_calls_have_no_path(cache_dir: Path) -> None:
    """A pickled value is in its entry file (its path is that file); an uncached call has no
    path."""
    func, _ = _counting(cache_dir, {"a": 1}, None)
    assert func.path(1) is None
    func(1)
    path = func.path(1)
    assert path is not None
    assert path.endswith(".memo")
    files = [p.name for p in cache_dir.iterdir() if p.is_file() and p.name not in _STORE_FILES]
    assert files == [Path(path).name]


@pytest.mark.parametrize(
    ("serializer", "value", "suffix"),
    [("npy", ARRAY, ".npy"), ("parquet", TABLE, ".parquet"), ("json", REPORT, ".json")],
)
def test_a_flipped_byte_in_the_value_file_is_a_miss(
    cache_dir: Path,
    serializer: str,
    value: Any,
    suffix: str,
    record: list[warnings.WarningMessage],
) -> None:
    """A value file changed behind memo's back is detected on the next hit: one warning, the
    value recomputed and stored again, then a hit."""
    func, calls = _counting(cache_dir, value, serializer)
    func(1)
    path = Path(str(func.path(1)))
    assert path.suffix == suffix
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    assert not func.is_cached(1)
    func(1)
    assert calls == [1, 1]
    messages = _memo_warnings(record)
    assert len(messages) == 1
    assert "damaged" in messages[0]
    assert "payload file" in messages[0]
    func(1)
    assert calls == [1, 1]
    assert len(_memo_warnings(record)) == 1


@pytest.mark.parametrize("removed", [".memo", ".npy"])
def test_a_record_or_value_file_alone_is_a_clean_miss(
    cache_dir: Path, removed: str, record: list[warnings.WarningMessage]
) -> None:
    """Deleting either file of an entry makes it a miss without a warning; the next call
    stores both again, and memo verify then finds nothing."""
    func, calls = _counting(cache_dir, ARRAY, "npy")
    func(1)
    stem = cache_dir / f"produce-{func.key(1)}"
    stem.with_suffix(removed).unlink()
    assert not func.is_cached(1)
    assert np.array_equal(func(1), ARRAY)
    assert calls == [1, 1]
    assert _memo_warnings(record) == []
    assert stem.with_suffix(".memo").exists()
    assert stem.with_suffix(".npy").exists()
    assert memo.Store(cache_dir).verify() == []


def test_verify_reports_a_missing_value_file_and_an_orphan(cache_dir: Path) -> None:
    """memo verify says which entry lost its value file and which value file lost its entry
    (once it is an hour old); with fix both go."""
    func, _ = _counting(cache_dir, ARRAY, "npy")
    func(1)
    func(2)
    first = cache_dir / f"produce-{func.key(1)}"
    second = cache_dir / f"produce-{func.key(2)}"
    first.with_suffix(".npy").unlink()
    second.with_suffix(".memo").unlink()
    hour_ago = time.time() - 7200
    os.utime(second.with_suffix(".npy"), (hour_ago, hour_ago))
    problems = {(p.kind, p.path.name): p.detail for p in memo.Store(cache_dir).verify()}
    assert problems.keys() == {
        ("damaged", first.name + ".memo"),
        ("orphan-payload", second.name + ".npy"),
    }
    assert "is missing" in problems[("damaged", first.name + ".memo")]
    assert all(p.fixed for p in memo.Store(cache_dir).verify(fix=True))
    assert sorted(p.name for p in cache_dir.iterdir() if p.is_file()) == sorted(_STORE_FILES)


def test_the_value_file_counts_in_listings_and_goes_with_its_entry(cache_dir: Path) -> None:
    """memo ls counts both files; clear, invalidate and prune remove both."""
    func, _ = _counting(cache_dir, np.zeros(50_000), "npy")
    func(1)
    func(2)
    (entry, _) = [e for e in memo.Store(cache_dir).entries() if e.key == func.key(1)] + [None]
    assert entry is not None
    assert entry.payload is not None
    assert entry.bytes > 400_000
    assert entry.bytes == entry.path.stat().st_size + entry.payload.stat().st_size
    assert func.invalidate(1)
    assert not entry.payload.exists()
    assert memo.Store(cache_dir).clear()
    assert sorted(p.name for p in cache_dir.iterdir() if p.is_file()) == sorted(_STORE_FILES)


def test_signed_entries_check_their_value_file(cache_dir: Path) -> None:
    """With a secret key, a value file swapped for another valid file of the format (and its
    digest) is still refused: the signature covers the value file."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir, serializer="npy", secret_key=b"k" * 32)
    def signed(x: int) -> Any:
        calls.append(x)
        return np.full(10, x)

    signed(1)
    signed(2)
    assert signed(1)[0] == 1
    assert calls == [1, 2]
    one, two = Path(str(signed.path(1))), Path(str(signed.path(2)))
    one.write_bytes(two.read_bytes())
    with pytest.warns(memo.MemoWarning, match="damaged"):
        assert signed(1)[0] == 1
    assert calls == [1, 2, 1]


def test_mapped_hits_map_the_value_file(cache_dir: Path) -> None:
    """A memory-mapped hit maps the .npy itself, which np.load could map too."""
    func, calls = _counting(cache_dir, ARRAY, NpySerializer(mmap_mode="r"))
    func(1)
    hit = func(1)
    assert isinstance(hit, np.memmap)
    assert str(hit.filename) == func.path(1)
    assert calls == [1]


def test_entries_of_the_earlier_layout_still_load(cache_dir: Path) -> None:
    """An npy entry written before value files (its payload inside the entry file) loads."""
    func, calls = _counting(cache_dir, ARRAY, "npy")
    name, key = sanitize(func.__qualname__), func.key(1)
    store = entry_store(func)
    payload = NpySerializer().dumps(ARRAY)
    size = sum(memoryview(chunk).nbytes for chunk in payload)
    entry = outgoing(
        True, f'"key":"{key}"', '"function":"f"', "npy", key, payload, None, size, None
    )
    store.backend.publish(name, key, entry, False)
    assert np.array_equal(func(1), ARRAY)
    assert calls == []
    assert func.path(1) == str(cache_dir / f"{name}-{key}.memo")


def test_lazy_handles_and_memo_show_give_the_value_file(
    cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Lazy handle's path and `memo show` name the value file."""
    func, _ = _counting(cache_dir, TABLE, "parquet")
    handle = func.lazy(1)
    assert handle.path == func.path(1)
    assert main(["--cache-path", str(cache_dir), "show", func.key(1)[:10]]) == 0
    shown = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["value", "file", func.path(1)] in shown


def test_value_files_on_a_remote_store_are_urls_pandas_reads(url: str) -> None:
    """On S3 the path is the object's URL, and pandas reads the table from it as it is."""
    func, calls = _counting(url, TABLE, "parquet")
    func(1)
    path = func.path(1)
    assert path is not None
    assert path.startswith("s3://")
    assert path.endswith(".parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), TABLE)
    assert func(1).equals(TABLE)
    assert calls == [1]


def test_value_files_on_memory_urls(record: list[warnings.WarningMessage]) -> None:
    """fsspec's memory:// holds the record and the value file; a changed value file is caught."""
    import fsspec

    where = f"memory://memo-{uuid.uuid4().hex[:8]}"
    func, calls = _counting(where, REPORT, "json")
    func(1)
    path = str(func.path(1))
    with fsspec.open(path, "rb") as handle:
        assert json.loads(handle.read()) == REPORT
    with fsspec.open(path, "wb") as handle:
        handle.write(json.dumps({**REPORT, "runs": 4}).encode())
    assert func(1) == REPORT
    assert calls == [1, 1]
    assert len(_memo_warnings(record)) == 1


def test_duckdb_queries_a_cached_table_in_place(cache_dir: Path) -> None:
    """DuckDB reads a cached parquet table straight from its path."""
    import duckdb

    func, _ = _counting(cache_dir, TABLE, "parquet")
    func(1)
    query = duckdb.sql(f"select city from '{func.path(1)}' where rain > 0 order by city")
    assert query is not None
    assert query.fetchall() == [("Bern",), ("Genf",)]


def test_max_age_and_the_size_budget_treat_value_files_as_entries(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """max_age and max_size see an npy entry (record and value file) as they see a pickle:
    the budget counts both files and evicts both, an expired entry is computed again."""
    calls: list[int] = []

    @memo.cache(
        cache_path=cache_dir,
        serializer="npy",
        max_age=3600,
        max_size=2_500_000,
    )
    def block(x: int) -> Any:
        calls.append(x)
        return np.full(100_000, x, dtype=np.float64)  # 800 kB each

    for x in range(4):
        block(x)
    files = sorted(
        p.name for p in cache_dir.iterdir() if p.is_file() and p.name not in _STORE_FILES
    )
    stems = {name.rpartition(".")[0] for name in files}
    assert len(stems) < 4, "the budget evicted the least recently used entries"
    assert all({f"{stem}.memo", f"{stem}.npy"} <= set(files) for stem in stems)
    assert block(3)[0] == 3.0
    assert calls == [0, 1, 2, 3]
    # An entry's age is its record's creation time, in its header: store one two hours old.
    import types

    from memo._storage import _format

    two_hours_ago = time.time_ns() - 7200 * 10**9
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_format, "time", types.SimpleNamespace(time_ns=lambda: two_hours_ago))
        block(9)
    assert Path(str(block.path(9))).suffix == ".npy"
    block(9)
    assert calls == [0, 1, 2, 3, 9, 9], "the expired entry is computed again"
    block(9)
    assert calls == [0, 1, 2, 3, 9, 9]


class Arrow:
    """pyarrow Tables as Arrow IPC files: a user's serializer with a payload file."""

    name = "arrow"
    suffix = ".arrow"

    def dumps(self, table: Any) -> list[Any]:
        """The table as one Arrow IPC file."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return [sink.getvalue()]

    def loads(self, data: memoryview) -> Any:
        """The table back from the file's bytes."""
        import pyarrow as pa

        return pa.ipc.open_file(pa.py_buffer(data)).read_all()


class Feather(Arrow):
    """The same format under another name, so its record names the suffix itself."""

    name = "feather-v2"


def _arrow_table() -> Any:
    import pyarrow as pa

    return pa.table({"x": [1, 2, 3], "city": ["Bern", "Zürich", "Genf"]})


@pytest.mark.parametrize("serializer", [Arrow(), Feather()], ids=["arrow", "other-name"])
def test_user_serializer_with_a_suffix_keeps_its_payload_file(
    cache_dir: Path, serializer: Any, record: list[warnings.WarningMessage]
) -> None:
    """A user's serializer declaring suffix='.arrow' gets a .arrow value file that pyarrow opens,
    read back through its loads; listing, invalidate and verify know the file, and a changed
    file is a miss, recomputed and replaced (no memo/ change needed)."""
    import pyarrow as pa

    table = _arrow_table()
    func, calls = _counting(cache_dir, table, serializer)
    assert func(1).equals(table)
    assert func(1).equals(table)
    assert calls == [1]
    entry = func.entries()[0]
    value_file = Path(entry["value_file"])
    assert value_file.suffix == ".arrow"
    assert value_file.parent == cache_dir
    assert entry["serializer"] == serializer.name
    assert pa.ipc.open_file(str(value_file)).read_all().equals(table)
    [info] = memo.Store(cache_dir).entries()
    assert info.payload == value_file
    assert memo.Store(cache_dir).verify() == []

    data = bytearray(value_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    value_file.write_bytes(bytes(data))
    assert [p.kind for p in memo.Store(cache_dir).verify()] == ["damaged"]
    assert func(1).equals(table)
    assert calls == [1, 1]
    assert any("damaged" in message for message in _memo_warnings(record))
    assert func(1).equals(table)
    assert calls == [1, 1]

    assert func.invalidate(1)
    assert not value_file.exists()
    assert sorted(cache_dir.glob("produce-*")) == []


@pytest.mark.parametrize("suffix", [".memo", ".d", "arrow", ".a/b", ".", 3], ids=str)
def test_a_suffix_an_entry_cannot_record_is_refused_at_decoration(suffix: Any) -> None:
    """A serializer's suffix must be a dot and a few letters (not the record's own or a
    directory's): anything else is a ConfigError when decorating."""
    bad = type("Bad", (Arrow,), {"suffix": suffix})()
    with pytest.raises(memo.ConfigError, match="suffix"):
        memo.cache(serializer=bad)(lambda: None)
