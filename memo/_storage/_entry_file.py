"""One entry's I/O: the bytes or writer a new one is published with, reading a local one
whole and checked (a large one piecewise, hashed as it is read), its checked header, and the
warnings for entries that fail.

Nothing here names or places entries: backends open, publish and remove them; these
functions are given their descriptors or range reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._exceptions import warn_once
from . import _files
from ._backend import Outgoing
from ._chunks import Chunks
from ._format import (
    DamagedEntryError,
    Header,
    check_trailer,
    metadata_line,
    pack,
    parse_header,
    payload_offset,
    record,
    seal,
    small_entry,
)

__all__ = [
    "checked_header",
    "detached",
    "entry_age",
    "fromhex",
    "outgoing",
    "read_entry",
    "read_rest",
    "warn_damaged",
    "warn_unloadable",
    "write_chunks",
    "write_entry",
    "write_hooked",
    "write_large",
    "write_payload",
]

_HEAD_READ = (1 << 16) + 4096  # reaches the payload of any entry: the longest head
_PAGE_READ = 4096
_D = TypeVar("_D")  # what a writer of entry files is given
# Looked up once: Python looks a class method up on ``bytes`` anew at every call (every hit).
fromhex = bytes.fromhex


def checked_header(read_at: Callable[[int, int], bytes], size: int, key: str) -> Header:
    """An entry's header, checked against its trailer, without reading its payload:
    ``read_at(start, end)`` reads bytes of the entry, whose size is ``size``."""
    # A page holds the usual head (metadata line, header); a longer one is read again whole.
    head = read_at(0, _PAGE_READ)
    try:
        header = parse_header(head, size, fromhex(key))
    except DamagedEntryError:
        if len(head) < _PAGE_READ:
            raise  # that was the whole entry
        head = read_at(0, _HEAD_READ)
        header = parse_header(head, size, fromhex(key))
    end = header.offset + (0 if header.detached else header.length)
    check_trailer(memoryview(head)[: header.offset], read_at(end, size))
    return header


def write_hooked(
    fd: int, write: Callable[[int, _D], tuple[int, bytes]], data: _D
) -> tuple[int, bytes]:
    """Write a new entry's file with ``write(fd, data)``, reaching the test hooks' phases
    ``opened`` (created, empty) and ``written`` (all of it) around it."""
    if _files.phase_hook is None:
        return write(fd, data)
    _files.phase_hook("opened")
    written = write(fd, data)
    _files.phase_hook("written")
    return written


def write_chunks(fd: int, packed: tuple[list[Any], bytes]) -> tuple[int, bytes]:
    """Write what ``pack`` gave in several chunks; returns the byte count and the payload's
    fingerprint, passed on."""
    chunks, fingerprint = packed
    total = 0
    for chunk in chunks:
        total = _files.pwrite_all(fd, chunk, total)
        _files.reached("payload")
    return total, fingerprint


def write_entry(fd: int, entry: tuple[bytes, bytes]) -> tuple[int, bytes]:
    """Write a small entry's bytes (``_publish`` does so itself unless a test hook is set)."""
    return write_chunks(fd, ([entry[0]], entry[1]))


def write_large(fd: int, entry: tuple[bytes, bytes, str, Sequence[Any]]) -> tuple[int, bytes]:
    """Write a large unsigned entry of ``(metadata line, key, serializer, payload)``, hashing
    the payload as it goes, then its head and trailer."""
    line, key, serializer, payload = entry
    offset = payload_offset(line, serializer)
    length, fingerprint = _files.write_hashed(fd, payload, offset)
    head, trailer = seal(line, key, serializer, length, fingerprint)
    _files.pwrite_all(fd, head, 0)
    return _files.pwrite_all(fd, trailer, offset + length), fingerprint


def outgoing(
    files: bool,
    metadata: str,
    fixed: str,
    kind: str,
    key: str,
    payload: Sequence[Any],
    first: Any,
    size: int,
    secret: bytes | None,
) -> Outgoing:
    """A new entry as ``Backend.publish`` is given it. ``files``: the backend writes files
    in place (else it is given whole bytes); ``first``: the payload's only chunk, if it has
    one. Raises ``ValueError`` if the metadata cannot be written."""
    keyed = fromhex(key)
    if not files:
        line = metadata_line(metadata, kind, size, fixed)
        chunks, fingerprint = pack(line, keyed, kind, payload, secret)
        return Outgoing(None, (_body(chunks, size), fingerprint))
    if type(first) is bytes and size < _files.SMALL and secret is None and fixed and metadata:
        # The usual entry (every miss of a function with a small result), made in one step
        # (memo's calls give both kinds of metadata).
        return Outgoing(None, small_entry(metadata, fixed, kind, keyed, first))
    line = metadata_line(metadata, kind, size, fixed)
    if secret is None and size >= _files.SMALL:
        # A large payload is written first, each piece hashed as it is written, and the head
        # (which holds the payload's digest) last: one pass over the data instead of two. The
        # file has no name, or a temporary one, until complete.
        return Outgoing(write_large, (line, keyed, kind, payload))
    chunks, fingerprint = pack(line, keyed, kind, payload, secret)
    if len(chunks) == 1:
        return Outgoing(None, (chunks[0], fingerprint))
    return Outgoing(write_chunks, (chunks, fingerprint))


def detached(
    files: bool,
    metadata: str,
    fixed: str,
    kind: tuple[str, str],
    key: str,
    payload: Sequence[Any],
    size: int,
    secret: bytes | None,
) -> tuple[Callable[[bytes], bytes], Outgoing]:
    """A new entry whose payload is kept as its payload file: a function giving the record's
    bytes for the payload's fingerprint, and the payload file as ``Backend.publish`` is given
    it. ``kind`` is the serializer's name and the field its record names it
    by (with the payload file's suffix). A local unsigned payload is hashed as it is written
    (one pass); otherwise the record is made first. Raises ``ValueError`` if the metadata
    cannot be written."""
    name, field = kind
    line = metadata_line(metadata, name, size, fixed)
    keyed = fromhex(key)
    if files and secret is None:

        def unsigned(fingerprint: bytes) -> bytes:
            head, check = seal(line, keyed, field, size, fingerprint, False, True)
            return head + check

        return unsigned, Outgoing(write_payload, payload)
    made, fingerprint = record(line, keyed, field, payload, secret)
    if not files:
        return (lambda _: made), Outgoing(None, (_body(payload, size), fingerprint))
    return (lambda _: made), Outgoing(write_chunks, (list(payload), fingerprint))


def _body(chunks: Sequence[Any], size: int) -> bytes | Chunks:
    """The bytes of a new object for a backend without in-place files: a large payload as
    ``Chunks`` over its own buffers (joining them would copy the whole result)."""
    if len(chunks) == 1 and type(chunks[0]) is bytes:
        return chunks[0]
    return b"".join(chunks) if size < _files.SMALL else Chunks(chunks)


def write_payload(fd: int, payload: Sequence[Any]) -> tuple[int, bytes]:
    """Write a payload file's chunks, hashing them as they go (its blocks reserved first)."""
    return _files.write_hashed(fd, payload, 0)


def read_rest(
    fd: int, first: bytes, key: str
) -> tuple[bytes | bytearray | memoryview, bytes | None]:
    """The whole entry, when a first read of ``len(first)`` bytes from its start came back full
    (and, as ``read_entry`` gives it, its payload's digest)."""
    st = os.fstat(fd)
    if st.st_size >= _files.SMALL:
        return read_entry(fd, st, key)
    # One byte more than expected, so a file that grew meanwhile fails the size check.
    return first + os.pread(fd, st.st_size - len(first) + 1, len(first)), None


def read_entry(
    fd: int, st: os.stat_result, key: str
) -> tuple[bytes | bytearray | memoryview, bytes | None]:
    """The whole entry, and for a large payload its xxh3_128 digest (hashed while it was read;
    else None); a large entry's header, size and trailer are checked before reading it.

    A small entry (under 1 MiB) is one read. A larger one is refused before its payload is
    read if its header or trailer do not match its size, or if it is sparse (far fewer blocks
    allocated than its size: a planted or damaged file), so a hostile 10 GB hole costs a few
    small reads, not 10 GB of memory.
    """
    size = st.st_size
    if size < _files.SMALL:
        return _files.read_all(fd, size), None
    header = checked_header(lambda start, end: os.pread(fd, end - start, start), size, key)
    if _files.is_sparse(st):
        raise DamagedEntryError(
            f"it is sparse ({st.st_blocks * 512} bytes allocated for {size}): not a written entry"
        )
    if header.length < _files.PARALLEL:
        return _files.read_all(fd, size), None
    return _files.read_hashing(fd, size, header.offset, header.offset + header.length)


def warn_damaged(where: str, exc: Exception, stacklevel: int = 2) -> None:
    """One warning per damaged entry: it is ignored, recomputed and replaced."""
    warn_once(
        ("damaged", where),
        f"memo: the cache entry {where} is damaged ({exc}); it is ignored, recomputed and replaced",
        stacklevel=stacklevel + 1,
    )


def warn_unloadable(where: str, exc: Exception, stacklevel: int = 2) -> None:
    """One warning per entry whose checked payload its serializer could not load."""
    warn_once(
        ("unloadable", where),
        f"memo: the cache entry {where} passed its integrity check but could not be loaded "
        f"({type(exc).__name__}: {exc}); it is recomputed and replaced",
        stacklevel=stacklevel + 1,
    )


def entry_age(header: Header) -> float:
    """Seconds since the entry was written (by its header's clock)."""
    return (time.time_ns() - header.created_ns) / 1e9
