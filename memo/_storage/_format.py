"""The bytes of one stored entry, and how they are checked before anything is deserialized.

An entry file is::

    <metadata JSON, one line>\\n
    b"MEMO" | format (1) | flags (1) | serializer-name length (2) | payload length (8) | key (16)
    <serializer name> <zero padding to a multiple of 64> <payload> <digest (16)>

The digest is xxh3_128 over everything before it, so truncation, trailing garbage, a bit flip
anywhere, or a file copied from another key's entry is caught before the payload reaches a
deserializer. Padding keeps the payload aligned for memory mapping; the digest trails so that
the checked bytes are one contiguous run.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import xxhash

__all__ = [
    "DIGEST",
    "HEADER",
    "MAX_METADATA",
    "DamagedEntryError",
    "pack",
    "read_metadata_line",
    "unpack",
]

MAGIC = b"MEMO"
FORMAT = 1
_HEAD = struct.Struct("<4sBBHQ16s")
HEADER = _HEAD.size
DIGEST = 16
_ALIGN = 64
MAX_METADATA = 1 << 16
_digest = xxhash.xxh3_128_digest


class DamagedEntryError(Exception):
    """Internal: an entry's bytes fail a check; the message says which."""


def pack(metadata: bytes, key: bytes, serializer: str, payload: Sequence[Any]) -> list[Any]:
    """The chunks to write, in order, for an entry holding ``payload`` (a list of buffers)."""
    if b"\n" in metadata or len(metadata) > MAX_METADATA:
        raise ValueError("metadata must be one line of JSON of at most 64 KiB")
    name = serializer.encode("ascii")
    length = sum(memoryview(chunk).nbytes for chunk in payload)
    head = metadata + b"\n" + _HEAD.pack(MAGIC, FORMAT, 0, len(name), length, key) + name
    head += b"\0" * (-len(head) % _ALIGN)
    if len(payload) == 1 and length < (1 << 20):
        body = head + bytes(payload[0])
        return [body + _digest(body)]
    hasher = xxhash.xxh3_128()
    hasher.update(head)
    for chunk in payload:
        hasher.update(chunk)
    return [head, *payload, hasher.digest()]


def unpack(data: bytes | bytearray, key: bytes) -> tuple[str, memoryview]:
    """Check an entry's bytes; return (serializer name, payload view) or raise DamagedEntryError."""
    start = data.find(b"\n", 0, MAX_METADATA + 1) + 1
    if not start:
        raise DamagedEntryError("no metadata line")
    if len(data) < start + HEADER + DIGEST:
        raise DamagedEntryError("shorter than its header")
    magic, fmt, _flags, name_len, length, stored_key = _HEAD.unpack_from(data, start)
    if magic != MAGIC or fmt != FORMAT:
        raise DamagedEntryError("not a memo entry of a known format")
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % _ALIGN)
    end = offset + length
    if end + DIGEST != len(data):
        raise DamagedEntryError(f"size is {len(data)} bytes, expected {end + DIGEST}")
    if stored_key != key:
        raise DamagedEntryError("it belongs to another key")
    view = memoryview(data)
    if _digest(view[:end]) != data[end:]:
        raise DamagedEntryError("digest mismatch")
    try:
        name = data[start + HEADER : name_end].decode("ascii")
    except UnicodeDecodeError:
        raise DamagedEntryError("unreadable serializer name") from None
    return name, view[offset:end]


def read_metadata_line(data: bytes) -> bytes | None:
    """The metadata JSON line at the start of an entry, if it is complete."""
    newline = data.find(b"\n", 0, MAX_METADATA + 1)
    return data[:newline] if newline >= 0 else None
