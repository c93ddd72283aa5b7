"""Encoding of pyarrow arrays, chunked arrays, tables and record batches by their logical
values: independent of chunking, offsets and the bytes under null slots, so equal data gives
equal keys, while the type (and a table's schema: names, types, nullability) counts. Used for
pyarrow values themselves (``_pydata``) and for the frames built on Arrow (``_frames``)."""

from __future__ import annotations

import sys
from typing import Any

from ._arrays import raw as _raw
from ._bytes import Context, pack_q, text
from ._canonical import _list

__all__ = ["arrow_array", "arrow_content", "arrow_table"]


def _fixed_width(types: Any, kind: Any) -> bool:
    fixed = (
        types.is_integer(kind)
        or types.is_floating(kind)
        or types.is_temporal(kind)
        or types.is_decimal(kind)
        or types.is_fixed_size_binary(kind)
    )
    return bool(fixed) and kind.bit_width % 8 == 0


def arrow_content(data: Any, out: bytearray, ctx: Context) -> None:
    """The logical values of a pyarrow Array or ChunkedArray, independent of chunking."""
    import numpy as np

    pa = sys.modules["pyarrow"]
    types = pa.types
    array = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
    length = len(array)
    out += text(str(array.type))
    out += pack_q(length)
    nulls = array.null_count
    out += pack_q(nulls)
    valid = None
    if nulls:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        _raw(valid, out, ctx)
    kind = array.type
    if types.is_dictionary(kind):
        out += b"d"
        arrow_content(array.dictionary_decode(), out, ctx)
    elif types.is_boolean(kind):
        out += b"b"
        filled = array.fill_null(False) if nulls else array
        _raw(filled.to_numpy(zero_copy_only=False), out, ctx)
    elif _fixed_width(types, kind):
        out += b"f"
        width = kind.bit_width // 8
        buffer = array.buffers()[1]
        raw = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
        raw = raw[array.offset * width : (array.offset + length) * width]
        if valid is not None:
            raw = raw.reshape(length, width).copy()
            raw[~valid] = 0
        _raw(raw, out, ctx)
    elif (
        types.is_string(kind)
        or types.is_large_string(kind)
        or types.is_binary(kind)
        or (types.is_large_binary(kind))
    ):
        out += b"s"
        filled = array.fill_null(
            b"" if types.is_binary(kind) or types.is_large_binary(kind) else ""
        )
        wide = filled.cast(pa.large_binary())
        offsets = np.frombuffer(wide.buffers()[1], dtype=np.int64)
        offsets = offsets[wide.offset : wide.offset + length + 1]
        _raw(np.diff(offsets), out, ctx)
        body = wide.buffers()[2]
        start, stop = (int(offsets[0]), int(offsets[-1])) if length else (0, 0)
        chunk = memoryview(body)[start:stop] if body is not None else b""
        out += pack_q(stop - start)
        ctx.feed(out, chunk)
    else:
        out += b"l"
        _list(array.to_pylist(), out, ctx)


def arrow_array(obj: Any, out: bytearray, ctx: Context) -> None:
    pa = sys.modules["pyarrow"]
    out += b"aC" if isinstance(obj, pa.ChunkedArray) else b"aA"
    arrow_content(obj, out, ctx)


def arrow_table(obj: Any, out: bytearray, ctx: Context) -> None:
    pa = sys.modules["pyarrow"]
    out += b"aT" if isinstance(obj, pa.Table) else b"aR"
    schema = obj.schema
    out += pack_q(len(schema))
    for field in schema:
        out += text(field.name)
        out += text(str(field.type))
        out += b"T" if field.nullable else b"F"
    out += pack_q(obj.num_rows)
    for column in obj.columns:
        arrow_content(column, out, ctx)
