"""Serializers: how a result becomes the payload of an entry and back.

Each turns a value into a list of buffers written one after another (so large arrays go to
disk without an extra copy) and back from one contiguous view. A serializer that can also
``load_file`` may memory-map its payload instead of reading it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "JsonSerializer",
    "NpySerializer",
    "ParquetSerializer",
    "PickleSerializer",
    "Serializer",
    "UnfaithfulError",
    "get_serializer",
]

_COUNT = struct.Struct("<Q")
_NPY_V1 = struct.Struct("<H")  # the .npy header's length, format 1.0
_NPY_V2 = struct.Struct("<I")  # and formats 2.0 and 3.0
_NPY_HEADERS_KEPT = 256
_npy_headers: dict[bytes, tuple[Any, tuple[int, ...], bool, int]] = {}  # header -> parsed
_ALIGN = 64


@runtime_checkable
class Serializer(Protocol):
    """Turns results into bytes and back; ``name`` is recorded in each entry.

    ``dumps`` returns a list of bytes-like buffers (written in order without being joined);
    ``loads`` gets one read-only or writable ``memoryview`` of their concatenation, already
    checked for integrity. Names are ASCII; built-in names are pickle, json, npy, parquet.
    """

    name: str

    def dumps(self, value: Any) -> Sequence[Any]:
        """The value as buffers."""
        ...

    def loads(self, data: memoryview) -> Any:
        """The value back from the concatenated buffers."""
        ...


class UnfaithfulError(Exception):
    """Raised by a built-in serializer's ``dumps`` for a value it would not give back as it
    is: the entry is written with pickle instead (warned once), never returned changed."""


def _missing(extra: str, package: str) -> ImportError:
    return ImportError(
        f'this serializer needs {package}; install it with: pip install "memo-cache[{extra}]"'
    )


class PickleSerializer:
    """Pickle protocol 5 with out-of-band buffers, so large arrays are neither copied nor
    re-encoded; falls back to cloudpickle for lambdas, closures and local classes."""

    name = "pickle"

    def dumps(self, value: Any) -> list[Any]:
        """A small index, the pickle stream, then each out-of-band buffer, aligned."""
        buffers: list[pickle.PickleBuffer] = []
        try:
            stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        except (pickle.PicklingError, TypeError, AttributeError):
            import cloudpickle

            buffers = []
            stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        if not buffers:
            return [stream]  # a plain pickle: starts with the PROTO opcode, 0x80
        raws = [buffer.raw() for buffer in buffers]
        sizes = [len(stream), *(raw.nbytes for raw in raws)]
        # Out-of-band layout: a zero byte (never the start of a pickle), the count, the sizes.
        index = b"\0" + _COUNT.pack(len(sizes)) + b"".join(_COUNT.pack(size) for size in sizes)
        chunks: list[Any] = [index, stream]
        position = len(index) + len(stream)
        for raw in raws:
            pad = -position % _ALIGN
            if pad:
                chunks.append(b"\0" * pad)
                position += pad
            chunks.append(raw)
            position += raw.nbytes
        return chunks

    def loads(self, data: memoryview) -> Any:
        """Unpickle a checked payload; out-of-band buffers are views into ``data``."""
        if data[0] != 0:
            return pickle.loads(data)
        (count,) = _COUNT.unpack_from(data, 1)
        sizes = [_COUNT.unpack_from(data, 9 + 8 * i)[0] for i in range(count)]
        position = 9 + 8 * count
        stream = data[position : position + sizes[0]]
        position += sizes[0]
        views = []
        for size in sizes[1:]:
            position += -position % _ALIGN
            views.append(data[position : position + size])
            position += size
        if data.readonly:
            # Arrays rebuilt on read-only memory would be read-only; callers expect to write.
            views = [memoryview(bytearray(view)) for view in views]
        return pickle.loads(stream, buffers=views)


class JsonSerializer:
    """JSON text a person can open; refuses values that would not come back equal."""

    name = "json"

    def dumps(self, value: Any) -> list[Any]:
        """UTF-8 JSON; raises ValueError if the value does not round-trip exactly."""
        text = json.dumps(value, ensure_ascii=False, indent=1, allow_nan=True)
        if not _same(json.loads(text), value):
            raise ValueError(
                "the result does not survive JSON unchanged (tuples, non-str keys, sets, ...); "
                "use serializer='pickle' for it"
            )
        return [text.encode()]

    def loads(self, data: memoryview) -> Any:
        """Parse the JSON payload."""
        return json.loads(bytes(data))


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return isinstance(a, float) and isinstance(b, float)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    return bool(a == b)


class NpySerializer:
    """numpy arrays in ``.npy`` format; with ``mmap_mode`` a hit maps the file instead of
    reading it (the payload's digest is then not checked at load: header, size, key are)."""

    name = "npy"

    def __init__(self, mmap_mode: str | None = None) -> None:
        if mmap_mode not in (None, "r", "c"):
            # "r+" would write into the entry itself, behind its digests' back.
            raise ValueError(
                f"mmap_mode must be None, 'r' or 'c' (copy-on-write), not {mmap_mode!r}"
            )
        self.mmap_mode = mmap_mode

    def __repr__(self) -> str:
        return f"NpySerializer(mmap_mode={self.mmap_mode!r})"

    def dumps(self, value: Any) -> list[Any]:
        """The .npy header, then the array's own memory."""
        try:
            import numpy as np
        except ImportError:
            raise _missing("numpy", "numpy") from None
        if not isinstance(value, np.ndarray):
            raise TypeError(f"the npy serializer stores numpy arrays, not {type(value).__name__}")
        if value.dtype.hasobject:
            raise TypeError("the npy serializer cannot store object arrays; use 'pickle'")
        array = value if value.flags.c_contiguous else np.ascontiguousarray(value)
        header = io.BytesIO()
        meta = np.lib.format.header_data_from_array_1_0(array)
        np.lib.format.write_array_header_2_0(header, meta)
        return [header.getvalue(), array.reshape(-1).view(np.uint8).data]

    def _header(self, data: memoryview) -> tuple[Any, tuple[int, ...], bool, int]:
        """dtype, shape, Fortran order and the data's offset, from the .npy header at the
        start of ``data``. numpy parses the header's dict with ``ast.literal_eval``, which
        cost a memory-mapped hit a third of its time: a header seen before is not parsed again.
        """
        import numpy as np

        size = _npy_header_size(data)
        raw = bytes(data[:size])
        known = _npy_headers.get(raw)
        if known is not None:
            return known
        stream = io.BytesIO(raw)
        version = np.lib.format.read_magic(stream)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        # numpy refuses headers over 10,000 bytes unless told (wide structured dtypes); this
        # one was written by memo and its size is bounded by the entry's, already checked.
        shape, fortran, dtype = reader(stream, max_header_size=size)
        if len(_npy_headers) >= _NPY_HEADERS_KEPT:
            _npy_headers.clear()
        known = _npy_headers[raw] = (dtype, shape, fortran, stream.tell())
        return known

    def loads(self, data: memoryview) -> Any:
        """The array, viewing the payload's memory (no copy)."""
        import numpy as np

        dtype, shape, fortran, start = self._header(data)
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(data, dtype=dtype, count=count, offset=start)
        if data.readonly:
            array = array.copy()  # small entries are read as bytes; np.load gives writable
        return array.reshape(shape, order="F" if fortran else "C")

    def load_file(self, path: str, offset: int, length: int) -> Any:
        """Memory-map the payload at ``offset`` of ``path`` (only with ``mmap_mode``)."""
        import numpy as np

        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            # A page holds the usual header; a wide structured dtype's is read whole after.
            head = os.pread(fd, min(length, 4096), offset)
            needed = _npy_header_size(head)
            if len(head) < needed <= length:
                head = os.pread(fd, needed, offset)
        finally:
            os.close(fd)
        dtype, shape, fortran, start = self._header(memoryview(head))
        return np.memmap(  # type: ignore[call-overload]
            path,
            dtype=dtype,
            mode=self.mmap_mode,
            offset=offset + start,
            shape=shape,
            order="F" if fortran else "C",
        )


def _npy_header_size(data: Any) -> int:
    """The length of the .npy header (magic, version, length field, dict) ``data`` starts with."""
    if bytes(data[:6]) != b"\x93NUMPY" or len(data) < 12:
        raise ValueError("not a .npy payload")
    if data[6] == 1:
        return int(_NPY_V1.unpack_from(data, 8)[0]) + 10
    return int(_NPY_V2.unpack_from(data, 8)[0]) + 12


class ParquetSerializer:
    """pandas DataFrames as Parquet (pyarrow): compact, typed, readable by other tools. For a
    frame Parquet would give back changed (see ``_parquet``), ``dumps`` raises
    ``UnfaithfulError``."""

    name = "parquet"

    def dumps(self, value: Any) -> list[Any]:
        """Parquet bytes of a DataFrame (index, dtypes, attrs and the index's freq kept)."""
        try:
            import pandas as pd
            import pyarrow as pa
        except ImportError:
            raise _missing("pandas", "pandas and pyarrow") from None
        if not isinstance(value, pd.DataFrame):
            raise TypeError(f"the parquet serializer stores DataFrames, not {type(value).__name__}")
        from ._parquet import difference, write

        try:
            data = write(value)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            raise UnfaithfulError(
                f"pyarrow cannot convert it ({type(exc).__name__}: {exc})"
            ) from exc
        why = difference(value, data)
        if why is not None:
            raise UnfaithfulError(why)
        return [data]

    def loads(self, data: memoryview) -> Any:
        """Read the DataFrame back, from the payload's memory (no copy: a file object over
        it would be read through Python, on one thread)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ._parquet import restore

        table = pq.read_table(pa.BufferReader(pa.py_buffer(data)))
        return restore(table.to_pandas(), table.schema.metadata)


_BUILTIN: dict[str, Serializer] = {
    "pickle": PickleSerializer(),
    "json": JsonSerializer(),
    "npy": NpySerializer(),
    "parquet": ParquetSerializer(),
}


def get_serializer(name: str) -> Serializer:
    """The serializer registered under ``name``; raises ``KeyError`` for an unknown one."""
    return _BUILTIN[name]


def register_serializer(serializer: Serializer) -> None:
    """Make a serializer known by its name, so entries written with it can be read back."""
    _BUILTIN[serializer.name] = serializer
