"""Hashing canonical encodings: a call's arguments into its key's digest, streaming large
buffers into the hasher, and one value's digest (recorded per argument in the metadata)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xxhash

from ._bytes import NAN, Context, UnencodableError, pack_d, pack_i, pack_q, tag_d, tag_i, tag_q
from ._canonical import handler_for, resolved

__all__ = ["stream_digest", "value_digest"]


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
