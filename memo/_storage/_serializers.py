"""Serializers: how a result becomes the payload of an entry and back, and what each one is.

Each turns a value into a list of buffers written one after another (so large arrays go to
disk without an extra copy) and back from one contiguous view. What else a serializer is
(a payload kept as its own file, loaded by memory-mapping it, or a directory it writes) it
declares itself; ``traits`` reads that once, and ``Serializers``, resolved once from a
function's options, answers the store: which serializer stores a result, which loads an
entry. Nothing outside this module compares a serializer's name.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ._backend import is_part
from ._cacheable import is_cacheable

__all__ = [
    "DEFAULT",
    "DIRECTORY",
    "PICKLE",
    "JsonSerializer",
    "NpySerializer",
    "ParquetSerializer",
    "PickleSerializer",
    "Serializer",
    "Serializers",
    "Traits",
    "UnfaithfulError",
    "builtin",
    "traits",
    "writes_directory",
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
    checked for integrity. Names are ASCII letters, digits and ``_.+-``; the built-in names
    are pickle, json, npy, parquet.

    Optional attributes say what else the serializer is (memo reads them once, at decoration):

    - ``suffix`` (a str such as ``".arrow"``): the payload is kept beside the entry's record
      as a plain file of that suffix, which the format's own tools open as it is; memo checks
      its size and digest before ``loads`` sees it. Without one the payload stays inside the
      entry file.
    - ``maps`` (True) with ``load_file(path, offset, length)``: a hit on a local unsigned
      store memory-maps the payload instead of reading it (``NpySerializer(mmap_mode="r")``).
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
    suffix = ".json"

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
    suffix = ".npy"

    def __init__(self, mmap_mode: str | None = None) -> None:
        if mmap_mode not in (None, "r", "c"):
            # "r+" would write into the entry itself, behind its digests' back.
            raise ValueError(
                f"mmap_mode must be None, 'r' or 'c' (copy-on-write), not {mmap_mode!r}"
            )
        self.mmap_mode = mmap_mode
        self.maps = mmap_mode is not None

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
    suffix = ".parquet"

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


class _DirectoryMarker:
    """Stands for ``Cacheable`` results, whose value lives in their entry's own directory:
    the store writes and reads it (``_cacheable``), never these methods."""

    name = "cacheable"
    directory = True

    def dumps(self, value: Any) -> list[Any]:
        raise TypeError("Cacheable results are written by the store into a directory")

    def loads(self, data: memoryview) -> Any:
        raise TypeError("Cacheable results are read by the store from a directory")


class Traits(NamedTuple):
    """A serializer and what it declares, read once (``traits``)."""

    serializer: Serializer
    name: str
    suffix: str | None  # its payload file's suffix, or None: the payload is inside the entry
    # Memory-maps a local payload, ``load_file(path, offset, length)``, if it says it ``maps``.
    load_file: Callable[[str, int, int], Any] | None
    directory: bool  # the value is a directory the store writes (``Cacheable``)
    field: str  # what an entry's header records: the name, then the suffix unless "." + name

    @property
    def maps(self) -> bool:
        """Whether a hit memory-maps the payload (with ``load_file``)."""
        return self.load_file is not None


_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


def traits(serializer: Serializer) -> Traits:
    """What ``serializer`` declares; ``ValueError`` (saying what to change) for a name or
    suffix an entry could not record."""
    name = serializer.name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"a serializer's name must be 1-64 ASCII letters, digits or _.+-, not {name!r}"
        )
    suffix = getattr(serializer, "suffix", None)
    if suffix is not None and (not isinstance(suffix, str) or not is_part(suffix)):
        raise ValueError(
            f"the serializer {name!r} declares suffix={suffix!r}: a payload file's suffix is a "
            "dot and 1-16 letters, digits or _ (not .memo or .d), or None"
        )
    maps = bool(getattr(serializer, "maps", False))
    load_file = getattr(serializer, "load_file", None) if maps else None
    if maps and not callable(load_file):
        raise ValueError(f"the serializer {name!r} declares maps=True but has no load_file")
    directory = bool(getattr(serializer, "directory", False))
    field = name if suffix is None or suffix == "." + name else f"{name} {suffix}"
    return Traits(serializer, name, suffix, load_file, directory, field)


_BUILTIN: dict[str, Traits] = {
    each.name: traits(each)
    for each in (
        PickleSerializer(),
        JsonSerializer(),
        NpySerializer(),
        ParquetSerializer(),
        _DirectoryMarker(),
    )
}
PICKLE = _BUILTIN["pickle"]
DIRECTORY = _BUILTIN["cacheable"]


def builtin(name: str) -> Traits | None:
    """The built-in serializer called ``name`` (pickle, json, npy, parquet), if there is one."""
    found = _BUILTIN.get(name)
    return None if found is DIRECTORY else found


def writes_directory(name: str) -> bool:
    """Whether entries recorded with the serializer ``name`` keep their value in a directory."""
    return name == DIRECTORY.name


class Serializers:
    """One function's serializers, resolved once from its options: which one stores a result
    (the one given for its type or nearest base, else ``Cacheable``'s or pickle) and which one
    loads an entry (by the name its header records: the function's own, else a built-in)."""

    def __init__(self, given: Mapping[type, Serializer] | None = None) -> None:
        self._given = {tp: traits(each) for tp, each in (given or {}).items()}
        self._named = dict(_BUILTIN)
        for each in self._given.values():
            known = self._named.get(each.name)
            if known is not None and type(known.serializer) is not type(each.serializer):
                raise ValueError(
                    f"the serializer name {each.name!r} is already taken by {known.serializer!r}"
                )
            self._named[each.name] = each
        self._by_type: dict[type, Traits] = {}
        # Whether a hit may memory-map (only with a serializer that says so).
        self.maps = any(each.maps for each in self._given.values())

    def __reduce__(self) -> tuple[Any, ...]:
        # Without the types seen so far: a local class among them could not be pickled.
        return Serializers, ({tp: each.serializer for tp, each in self._given.items()},)

    def __repr__(self) -> str:
        given = {tp.__qualname__: each.serializer for tp, each in self._given.items()}
        return f"Serializers({given})"

    def for_value(self, value: Any) -> Traits:
        """The serializer that stores ``value``, decided once per type."""
        tp = type(value)
        chosen = self._by_type.get(tp)
        if chosen is not None:
            return chosen
        chosen = PICKLE
        for base in tp.__mro__:
            given = self._given.get(base)
            if given is not None:
                chosen = given
                break
        else:
            if is_cacheable(value):
                chosen = DIRECTORY
        self._by_type[tp] = chosen
        return chosen

    def named(self, name: str) -> Traits:
        """The serializer an entry's header names; ``KeyError`` if this function has none of
        that name (an entry written by another program's serializer)."""
        return self._named[name]

    def loads(self, name: str, payload: memoryview) -> Any:
        """The value of a checked payload written by the serializer ``name``."""
        if name == "pickle" and payload[0] == 0x80:
            return pickle.loads(payload)  # a plain pickle, the common case: no lookups
        return self._named[name].serializer.loads(payload)


DEFAULT = Serializers()
"""The serializers of a function given none: pickle, and the built-ins for reading."""
