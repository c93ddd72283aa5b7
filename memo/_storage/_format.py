"""The bytes of one stored entry, and how they are checked before anything is deserialized.

An entry file is::

    <metadata JSON, one line>\\n
    b"MEMO" | format (1) | flags (1) | serializer-name length (2) | payload length (8)
           | key (16) | fingerprint (16) | created, ns since the epoch (8)
    <serializer name> <zero padding to a multiple of 64> <payload>
    <check (16)> [<signature (32)>]

``fingerprint`` is xxh3_128 of the payload: it identifies the stored value (two entries holding
the same bytes share it) and checks the payload. ``check`` is xxh3_128 of everything before the
payload, so the metadata, header and fingerprint are covered too; together they catch
truncation, trailing garbage, a bit flip anywhere, or a file copied from another key's entry,
before the payload reaches a deserializer. A memory-mapped load checks everything but the
payload's own digest (reading 400 MB to hash it would defeat the mapping). With signing, the
signature is HMAC-SHA256 over the header, serializer name, padding and payload: everything a load
decides by or deserializes. The metadata line is left out (it only describes the entry, and it
is most of a small entry's bytes: a signed hit would hash it every time); entries signed before
this (no ``SIGNED_BODY`` flag) cover it too and still verify. Padding aligns the payload.

An entry of a serializer with a payload file (npy, parquet, json, or a user's with a
``suffix``) keeps its payload beside it, as the plain file other tools open
(``<name>-<key>.npy``): its entry file, the record, has the ``DETACHED`` flag and no payload,
while ``length`` and ``fingerprint`` describe that file's bytes, which ``check_payload``
checks (with the signature, which then covers the file) before loading. A record's
serializer field is the serializer's name, then a space and the payload file's suffix unless
that is the name's (``npy`` is ``.npy``), so any reader finds the file from the record alone.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as json_string
from typing import Any, NamedTuple

import xxhash

from ._signing import hmac_sha256

__all__ = [
    "HEADER",
    "MAX_METADATA",
    "DamagedEntryError",
    "Header",
    "check_payload",
    "check_trailer",
    "metadata_line",
    "pack",
    "parse_header",
    "parse_metadata",
    "read_metadata_line",
    "record",
    "small_entry",
    "unpack",
]

MAGIC = b"MEMO"
FORMAT = 2
SIGNED = 1
SIGNED_BODY = 2  # the signature starts after the metadata line
DETACHED = 4  # the payload is the entry's payload file, not in the entry file
_HEAD = struct.Struct("<4sBBHQ16s16sq")
HEADER = _HEAD.size
CHECK = 16
SIGNATURE = 32
_ALIGN = 64
MAX_METADATA = 1 << 16
_digest = xxhash.xxh3_128_digest
_ZEROS = bytes(_ALIGN)
_EMPTY = memoryview(b"")
_SMALL = 1 << 20  # a payload below this is written in one piece with its head and trailer


class DamagedEntryError(Exception):
    """Internal: an entry's bytes fail a check; the message says which."""


class Header(NamedTuple):
    """What the header of an entry says, once its check has passed."""

    serializer: str
    fingerprint: bytes
    created_ns: int
    offset: int
    length: int
    signed: bool
    detached: bool = False
    part: str = ""  # a record's payload file suffix (``.npy``); "" for a whole entry


def _split(field: str) -> tuple[str, str]:
    """A record's serializer field as (serializer name, payload file suffix)."""
    name, _, suffix = field.partition(" ")
    return name, suffix or "." + name


def pack(
    metadata: bytes,
    key: bytes,
    serializer: str,
    payload: Sequence[Any],
    secret: bytes | None = None,
) -> tuple[list[Any], bytes]:
    """The chunks to write, in order, for an entry holding ``payload`` (a list of buffers),
    and the payload's fingerprint."""
    # (The usual entry, a small unsigned pickle, the local store makes with small_entry.)
    views = [memoryview(chunk).cast("B") for chunk in payload]
    length = sum(view.nbytes for view in views)
    if len(views) == 1:
        fingerprint = _digest(views[0])
    else:
        hasher = xxhash.xxh3_128()
        for view in views:
            hasher.update(view)
        fingerprint = hasher.digest()
    head, trailer = seal(metadata, key, serializer, length, fingerprint, secret is not None)
    if secret is not None:
        trailer += hmac_sha256(secret, memoryview(head)[len(metadata) + 1 :], *views)
    if len(views) == 1 and length < _SMALL:
        return [head + views[0] + trailer], fingerprint
    return [head, *views, trailer], fingerprint


def metadata_line(members: str, serializer: str, size: int, fixed: str = "") -> bytes:
    """An entry's metadata line: one JSON object of ``fixed`` and ``members`` (ASCII JSON
    object members without braces), then the serializer's name and the payload size.

    Built as text: the callers encode their members once, or cheaply, and ``json`` would
    cost more than the rest of a store. Raises ``ValueError`` if the line is too long for the
    entry format or holds a newline (before anything is written).
    """
    tail = f'"serializer":{json_string(serializer)},"payload_bytes":{size}'
    if fixed and members:  # the usual case, without a join
        text = f"{{{fixed},{members},{tail}}}"
    else:
        text = "{" + ",".join(filter(None, (fixed, members, tail))) + "}"
    line = text.encode()
    # JSON escapes newlines: only members not made by json could hold one.
    if len(line) > MAX_METADATA or "\n" in text:
        raise _line_error(line)
    return line


def _line_error(line: bytes) -> ValueError:
    """Why a metadata line cannot be written (it holds a newline, or is too long)."""
    if b"\n" in line:
        return ValueError("an entry's metadata must be one line of JSON, without newlines")
    return ValueError(
        f"the entry's metadata is {len(line)} bytes, over the limit of {MAX_METADATA}: "
        "values given to memo.add_metadata are kept in the first line of every entry; "
        "keep them small"
    )


_names: dict[str, tuple[str, bytes, int]] = {}  # serializer -> its JSON, its bytes, its length


def small_entry(
    members: str, fixed: str, serializer: str, key: bytes, data: bytes
) -> tuple[bytes, bytes]:
    """The bytes of an unsigned entry holding the small payload ``data`` (under 1 MiB), and
    its fingerprint: what ``pack(metadata_line(members, serializer, len(data), fixed), key,
    serializer, [data])`` gives, made in one step (both ``members`` and ``fixed`` given).

    Every miss stores such an entry: the three steps as one are a tenth of a store's cost.
    ``ValueError`` as ``metadata_line`` raises it.
    """
    named = _names.get(serializer)
    if named is None:
        encoded = serializer.encode("ascii")
        named = _names[serializer] = (json_string(serializer), encoded, len(encoded))
    text = f'{{{fixed},{members},"serializer":{named[0]},"payload_bytes":{len(data)}}}'
    line = text.encode()
    if len(line) > MAX_METADATA or "\n" in text:
        raise _line_error(line)
    fingerprint = _digest(data)
    end = len(line) + 1 + HEADER + named[2]
    packed = _HEAD.pack(MAGIC, FORMAT, 0, named[2], len(data), key, fingerprint, time.time_ns())
    head = b"".join((line, b"\n", packed, named[1], _ZEROS[: -end % _ALIGN]))
    return b"".join((head, data, _digest(head))), fingerprint


def payload_offset(metadata: bytes, serializer: str) -> int:
    """Where the payload starts in an entry with this metadata line and serializer name."""
    end = len(metadata) + 1 + HEADER + len(serializer)
    return end + (-end % _ALIGN)


def seal(
    metadata: bytes,
    key: bytes,
    serializer: str,
    length: int,
    fingerprint: bytes,
    signed: bool = False,
    detached: bool = False,
) -> tuple[bytes, bytes]:
    """An entry's head (everything before the payload) and its trailer's check, for a payload
    of ``length`` bytes with ``fingerprint``; a signed entry's signature follows the check.
    ``metadata`` is a line ``metadata_line`` made (so one line, and not too long)."""
    name = serializer.encode("ascii")
    end = len(metadata) + 1 + HEADER + len(name)
    flags = (SIGNED | SIGNED_BODY if signed else 0) | (DETACHED if detached else 0)
    packed = _HEAD.pack(MAGIC, FORMAT, flags, len(name), length, key, fingerprint, time.time_ns())
    head = b"".join((metadata, b"\n", packed, name, _ZEROS[: -end % _ALIGN]))
    return head, _digest(head)


def parse_header(data: bytes | bytearray, size: int, key: bytes) -> Header:
    """Read the header of an entry of ``size`` bytes whose first bytes are ``data``.

    ``data`` must reach the payload's start. The caller checks the header against the trailer
    with ``check_trailer`` before trusting it. Raises DamagedEntryError.
    """
    start = data.find(b"\n", 0, MAX_METADATA + 1) + 1
    if not start:
        raise DamagedEntryError("no metadata line")
    if len(data) < start + HEADER:
        raise DamagedEntryError("shorter than its header")
    magic, fmt, flags, name_len, length, stored_key, fingerprint, created = _HEAD.unpack_from(
        data, start
    )
    if magic != MAGIC or fmt != FORMAT:
        raise DamagedEntryError("not a memo entry of a known format")
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % _ALIGN)
    signed = bool(flags & SIGNED)
    detached = bool(flags & DETACHED)
    expected = offset + (0 if detached else length) + CHECK + (SIGNATURE if signed else 0)
    if expected != size:
        raise DamagedEntryError(f"size is {size} bytes, expected {expected}")
    if stored_key != key:
        raise DamagedEntryError("it belongs to another key")
    if len(data) < offset:
        raise DamagedEntryError("shorter than its header")
    try:
        name = bytes(data[start + HEADER : name_end]).decode("ascii")
    except UnicodeDecodeError:
        raise DamagedEntryError("unreadable serializer name") from None
    if not detached:
        return Header(name, fingerprint, created, offset, length, signed)
    name, part = _split(name)
    return Header(name, fingerprint, created, offset, length, signed, True, part)


def check_trailer(head: Any, trailer: bytes) -> None:
    """Check ``head`` (the bytes before the payload) against the trailer's check digest."""
    if _digest(head) != trailer[:CHECK]:
        raise DamagedEntryError("header digest mismatch")


def unpack(
    data: bytes | bytearray | memoryview,
    key: bytes,
    secrets: Sequence[bytes] = (),
    payload_digest: bytes | None = None,
) -> tuple[Header, memoryview]:
    """Check a whole entry; return its header and payload view, or raise DamagedEntryError.

    ``payload_digest`` is the payload's xxh3_128 digest when the reader hashed it already.
    """
    # The hit path: parse_header's checks, inlined.
    if isinstance(data, memoryview):  # a large entry read into writable memory
        start = bytes(data[: MAX_METADATA + 1]).find(b"\n") + 1
    else:
        start = data.find(b"\n", 0, MAX_METADATA + 1) + 1
    if not start or len(data) < start + HEADER:
        raise DamagedEntryError("no metadata line" if not start else "shorter than its header")
    magic, fmt, flags, name_len, length, stored_key, fingerprint, created = _HEAD.unpack_from(
        data, start
    )
    if magic != MAGIC or fmt != FORMAT:
        raise DamagedEntryError("not a memo entry of a known format")
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % _ALIGN)
    if flags & DETACHED:
        header = _record(data, key, start, flags, name_end, offset, stored_key)
        return header._replace(fingerprint=fingerprint, created_ns=created, length=length), _EMPTY
    end = offset + length
    signed = flags & SIGNED
    expected = end + CHECK + (SIGNATURE if signed else 0)
    if expected != len(data):
        raise DamagedEntryError(f"size is {len(data)} bytes, expected {expected}")
    if stored_key != key:
        raise DamagedEntryError("it belongs to another key")
    # Slicing a small entry's bytes copies under a kilobyte, cheaper than making views.
    if _digest(data[:offset]) != data[end : end + CHECK]:  # (bytes == any buffer, by content)
        raise DamagedEntryError("header digest mismatch")
    payload = memoryview(data)[offset:end]
    if (_digest(payload) if payload_digest is None else payload_digest) != fingerprint:
        raise DamagedEntryError("payload digest mismatch")
    try:
        name = str(data[start + HEADER : name_end], "ascii")
    except UnicodeDecodeError:
        raise DamagedEntryError("unreadable serializer name") from None
    # tuple.__new__ skips the NamedTuple's Python-level constructor: this is the hit path.
    header = tuple.__new__(
        Header, (name, fingerprint, created, offset, length, bool(signed), False, "")
    )
    if secrets:
        if not signed:
            raise DamagedEntryError("it is not signed, and a secret key is set")
        message = memoryview(data)[start if flags & SIGNED_BODY else 0 : end]
        signature = data[end + CHECK :]
        from hmac import compare_digest  # (signed entries only)

        for secret in secrets:
            if compare_digest(hmac_sha256(secret, message), signature):
                break
        else:
            raise DamagedEntryError("its signature does not match any accepted secret key")
    return header, payload


def _record(
    data: Any, key: bytes, start: int, flags: int, name_end: int, offset: int, stored_key: bytes
) -> Header:
    """``unpack``'s checks of a record (an entry whose payload is its payload file): size,
    key, head digest; the caller fills in fingerprint, creation and length."""
    signed = bool(flags & SIGNED)
    expected = offset + CHECK + (SIGNATURE if signed else 0)
    if expected != len(data):
        raise DamagedEntryError(f"size is {len(data)} bytes, expected {expected}")
    if stored_key != key:
        raise DamagedEntryError("it belongs to another key")
    if _digest(data[:offset]) != data[offset : offset + CHECK]:
        raise DamagedEntryError("header digest mismatch")
    try:
        name, part = _split(str(data[start + HEADER : name_end], "ascii"))
    except UnicodeDecodeError:
        raise DamagedEntryError("unreadable serializer name") from None
    return Header(name, b"", 0, offset, 0, signed, True, part)


def record(
    metadata: bytes, key: bytes, serializer: str, payload: Sequence[Any], secret: bytes | None
) -> tuple[bytes, bytes]:
    """The record of an entry whose payload (a list of buffers) is kept as its payload file,
    and the payload's fingerprint; signed with ``secret`` (over the record and the payload)."""
    views = [memoryview(chunk).cast("B") for chunk in payload]
    hasher = xxhash.xxh3_128()
    for view in views:
        hasher.update(view)
    fingerprint = hasher.digest()
    length = sum(view.nbytes for view in views)
    head, check = seal(metadata, key, serializer, length, fingerprint, secret is not None, True)
    if secret is None:
        return head + check, fingerprint
    signature = hmac_sha256(secret, memoryview(head)[len(metadata) + 1 :], *views)
    return head + check + signature, fingerprint


def check_payload(
    data: Any,
    header: Header,
    payload: Any,
    secrets: Sequence[bytes] = (),
    payload_digest: bytes | None = None,
) -> None:
    """Check a payload file against its record ``data`` (whose ``header`` ``unpack`` gave):
    size, fingerprint and, with ``secrets``, the signature. Raises DamagedEntryError."""
    view = memoryview(payload).cast("B")
    if view.nbytes != header.length:
        raise DamagedEntryError(
            f"its payload file is {view.nbytes} bytes, expected {header.length}"
        )
    if (_digest(view) if payload_digest is None else payload_digest) != header.fingerprint:
        raise DamagedEntryError("its payload file does not match its digest")
    if secrets:
        if not header.signed:
            raise DamagedEntryError("it is not signed, and a secret key is set")
        start = bytes(data[: MAX_METADATA + 1]).find(b"\n") + 1
        body = memoryview(data)[start : header.offset]
        signature = bytes(data[header.offset + CHECK :])
        from hmac import compare_digest

        for secret in secrets:
            if compare_digest(hmac_sha256(secret, body, view), signature):
                return
        raise DamagedEntryError("its signature does not match any accepted secret key")


def parse_metadata(head: bytes) -> dict[str, Any] | None:
    """The metadata object on an entry's first line (``head``: its first bytes), or None."""
    line = read_metadata_line(head)
    if line is None:
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def read_metadata_line(data: bytes) -> bytes | None:
    """The metadata JSON line at the start of an entry, if it is complete."""
    newline = data.find(b"\n", 0, MAX_METADATA + 1)
    return data[:newline] if newline >= 0 else None
