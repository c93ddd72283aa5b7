"""hash_contents and memo.File: keys that follow a file's bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

import memo


def test_digest_matches_xxh3(tmp_path: Path) -> None:
    """The digest is the xxh3_128 of the bytes, whatever the chunk size."""
    data = os.urandom(300_001)
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = xxhash.xxh3_128_hexdigest(data)
    assert memo.hash_contents(path) == expected
    assert memo.hash_contents(str(path), chunk_size=7) == expected


def test_changed_contents_change_the_digest(tmp_path: Path) -> None:
    """Rewriting a file (even to the same size and mtime) gives the new digest."""
    path = tmp_path / "f.txt"
    path.write_text("aaaa")
    first = memo.hash_contents(path)
    stat = path.stat()
    path.write_text("bbbb")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime
    assert memo.hash_contents(path) != first


def test_unchanged_file_is_not_reread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second check of an unchanged file uses the remembered digest."""
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1000)
    first = memo.hash_contents(path)
    hashed: list[int] = []
    real = xxhash.xxh3_128

    def counting() -> object:
        hashed.append(1)
        return real()

    monkeypatch.setattr(xxhash, "xxh3_128", counting)
    assert memo.hash_contents(path) == first
    assert hashed == []


def test_missing_file_and_bad_chunk(tmp_path: Path) -> None:
    """A missing file raises FileNotFoundError; a bad chunk size ValueError."""
    with pytest.raises(FileNotFoundError):
        memo.hash_contents(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="chunk_size"):
        memo.hash_contents(tmp_path / "f", chunk_size=0)


def test_file_argument_keys_by_contents(tmp_path: Path, cache_dir: Path) -> None:
    """memo.File keys on bytes: same bytes under another name hit, new bytes miss."""
    calls: list[str] = []

    @memo.cache(cache_path=cache_dir)
    def size(path: memo.File) -> int:
        calls.append(os.fspath(path))
        return len(Path(path).read_bytes())

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("hello")
    b.write_text("hello")
    assert size(memo.File(a)) == 5
    assert size(memo.File(b)) == 5
    assert len(calls) == 1
    a.write_text("hello world")
    assert size(memo.File(a)) == 11
    assert len(calls) == 2
    assert repr(memo.File(a)).startswith("memo.File(")
    assert memo.File(a) == memo.File(str(a))
