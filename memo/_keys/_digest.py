"""Hashing canonical encodings: a call's arguments into its key's digest, streaming large
buffers into the hasher, and one value's digest (recorded per argument in the metadata)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import xxhash

from ._bytes import NAN, Context, UnencodableError, pack_d, pack_i, pack_q, tag_d, tag_i, tag_q
from ._canonical import handler_for, resolved

__all__ = ["large_digest", "stream_digest", "value_digest"]

_LARGE = 1 << 20  # buffers from this size on are hashed by digest, not encoded
_LARGE_KEPT = 256
# id -> (weak reference, digest) of large values fingerprinted (a digest is trusted only while
# its object lives: an id can be reused once it is gone).
_large_digests: dict[int, tuple[Any, bytes]] = {}


def stream_digest(prefix: bytes, labels: Sequence[bytes], values: Sequence[Any]) -> str:
    """xxh3_128 hex digest of ``prefix`` then, for each label, the label and its encoded value.

    Large buffers are streamed into the hasher rather than copied; labels are already-encoded
    bytes. Raises ``UnencodableError`` with the failing value's position in ``index``.
    """
    out = bytearray(prefix)
    ctx: Context | None = None  # made by the first value that needs more than an atom
    index = 0
    try:
        for label in labels:
            out += label
            value = values[index]
            # The hit path: the common atoms inline, everything else through the table.
            tp = type(value)
            if tp is str:
                data = value.encode("utf-8", "surrogatepass")
                out += tag_q(b"s", len(data))
                out += data
            elif tp is int and -(1 << 63) <= value < (1 << 63):
                out += tag_i(b"i", value)
            elif tp is float:
                out += NAN if value != value else tag_d(b"f", value)
            else:
                handler = resolved.get(tp)
                if handler is None:
                    handler = handler_for(tp)
                if ctx is None:
                    ctx = Context(stream=True)
                handler(value, out, ctx)
            index += 1
    except UnencodableError as exc:
        exc.index = index
        raise
    if ctx is None or ctx.hasher is None:
        return xxhash.xxh3_128_hexdigest(out)
    ctx.hasher.update(out)
    return str(ctx.hasher.hexdigest())


def value_digest(value: Any) -> str:
    """xxh3_128 hex digest of one value's encoding: ``stream_digest(b"", (b"",), (value,))``.

    The atoms are encoded inline, as in ``stream_digest``: every stored entry records one
    digest per argument, so this is on the path of every miss.
    """
    tp = type(value)
    if tp is str:
        data = value.encode("utf-8", "surrogatepass")
        return xxhash.xxh3_128_hexdigest(b"s" + pack_q(len(data)) + data)
    if tp is int and -(1 << 63) <= value < (1 << 63):
        return xxhash.xxh3_128_hexdigest(b"i" + pack_i(value))
    if tp is float:
        return xxhash.xxh3_128_hexdigest(NAN if value != value else b"f" + pack_d(value))
    return stream_digest(b"", (b"",), (value,))


def _large_size(value: Any) -> int:
    """The bytes a value's buffers hold, if it is of a kind kept in large buffers (numpy
    arrays, pandas objects, pyarrow arrays and tables, bytes); else 0."""
    if type(value) in (bytes, bytearray):
        return len(value)
    module = getattr(type(value), "__module__", "") or ""
    if module.startswith(("numpy", "pyarrow")):
        size = getattr(value, "nbytes", 0)
        return size if isinstance(size, int) else 0
    if module.startswith("pandas") and hasattr(value, "memory_usage"):
        try:
            usage = value.memory_usage(index=True, deep=False)
            return int(usage.sum() if hasattr(usage, "sum") else usage)
        except Exception:
            return 0
    return 0


def large_digest(value: Any) -> bytes | None:
    """The digest of a large buffer's canonical encoding, hashed as arguments are (streamed,
    no copy), once per value per process: a function reading a 400 MB global pays one pass
    over it at its first call, not a copy into an encoding and a second pass for its
    metadata. None for values that are not large buffers (they are encoded as they are)."""
    if _large_size(value) < _LARGE:
        return None
    ident = id(value)
    known = _large_digests.get(ident)
    if known is not None and known[0]() is value:
        return known[1]
    digest = bytes.fromhex(value_digest(value))
    try:
        reference = weakref.ref(value)
    except TypeError:  # bytes: no weak references, and hashing them again is as cheap
        return digest
    if len(_large_digests) >= _LARGE_KEPT:
        _large_digests.clear()
    _large_digests[ident] = (reference, digest)
    return digest
