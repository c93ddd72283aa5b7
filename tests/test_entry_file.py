"""One entry file's I/O on real files: large entries written piecewise and read back checked
(and hashed while read), heads longer than a page, sparse files, and the writers' phases."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import xxhash

from memo._storage import _files
from memo._storage._entry_file import (
    checked_header,
    entry_age,
    read_entry,
    read_rest,
    write_entry,
    write_hooked,
    write_large,
)
from memo._storage._format import (
    DamagedEntryError,
    metadata_line,
    pack,
    payload_offset,
    seal,
    unpack,
)

KEY = bytes(range(16))
HEX = KEY.hex()


def _reads(fd: int) -> Callable[[int, int], bytes]:
    """Range reads of an open file, as checked_header takes them."""
    return lambda start, end: os.pread(fd, end - start, start)


@pytest.fixture
def entry_path(tmp_path: Path) -> Path:
    """Where a test writes its entry file."""
    return tmp_path / "f-entry.memo"


def _descriptor(path: Path, flags: int) -> Iterator[int]:
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [(1 << 20) + 3, _files.PARALLEL + 5], ids=["1 MiB", "32 MiB"])
def test_a_large_entry_written_piecewise_reads_back_checked(entry_path: Path, size: int) -> None:
    """write_large writes the payload, then its head and trailer; read_entry gives it back
    whole, with the payload's digest (hashed by a second thread from 32 MiB on)."""
    payload = [os.urandom(1000), memoryview(bytes(range(256)) * (size // 256 + 1))[: size - 1000]]
    line = metadata_line('"k":1', "pickle", size)
    for fd in _descriptor(entry_path, os.O_WRONLY):
        written, fingerprint = write_large(fd, (line, KEY, "pickle", payload))
    assert written == entry_path.stat().st_size
    for fd in _descriptor(entry_path, os.O_RDONLY):
        data, digest = read_entry(fd, os.fstat(fd), HEX)
    expected = xxhash.xxh3_128_digest(b"".join(bytes(chunk) for chunk in payload))
    assert fingerprint == expected
    assert digest == (expected if size >= _files.PARALLEL else None)
    header, body = unpack(data, KEY, (), digest)
    assert header.fingerprint == expected
    assert body.nbytes == size


def test_a_sparse_large_file_is_refused_before_its_payload_is_read(entry_path: Path) -> None:
    """A large entry whose head and trailer check out but whose payload was never written (a
    hole) is damaged: refused after reading its head, never its payload."""
    length = 64 << 20
    line = metadata_line('"k":1', "pickle", length)
    head, trailer = seal(line, KEY, "pickle", length, bytes(16))
    offset = payload_offset(line, "pickle")
    for fd in _descriptor(entry_path, os.O_WRONLY):
        os.pwrite(fd, head, 0)
        os.pwrite(fd, trailer, offset + length)
    for fd in _descriptor(entry_path, os.O_RDONLY):
        st = os.fstat(fd)
        assert checked_header(_reads(fd), st.st_size, HEX).length == length
        with pytest.raises(DamagedEntryError, match="sparse"):
            read_entry(fd, st, HEX)


def test_a_head_longer_than_a_page_is_read_again_whole(entry_path: Path) -> None:
    """checked_header reads one page first; a longer metadata line is read again, checked."""
    line = metadata_line('"user":"' + "x" * 10_000 + '"', "pickle", 5)
    chunks, fingerprint = pack(line, KEY, "pickle", [b"value"])
    entry_path.write_bytes(b"".join(bytes(chunk) for chunk in chunks))
    for fd in _descriptor(entry_path, os.O_RDONLY):
        header = checked_header(_reads(fd), os.fstat(fd).st_size, HEX)
        first = os.pread(fd, 100, 0)
        data, digest = read_rest(fd, first, HEX)
    assert header.fingerprint == fingerprint
    assert header.offset > 10_000
    assert (unpack(data, KEY, (), digest)[0].length, digest) == (5, None)
    assert 0 <= entry_age(header) < 60
    entry_path.write_bytes(entry_path.read_bytes().replace(b"xxxx", b"xxxy", 1))
    for fd in _descriptor(entry_path, os.O_RDONLY):
        with pytest.raises(DamagedEntryError, match="digest"):
            checked_header(_reads(fd), os.fstat(fd).st_size, HEX)


def test_a_writer_reaches_its_phases_in_order(
    entry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_hooked reaches "opened" before the writer and "written" after it; the entry's
    writer reaches "payload" once it is in the file."""
    reached: list[tuple[str, int]] = []
    chunks, fingerprint = pack(metadata_line('"k":1', "pickle", 5), KEY, "pickle", [b"value"])
    entry = bytes(chunks[0])
    for fd in _descriptor(entry_path, os.O_WRONLY):

        def hook(phase: str, fd: int = fd) -> None:
            reached.append((phase, os.fstat(fd).st_size))

        monkeypatch.setattr(_files, "phase_hook", hook)
        assert write_hooked(fd, write_entry, (entry, fingerprint)) == (len(entry), fingerprint)
    assert reached == [("opened", 0), ("payload", len(entry)), ("written", len(entry))]
    assert entry_path.read_bytes() == entry
