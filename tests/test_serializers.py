"""Serializers: built-in ones round-trip what they claim, refuse what they cannot, and every
payload is checked before a deserializer sees it (except a memory-mapped one, documented)."""

from __future__ import annotations

import codecs
import json
import math
import os
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import memo
from memo._storage import _files
from memo._storage._backend import sanitize
from memo._storage._format import CHECK, DETACHED, HEADER
from tests.stores import entry_store


class Rot13Serializer:
    """A user serializer for text: stores it ROT13-encoded (reversible), in two buffers."""

    name = "rot13"
    loads_calls = 0

    def dumps(self, value: Any) -> list[bytes]:
        """A fixed prefix, then the ROT13 text."""
        if not isinstance(value, str):
            raise TypeError(f"rot13 stores str, not {type(value).__name__}")
        return [b"ROT13:", codecs.encode(value, "rot13").encode()]

    def loads(self, data: memoryview) -> Any:
        """Undo ``dumps``."""
        Rot13Serializer.loads_calls += 1
        raw = bytes(data)
        assert raw.startswith(b"ROT13:")
        return codecs.decode(raw[len(b"ROT13:") :].decode(), "rot13")


class OtherRot13:
    """A different class claiming the name ``rot13``: one function given both is refused."""

    name = "rot13"

    def dumps(self, value: Any) -> list[bytes]:
        """Not used."""
        return [str(value).encode()]

    def loads(self, data: memoryview) -> Any:
        """Not used."""
        return bytes(data).decode()


class ClaimsPickle(OtherRot13):
    """A different class claiming the built-in name ``pickle``."""

    name = "pickle"


class NoDumps:
    """Has a name and ``loads`` but no ``dumps``: not a serializer."""

    name = "nodumps"

    def loads(self, data: memoryview) -> Any:
        """Not used."""
        return bytes(data)


class NumberName(OtherRot13):
    """A serializer whose name is not a string."""

    name = 5  # type: ignore[assignment]


class EmptyName(OtherRot13):
    """A serializer with an empty name."""

    name = ""


class NonAsciiName(OtherRot13):
    """A serializer whose name is not ASCII."""

    name = "sérial"


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def record() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised in the test, none filtered out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _memo_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, memo.MemoWarning)]


def _entry(func: memo.Memoized[..., Any], *args: Any) -> Path:
    """The entry file of ``func(*args)``."""
    return Path(entry_store(func).path(sanitize(func.__qualname__), func.key(*args)))


def _regions(data: bytes) -> dict[str, tuple[int, int]]:
    """The [start, end) byte ranges of an entry's metadata line, header, payload and digest
    (a record, whose payload is its payload file, has no payload range)."""
    start = data.index(b"\n") + 1
    magic, _fmt, flags, name_len, length = struct.unpack_from("<4sBBHQ", data, start)
    assert magic == b"MEMO"
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % 64)
    end = offset if flags & DETACHED else offset + length
    assert end + CHECK == len(data)
    regions = {
        "metadata": (0, start - 1),  # the newline itself is left alone
        "header": (start, offset),
        "digest": (end, len(data)),
    }
    if not flags & DETACHED:
        regions["payload"] = (offset, end)
    return regions


PARTS = (".npy", ".parquet", ".json")  # the built-in serializers' payload files


def _payload_file(path: Path) -> Path | None:
    """The payload file kept beside the entry file at ``path``, if it has one."""
    for suffix in PARTS:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def _payload(path: Path) -> bytes:
    """An entry's payload: its payload file's bytes, or the range inside its entry file."""
    beside = _payload_file(path)
    if beside is not None:
        return beside.read_bytes()
    data = path.read_bytes()
    start, end = _regions(data)["payload"]
    return data[start:end]


def _flip(path: Path, region: str) -> None:
    """Flip one bit in the middle of ``region`` of the entry at ``path`` (the payload in its
    payload file, if it keeps one)."""
    beside = _payload_file(path)
    if region == "payload" and beside is not None:
        path, data = beside, bytearray(beside.read_bytes())
        start, end = 0, len(data)
    else:
        data = bytearray(path.read_bytes())
        start, end = _regions(bytes(data))[region]
    data[(start + end) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def _counting(
    cache_dir: Path, value: Any, serializer: Any
) -> tuple[memo.Memoized[[int], Any], list[int]]:
    """A memoized function returning ``value`` with ``serializer``, and its list of runs."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir, serializer=serializer)
    def produce(x: int) -> Any:
        calls.append(x)
        return value

    return produce, calls


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
        return True
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _frame() -> pd.DataFrame:
    """A frame with int, float, str, datetime and categorical columns and a named index."""
    return pd.DataFrame(
        {
            "count": np.array([3, 1, 4, 1], dtype=np.int64),
            "ratio": [0.5, np.nan, 2.25, -1.0],
            "label": ["alpha", "beta", "gamma", "delta"],
            "when": pd.to_datetime(
                ["2020-01-01T00:00", "2021-06-30T12:00", "1999-12-31T00:00", "2024-02-29T06:30"]
            ),
            "zoned": pd.date_range("2023-03-25", periods=4, freq="D", tz="Europe/Paris"),
            "kind": pd.Categorical(["x", "y", "x", "z"], categories=["z", "y", "x"]),
        },
        index=pd.Index([10, 20, 30, 40], name="station"),
    )


_BUILTIN_CASES: dict[str, Callable[[], Any]] = {
    "pickle": lambda: {"a": (1, 2.5), "b": {3, 4}, "c": [None, b"bytes"], 7: frozenset("xy")},
    "json": lambda: {"name": "memo", "values": [1, 2.5, None, True, "é"], "nested": {"k": []}},
    "npy": lambda: np.arange(12, dtype=np.float64).reshape(3, 4),
    "parquet": _frame,
}


# --- every built-in serializer --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_BUILTIN_CASES))
def test_builtin_serializer_round_trips_and_records_its_name(
    cache_dir: Path, name: str, record: list[warnings.WarningMessage]
) -> None:
    """Each built-in serializer stores and reloads its kind of value, and its name is recorded."""
    expected = _BUILTIN_CASES[name]()
    func, calls = _counting(cache_dir, _BUILTIN_CASES[name](), name)
    assert _same(func(1), expected)
    assert func.is_cached(1)
    loaded = func(1)
    assert calls == [1], "the second call must be a hit"
    assert _same(loaded, expected)
    [entry] = func.entries()
    assert entry["serializer"] == name
    assert entry["path"] == str(_entry(func, 1))
    assert entry_store(func).header(sanitize(func.__qualname__), func.key(1)) is not None
    assert record == []


def test_json_entry_is_human_readable(cache_dir: Path) -> None:
    """A json entry's payload is the UTF-8 JSON text of the value, readable in the file."""
    value = {"city": "Zürich", "temperatures": [1.5, -2.0, 3], "ok": True, "none": None}
    func, _ = _counting(cache_dir, value, "json")
    func(1)
    payload = _payload(_entry(func, 1))
    text = payload.decode("utf-8")
    assert json.loads(text) == value
    assert '"city": "Zürich"' in text, "non-ASCII text is stored as itself, not escaped"


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1: 2}, {1, 2}, [1, (2, 3)], {"a": {True: "b"}}, b"bytes"],
    ids=["tuple", "int-key", "set", "nested-tuple", "bool-key", "bytes"],
)
def test_json_refuses_values_that_would_not_round_trip(
    cache_dir: Path, value: Any, record: list[warnings.WarningMessage]
) -> None:
    """A value json would change (or cannot write) is returned, warned about once, not stored."""
    func, calls = _counting(cache_dir, value, "json")
    assert func(1) is value
    assert func(1) is value
    assert calls == [1, 1], "nothing was stored, so the second call computes again"
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert len(record) == 1
    assert "json" in messages[0]
    assert not func.is_cached(1)
    assert list(cache_dir.glob("*.memo")) == []
    # (Nothing was written, so the store may not have made its temp folder at all.)
    assert not (cache_dir / ".tmp").exists() or os.listdir(cache_dir / ".tmp") == []


def test_json_non_finite_and_signed_zero_floats_round_trip(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """NaN, infinities and -0.0 survive a json entry."""
    value = {"nan": math.nan, "values": [math.inf, -math.inf, -0.0, 1e300, 5e-324]}
    func, calls = _counting(cache_dir, value, "json")
    func(1)
    loaded = func(1)
    assert calls == [1]
    assert math.isnan(loaded["nan"])
    assert loaded["values"][:2] == [math.inf, -math.inf]
    assert math.copysign(1.0, loaded["values"][2]) == -1.0
    assert loaded["values"][3:] == [1e300, 5e-324]
    assert record == []


# --- npy ------------------------------------------------------------------------------------

_rng = np.random.default_rng(12345)
_NPY_CASES: dict[str, Callable[[], np.ndarray[Any, Any]]] = {
    "float32": lambda: _rng.random((5, 7)).astype(np.float32),
    "int64": lambda: np.arange(-50, 50, dtype=np.int64),
    "big-endian int32": lambda: np.arange(24, dtype=">i4").reshape(2, 3, 4),
    "bool": lambda: np.array([[True, False], [False, True]]),
    "complex": lambda: np.array([1 + 2j, -3.5j, np.inf + 0j], dtype=np.complex128),
    "datetime64": lambda: np.array(["2020-01-01T00:00", "1969-07-20T20:17"], dtype="M8[ns]"),
    "timedelta64": lambda: np.array([1, -2, 3], dtype="m8[s]"),
    "structured": lambda: np.array(
        [(1, 2.5, b"ab"), (-3, 0.0, b"xyz")],
        dtype=[("id", "<i4"), ("value", "<f8", (1,)), ("tag", "S3")],
    ),
    "aligned structured": lambda: np.zeros(4, dtype=np.dtype([("a", "u1"), ("b", "<f8")], True)),
    "unicode": lambda: np.array(["ä", "memo", ""]),
    "0-d": lambda: np.array(3.25),
    "empty": lambda: np.zeros((0, 3), dtype=np.int16),
    "3-d": lambda: np.arange(60, dtype=np.float64).reshape(3, 4, 5),
    "fortran": lambda: np.asfortranarray(np.arange(30, dtype=np.int32).reshape(5, 6)),
    "non-contiguous": lambda: np.arange(200, dtype=np.float64).reshape(10, 20)[::3, 1::4],
    "transposed": lambda: np.arange(12).reshape(3, 4).T,
    "large": lambda: np.linspace(0.0, 1.0, 300_000),  # > 1 MiB: read into a writable buffer
}


@pytest.mark.parametrize("case", list(_NPY_CASES))
def test_npy_round_trips_dtypes_shapes_and_layouts(
    cache_dir: Path, case: str, record: list[warnings.WarningMessage]
) -> None:
    """npy returns an equal, writable array of the same dtype and shape, whatever the layout."""
    original = _NPY_CASES[case]()
    expected = original.copy()
    func, calls = _counting(cache_dir, original, "npy")
    func(1)
    loaded = func(1)
    assert calls == [1]
    assert type(loaded) is np.ndarray
    assert loaded.dtype == expected.dtype
    assert loaded.shape == expected.shape
    assert np.array_equal(loaded, expected)
    assert loaded.flags.writeable
    if loaded.size:
        # Writing into a hit changes neither the entry nor later hits.
        loaded.reshape(-1)[0] = loaded.reshape(-1)[-1]
        assert np.array_equal(func(1), expected)
        assert func.is_cached(1)
    assert record == []


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_npy_stores_and_loads_wide_structured_arrays(
    cache_dir: Path, mmap_mode: str | None, record: list[warnings.WarningMessage]
) -> None:
    """An array whose .npy header is over 64 KiB (4,000 fields) loads back, mapped or not
    (numpy refuses headers over 10,000 bytes unless told)."""
    wide = np.full(3, 7, dtype=np.dtype([(f"field{i:05d}", "<i2") for i in range(4000)]))
    func, calls = _counting(cache_dir, wide, memo.NpySerializer(mmap_mode=mmap_mode))
    func(1)
    loaded = func(1)
    assert calls == [1]
    assert loaded.dtype == wide.dtype
    assert np.asarray(loaded).tobytes() == wide.tobytes()
    assert record == []


def test_npy_headers_parsed_once_still_describe_each_array() -> None:
    """A .npy header seen before is not parsed again, yet arrays sharing a header load their
    own data, format 2.0 headers (over 64 KiB) parse too, and a payload that is not .npy is
    refused."""
    from memo._storage import _serializers

    npy = _serializers.NpySerializer()
    wide = np.dtype([(f"field{i:05d}", "<i2") for i in range(4000)])  # a format 2.0 header
    for make in (
        lambda seed: np.full((3, 4), seed, dtype=np.int64),
        lambda seed: np.asfortranarray(np.full((5, 2), seed, dtype=np.float32)),
        lambda seed: np.full(2, seed, dtype=wide),
    ):
        first, second = make(1), make(2)
        loaded = [
            npy.loads(memoryview(b"".join(bytes(c) for c in npy.dumps(a)))) for a in (first, second)
        ]
        assert [array.tobytes() for array in loaded] == [first.tobytes(), second.tobytes()]
        assert [array.dtype for array in loaded] == [first.dtype, second.dtype]
        assert [array.shape for array in loaded] == [first.shape, second.shape]
    header = bytes(npy.dumps(np.zeros((3, 4), dtype=np.int64))[0])
    assert header in _serializers._npy_headers  # kept from the first case
    with pytest.raises(ValueError, match="npy"):
        npy.loads(memoryview(b"\x80\x05not an npy payload"))


@pytest.mark.parametrize(
    "value",
    [
        np.array([1, "a", None], dtype=object),
        np.array([(1, [2])], dtype=[("n", "<i4"), ("x", "O")]),
        [1, 2],
        3.0,
    ],
    ids=["object-array", "object-field", "list", "float"],
)
def test_npy_refuses_object_arrays_and_non_arrays(
    cache_dir: Path, value: Any, record: list[warnings.WarningMessage]
) -> None:
    """npy refuses what it cannot store exactly: the value is returned, one warning, no entry."""
    func, calls = _counting(cache_dir, value, "npy")
    assert func(1) is value
    assert func(1) is value
    assert calls == [1, 1]
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "npy" in messages[0]
    assert list(cache_dir.glob("*.memo")) == []
    # (Nothing was written, so the store may not have made its temp folder at all.)
    assert not (cache_dir / ".tmp").exists() or os.listdir(cache_dir / ".tmp") == []


# --- npy, memory-mapped ---------------------------------------------------------------------


def test_mapped_hit_returns_a_read_only_memmap_of_the_entry(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """With mmap_mode='r', a hit maps its payload file (the entry's .npy)."""
    expected = np.arange(1000, dtype=np.float64).reshape(10, 100) * 0.5
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="r"))
    func(1)
    hit = func(1)
    assert calls == [1]
    assert isinstance(hit, np.memmap)
    assert Path(str(hit.filename)) == _entry(func, 1).with_suffix(".npy")
    assert hit.dtype == expected.dtype
    assert np.array_equal(hit, expected)
    assert not hit.flags.writeable, "mode 'r' must not let a caller write into the entry"
    assert func.entries()[0]["serializer"] == "npy"
    assert record == []


def _assert_maps_the_entry(array: Any, func: memo.Memoized[..., Any], mode: str) -> None:
    """``array`` is a memmap of ``func(1)``'s .npy, writable only if ``mode`` is 'c'."""
    assert isinstance(array, np.memmap)
    assert Path(str(array.filename)) == _entry(func, 1).with_suffix(".npy")
    assert array.flags.writeable == (mode == "c")


@pytest.mark.parametrize("mode", ["r", "c"])
def test_mapped_miss_returns_what_a_hit_returns(
    cache_dir: Path, mode: str, record: list[warnings.WarningMessage]
) -> None:
    """With mmap_mode, a miss returns the stored file's mapping, as a hit does (not the
    writable array computed): the same kind of array either way."""
    expected = np.arange(1000, dtype=np.float64).reshape(10, 100) * 0.5
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode=mode))
    miss = func(1)
    hit = func(1)
    assert calls == [1]
    for array in (miss, hit):
        _assert_maps_the_entry(array, func, mode)
        assert np.array_equal(array, expected)
    assert record == []


def test_mapped_recompute_of_a_damaged_entry_returns_the_mapping(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """The recompute after a damaged entry, and a refresh, return the replaced file's
    read-only mapping too."""
    expected = np.arange(5000, dtype=np.int32)
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="r"))
    func(1)
    _flip(_entry(func, 1), "header")
    again = func(1)
    assert calls == [1, 1]
    assert len(_memo_warnings(record)) == 1
    _assert_maps_the_entry(again, func, "r")
    refreshed = func.refresh(1)
    assert calls == [1, 1, 1]
    _assert_maps_the_entry(refreshed, func, "r")
    assert np.array_equal(again, expected)
    assert np.array_equal(refreshed, expected)


def test_mapped_miss_with_signing_is_read_like_its_hit(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed entries are read, not mapped (the signature covers the payload): a miss and a
    hit both give an in-memory array."""
    monkeypatch.setenv("MEMO_SECRET_KEY", "s3cret")
    expected = np.arange(100, dtype=np.int64)
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="r"))
    miss, hit = func(1), func(1)
    assert calls == [1]
    assert not isinstance(miss, np.memmap)
    assert not isinstance(hit, np.memmap)
    assert np.array_equal(miss, expected)
    assert np.array_equal(hit, expected)


@pytest.mark.parametrize(
    "case", ["0-d", "empty", "fortran", "non-contiguous", "structured", "datetime64"]
)
def test_mapped_hit_of_unusual_arrays(
    cache_dir: Path, case: str, record: list[warnings.WarningMessage]
) -> None:
    """Mapped hits work for 0-d, empty, Fortran-ordered and non-contiguous inputs too."""
    expected = _NPY_CASES[case]()
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="r"))
    func(1)
    hit = func(1)
    assert calls == [1]
    assert isinstance(hit, np.memmap)
    assert hit.shape == expected.shape
    assert hit.dtype == expected.dtype
    assert np.array_equal(hit, expected)
    assert record == []


def test_copy_on_write_mapping_leaves_the_entry_unchanged(cache_dir: Path) -> None:
    """With mmap_mode='c' a hit can be written to, and the stored entry does not change."""
    expected = np.arange(100, dtype=np.int64)
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="c"))
    func(1)
    hit = func(1)
    assert isinstance(hit, np.memmap)
    hit[:] = -1
    assert func.is_cached(1), "writing to a copy-on-write mapping must not damage the entry"
    assert np.array_equal(func(1), expected)
    assert calls == [1]


def test_large_mapped_hit_does_not_read_the_file(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, record: list[warnings.WarningMessage]
) -> None:
    """A 50 MB mapped hit reads only the entry's header and trailer, not its payload."""
    expected = np.arange(50 * 2**20 // 8, dtype=np.float64)
    func, calls = _counting(cache_dir, expected, memo.NpySerializer(mmap_mode="r"))
    func(1)
    size = _entry(func, 1).with_suffix(".npy").stat().st_size
    assert size > 50 * 2**20

    read_bytes: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        data = real_pread(fd, length, offset)
        read_bytes.append(len(data))
        return data

    def no_whole_read(*args: Any) -> bytes:
        raise AssertionError("a mapped hit must not read the whole entry")

    monkeypatch.setattr(os, "pread", counting_pread)
    monkeypatch.setattr(_files, "read_all", no_whole_read)
    hit = func(1)
    monkeypatch.undo()

    assert calls == [1]
    assert isinstance(hit, np.memmap)
    assert Path(str(hit.filename)) == _entry(func, 1).with_suffix(".npy")
    assert hit.shape == expected.shape
    assert sum(read_bytes) < 1 << 20, read_bytes
    assert hit[12345] == 12345.0
    assert hit[-1] == expected[-1]
    assert record == []


@pytest.mark.parametrize("region", ["metadata", "header", "digest"])
def test_mapped_load_rejects_a_damaged_header(
    cache_dir: Path, region: str, record: list[warnings.WarningMessage]
) -> None:
    """A mapped load still checks metadata, header, size and key: a flipped bit there is a miss,
    warned once and recomputed. (The payload's own digest is NOT checked when mapping: reading
    the payload to hash it would defeat the mapping.)"""
    expected = np.arange(5000, dtype=np.int32)
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="r"))
    func(1)
    _flip(_entry(func, 1), region)
    again = func(1)
    assert calls == [1, 1]
    assert np.array_equal(again, expected)
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "damaged" in messages[0]
    hit = func(1)
    assert calls == [1, 1], "the replaced entry is a hit"
    assert isinstance(hit, np.memmap)
    assert np.array_equal(hit, expected)
    assert len(record) == 1


def test_mapped_hit_does_not_check_the_payload_digest(cache_dir: Path) -> None:
    """Documented limit: a mapped hit does not hash the payload, so a flipped payload bit is
    served as is; ``is_cached`` (and any unmapped read) reads everything and detects it."""
    expected = np.zeros(4096, dtype=np.uint8)
    func, calls = _counting(cache_dir, expected.copy(), memo.NpySerializer(mmap_mode="r"))
    func(1)
    _flip(_entry(func, 1), "payload")
    assert not func.is_cached(1)
    hit = func(1)
    assert calls == [1]
    assert isinstance(hit, np.memmap)
    assert int(hit.sum()) == 4, "the flipped bit is visible in the mapping"


def test_mapped_serializer_in_a_type_mapping(cache_dir: Path) -> None:
    """``{np.ndarray: NpySerializer(mmap_mode='r')}`` maps array hits; other types are read."""
    results: dict[str, Any] = {"array": np.arange(10), "other": {"x": np.arange(3)}}
    calls: list[str] = []

    @memo.cache(cache_path=cache_dir, serializer={np.ndarray: memo.NpySerializer(mmap_mode="r")})
    def produce(kind: str) -> Any:
        calls.append(kind)
        return results[kind]

    produce("array")
    produce("other")
    hit = produce("array")
    assert isinstance(hit, np.memmap)
    assert np.array_equal(hit, results["array"])
    other = produce("other")
    assert _same(other, results["other"])
    assert not isinstance(other["x"], np.memmap)
    assert calls == ["array", "other"]


# --- pickle ---------------------------------------------------------------------------------


def test_pickle_large_arrays_out_of_band(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A dict of two 20 MB arrays round-trips equal; the arrays are writable views of the read
    buffer (not copies), and writing to one affects neither the other nor later hits."""
    n = 20 * 2**20 // 8
    value = {
        "a": np.random.default_rng(0).random(n),
        "b": np.arange(n, dtype=np.int64)[::-1].copy(),
        "note": "two arrays",
    }
    expected: dict[str, Any] = {
        k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in value.items()
    }
    func, calls = _counting(cache_dir, value, "pickle")
    func(1)
    size = _entry(func, 1).stat().st_size
    assert 40 * 2**20 < size < 40 * 2**20 + 2**16, "the arrays are stored once, raw"
    loaded = func(1)
    assert calls == [1]
    assert loaded["note"] == "two arrays"
    for name in ("a", "b"):
        array = loaded[name]
        assert array.dtype == expected[name].dtype
        assert np.array_equal(array, expected[name])
        assert array.flags.writeable
        assert not array.flags.owndata, "an out-of-band array is a view of the read buffer"
    loaded["a"][:] = 0.0
    assert np.array_equal(loaded["b"], expected["b"])
    assert np.array_equal(func(1)["a"], expected["a"])
    assert func.entries()[0]["serializer"] == "pickle"
    assert record == []


def test_pickle_small_arrays_keep_layout_and_are_writable(cache_dir: Path) -> None:
    """Small arrays of every layout come back equal, writable, and in their memory order."""
    value = {
        name: _NPY_CASES[name]()
        for name in ("0-d", "empty", "fortran", "non-contiguous", "structured", "datetime64")
    }
    value["object"] = np.array([1, "two", None], dtype=object)
    func, calls = _counting(cache_dir, value, None)
    func(1)
    loaded = func(1)
    assert calls == [1]
    assert loaded.keys() == value.keys()
    for name, array in loaded.items():
        assert array.dtype == value[name].dtype, name
        assert array.shape == value[name].shape, name
        if array.dtype != object:
            assert np.array_equal(array, value[name]), name
        assert array.flags.writeable, name
    assert list(loaded["object"]) == [1, "two", None]
    assert loaded["fortran"].flags.f_contiguous
    assert not loaded["fortran"].flags.c_contiguous


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00\xffbinary", bytearray(b"mutable"), bytes(range(256)) * 12_000, bytearray(3 << 20)],
    ids=["empty-bytes", "bytes", "bytearray", "large-bytes", "large-bytearray"],
)
def test_pickle_bytes_and_bytearray(cache_dir: Path, value: bytes | bytearray) -> None:
    """bytes and bytearray results come back equal and of the same type."""
    func, calls = _counting(cache_dir, value, "pickle")
    func(1)
    loaded = func(1)
    assert calls == [1]
    assert type(loaded) is type(value)
    assert loaded == value


# --- parquet --------------------------------------------------------------------------------


def test_parquet_round_trips_typed_columns_and_named_index(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """int, float, str, datetime (naive and zoned) and categorical columns and a named index
    survive a parquet entry, dtypes included."""
    func, calls = _counting(cache_dir, _frame(), "parquet")
    func(1)
    loaded = func(1)
    assert calls == [1]
    pd.testing.assert_frame_equal(loaded, _frame())
    assert loaded.index.name == "station"
    assert isinstance(loaded["kind"].dtype, pd.CategoricalDtype)
    assert list(loaded["kind"].cat.categories) == ["z", "y", "x"]
    assert _payload(_entry(func, 1))[:4] == b"PAR1", "the payload is a plain Parquet file"
    assert record == []


@pytest.mark.parametrize(
    "value",
    [pd.Series([1, 2, 3]), {"a": [1, 2]}, np.arange(3)],
    ids=["series", "dict", "array"],
)
def test_parquet_refuses_non_frames(
    cache_dir: Path, value: Any, record: list[warnings.WarningMessage]
) -> None:
    """parquet stores DataFrames only: anything else is returned, warned about, not stored."""
    func, _ = _counting(cache_dir, value, "parquet")
    assert func(1) is value
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "parquet" in messages[0]
    assert not func.is_cached(1)
    assert list(cache_dir.glob("*.memo")) == []


# --- choosing a serializer ------------------------------------------------------------------


def test_type_mapping_picks_a_serializer_per_result_type(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """``{np.ndarray: 'npy', pd.DataFrame: 'parquet'}`` stores arrays as npy, frames as
    parquet and anything else with pickle, and each hit is read back correctly."""
    results: dict[str, Any] = {
        "array": np.arange(6.0).reshape(2, 3),
        "frame": _frame(),
        "other": {"plain": (1, 2)},
        "int": 42,
    }
    calls: list[str] = []

    @memo.cache(cache_path=cache_dir, serializer={np.ndarray: "npy", pd.DataFrame: "parquet"})
    def produce(kind: str) -> Any:
        calls.append(kind)
        return results[kind]

    for kind in results:
        produce(kind)
    chosen = {
        kind: entry_store(produce).metadata("produce", produce.key(kind))["serializer"]  # type: ignore[index]
        for kind in results
    }
    assert chosen == {"array": "npy", "frame": "parquet", "other": "pickle", "int": "pickle"}
    for kind, expected in results.items():
        assert _same(produce(kind), expected)
    assert calls == list(results)
    assert sorted(entry["serializer"] for entry in produce.entries()) == [
        "npy",
        "parquet",
        "pickle",
        "pickle",
    ]
    assert record == []


# --- user serializers -----------------------------------------------------------------------


def test_user_serializer_is_used_and_named(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A user serializer object writes the payload (here ROT13 text) and its name is recorded."""
    text = "Hello, cached World"
    func, calls = _counting(cache_dir, text, Rot13Serializer())
    assert func(1) == text
    payload = _payload(_entry(func, 1))
    assert payload == b"ROT13:" + codecs.encode(text, "rot13").encode()
    assert text.encode() not in _entry(func, 1).read_bytes()
    before = Rot13Serializer.loads_calls
    assert func(1) == text
    assert Rot13Serializer.loads_calls == before + 1
    assert calls == [1]
    assert func.entries()[0]["serializer"] == "rot13"
    assert isinstance(Rot13Serializer(), memo.Serializer)
    assert record == []


def test_user_serializer_refusal_is_a_warning(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A user serializer raising in ``dumps`` means: value returned, one warning, not stored."""
    func, _ = _counting(cache_dir, 12345, Rot13Serializer())
    assert func(1) == 12345
    assert len(_memo_warnings(record)) == 1
    assert "rot13" in _memo_warnings(record)[0]
    assert list(cache_dir.glob("*.memo")) == []


@pytest.mark.parametrize(
    "serializer",
    [
        NoDumps(),
        {int: Rot13Serializer(), str: OtherRot13()},
        ClaimsPickle(),
        NumberName(),
        EmptyName(),
        NonAsciiName(),
        "yaml",
        3,
        {"array": "npy"},
        {np.ndarray: "yaml"},
        {np.ndarray: NoDumps()},
    ],
    ids=[
        "no-dumps",
        "name-clash",
        "builtin-name-clash",
        "number-name",
        "empty-name",
        "non-ascii-name",
        "unknown-name",
        "int",
        "mapping-key-not-a-type",
        "mapping-unknown-name",
        "mapping-no-dumps",
    ],
)
def test_invalid_serializer_raises_type_error_at_decoration(
    cache_dir: Path, serializer: Any
) -> None:
    """A bad ``serializer`` option is a TypeError (ConfigError) when decorating, not later."""
    with pytest.raises(TypeError) as raised:
        memo.cache(cache_path=cache_dir, serializer=serializer)(lambda: None)
    assert isinstance(raised.value, memo.ConfigError)


# --- damaged payloads -----------------------------------------------------------------------

_DAMAGE_CASES: dict[str, tuple[Any, Callable[[], Any]]] = {
    "pickle": ("pickle", lambda: {"x": list(range(500)), "s": "text" * 100}),
    "pickle-out-of-band": ("pickle", lambda: {"big": np.arange(300_000, dtype=np.int64)}),
    "json": ("json", lambda: {"x": list(range(500)), "s": "text" * 100}),
    "npy": ("npy", lambda: np.arange(2000, dtype=np.float64)),
    "npy-large": ("npy", lambda: np.arange(300_000, dtype=np.float64)),
    "parquet": ("parquet", _frame),
    "rot13": (Rot13Serializer(), lambda: "some text to be stored " * 40),
}


@pytest.mark.parametrize("case", list(_DAMAGE_CASES))
def test_damaged_payload_is_detected_before_deserializing(
    cache_dir: Path, case: str, record: list[warnings.WarningMessage]
) -> None:
    """One flipped payload byte, with any serializer, is caught by the digest check before the
    deserializer runs: one 'damaged' warning, recomputed, replaced, then a clean hit."""
    serializer, make = _DAMAGE_CASES[case]
    func, calls = _counting(cache_dir, make(), serializer)
    func(1)
    path = _entry(func, 1)
    _flip(path, "payload")
    assert not func.is_cached(1)
    loads_before = Rot13Serializer.loads_calls

    assert _same(func(1), make())
    assert calls == [1, 1]
    assert Rot13Serializer.loads_calls == loads_before, "the deserializer never saw the damage"
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "damaged" in messages[0]
    assert "could not be loaded" not in messages[0]

    assert func.is_cached(1)
    assert _same(func(1), make())
    assert calls == [1, 1]
    assert len(record) == 1
