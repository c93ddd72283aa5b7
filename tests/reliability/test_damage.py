"""Damaged entries, generated with Hypothesis: each is detected before it is deserialized.

One strategy draws a kind of damage and its parameters: truncation at any offset, a zero-filled
tail, a bit flip or an overwritten run in any region (metadata line, header, payload, trailer),
trailing garbage, a damaged metadata line (broken JSON, a field changed so it disagrees with the
payload, its newline removed or doubled), and swapped files: another key's entry of the same
function, an entry of another function, or an entry of an older version of the same function
moved onto the entry's name. For ``Cacheable`` results the entry's directory is damaged too.

For every example the call must return the right value, the damaged entry must never reach a
deserializer (the stored class counts its unpickling; npy and ``Cacheable`` loads are counted
too, and a healthy hit must raise the count, which proves the probe works), exactly one
``MemoWarning`` must say the entry is damaged, and the entry must be replaced by a correct one:
the next call hits, loads the right value and warns about nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import memo
from memo._exceptions import reset_warnings
from memo._storage._backend import sanitize
from memo._storage._format import CHECK, HEADER, SIGNATURE, SIGNED
from memo._storage._serializers import NpySerializer
from tests.stores import entry_store

from ._support import figure, scale

PARTS = (".npy", ".parquet", ".json")  # the built-in serializers' payload files

SECRET = "a secret key of the damage tests"
SMALL, LARGE = 4096, (1 << 20) + 4096  # a one-read entry, and one read piecewise after checks
REGIONS = ("metadata", "header", "payload", "trailer")
BYTE_KINDS = (
    "truncate",
    "zero-tail",
    "bit-flip",
    "overwrite",
    "garbage",
    "metadata-json",
    "metadata-field",
    "metadata-newline",
)
SWAP_KINDS = ("swap-key", "swap-function", "swap-old-code")
KINDS = BYTE_KINDS + SWAP_KINDS
DIRECTORY_KINDS = (
    "dir-truncate",
    "dir-bit-flip",
    "dir-garbage",
    "dir-remove",
    "dir-add",
    "dir-swap",
)
FIELDS = ("payload_bytes", "serializer", "key", "function", "name", "created")
_rejected: Counter[str] = Counter()  # by kind of damage
_by_case: Counter[str] = Counter()  # by kind of entry


def _settings(quick: int, soak: int) -> settings:
    """Hypothesis settings: ``quick`` examples, ``soak`` with ``MEMO_SOAK=1``."""
    return settings(
        max_examples=scale(quick, soak),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- values that count their own deserialization --------------------------------------------------

_loads: Counter[str] = Counter()


def _blob(seed: int, size: int) -> bytes:
    digest = hashlib.sha256(str(seed).encode()).digest()
    return (digest * (size // len(digest) + 1))[:size]


class Tracked:
    """A pickled result that counts each unpickling: a damaged entry must never get that far."""

    def __init__(self, x: int, blob: bytes) -> None:
        self.x = x
        self.blob = blob

    def __setstate__(self, state: dict[str, Any]) -> None:
        _loads["unpickled"] += 1
        self.__dict__.update(state)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tracked) and (other.x, other.blob) == (self.x, self.blob)

    def __hash__(self) -> int:
        return hash(self.x)


class Bundle:
    """A ``Cacheable`` result of two files (one in a subfolder); ``from_cache`` is counted."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def to_cache(self, directory: Path) -> None:
        """Write every file."""
        for name, content in self.files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    @classmethod
    def from_cache(cls, directory: Path) -> Bundle:
        """Read every file back (counted: a damaged directory must never get here)."""
        _loads["from_cache"] += 1
        files = {
            path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        }
        return cls(files)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bundle) and other.files == self.files

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.files)))


def compute(x: int, size: int) -> Tracked:
    """The function whose entries are damaged."""
    return Tracked(x, _blob(x, size))


def other(x: int, size: int) -> Tracked:
    """Another function in the same store: its entries must not pass for ``compute``'s."""
    return Tracked(x, _blob(x + 1000, size))


def compute_before(x: int, size: int) -> Tracked:
    """An older version of ``compute``: same name, other code, other results."""
    return Tracked(x, _blob(x + 2000, size))


compute_before.__name__ = compute_before.__qualname__ = "compute"


def array(x: int, size: int) -> np.ndarray[Any, Any]:
    """An npy-serialized result."""
    return np.frombuffer(_blob(x, size), dtype=np.uint8).reshape(-1, 8).astype(np.float32)


def other_array(x: int, size: int) -> np.ndarray[Any, Any]:
    """Another npy function in the same store."""
    return array(x + 1000, size)


def array_before(x: int, size: int) -> np.ndarray[Any, Any]:
    """An older version of ``array``."""
    return array(x + 2000, size)


array_before.__name__ = array_before.__qualname__ = "array"


def bundle(x: int, size: int) -> Bundle:
    """A ``Cacheable`` result, stored in the entry's own directory."""
    return Bundle({"data.bin": _blob(x, size), "meta/info.json": json.dumps({"x": x}).encode()})


def other_bundle(x: int, size: int) -> Bundle:
    """Another ``Cacheable`` function in the same store."""
    return bundle(x + 1000, size)


def bundle_before(x: int, size: int) -> Bundle:
    """An older version of ``bundle``."""
    return bundle(x + 2000, size)


bundle_before.__name__ = bundle_before.__qualname__ = "bundle"


@dataclasses.dataclass(frozen=True)
class Case:
    """What is stored: the function, its neighbours for swaps, options, and its load counter."""

    main: Callable[[int, int], Any]
    other: Callable[[int, int], Any]
    before: Callable[[int, int], Any]
    counter: str
    label: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def same(self, a: Any, b: Any) -> bool:
        """Whether two results are equal."""
        if isinstance(a, np.ndarray):
            return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
        return bool(a == b)


PICKLED = Case(compute, other, compute_before, "unpickled", "pickle")
NPY = Case(array, other_array, array_before, "npy", "npy", {"serializer": "npy"})
MAPPED = Case(
    array,
    other_array,
    array_before,
    "npy",
    "npy, memory-mapped",
    {"serializer": NpySerializer(mmap_mode="r")},
)
CACHEABLE = Case(bundle, other_bundle, bundle_before, "from_cache", "Cacheable directory")


@contextmanager
def _counting_npy_loads() -> Iterator[None]:
    """Count every npy deserialization (read or memory-mapped)."""
    loads, load_file = NpySerializer.loads, NpySerializer.load_file

    def counted_loads(self: NpySerializer, data: memoryview) -> Any:
        _loads["npy"] += 1
        return loads(self, data)

    def counted_load_file(self: NpySerializer, path: str, offset: int, length: int) -> Any:
        _loads["npy"] += 1
        return load_file(self, path, offset, length)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NpySerializer, "loads", counted_loads)
        patch.setattr(NpySerializer, "load_file", counted_load_file)
        yield


# --- damage ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Damage:
    """One drawn damage: its kind and parameters (positions are reduced modulo the target)."""

    kind: str
    region: str = "payload"
    position: int = 0
    bit: int = 0
    data: bytes = b"\xff"
    field: str = "payload_bytes"


@st.composite
def damages(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> Damage:
    """A kind of damage with the parameters it needs."""
    kind = draw(st.sampled_from(kinds))
    position = draw(st.integers(min_value=0, max_value=2**32))
    if kind in ("bit-flip", "dir-bit-flip"):
        return Damage(kind, draw(st.sampled_from(REGIONS)), position, draw(st.integers(0, 7)))
    if kind == "overwrite":
        data = draw(st.binary(min_size=1, max_size=64))
        return Damage(kind, draw(st.sampled_from(REGIONS)), position, data=data)
    if kind in ("garbage", "dir-garbage", "metadata-json", "dir-add"):
        return Damage(kind, position=position, data=draw(st.binary(min_size=1, max_size=300)))
    if kind == "metadata-field":
        return Damage(kind, position=position, field=draw(st.sampled_from(FIELDS)))
    if kind == "metadata-newline":  # 0: removed; otherwise another newline inserted
        return Damage(kind, position=position, bit=draw(st.integers(0, 1)))
    return Damage(kind, position=position)


def _joined(path: Path) -> bytes:
    """An entry's bytes as one layout: its entry file, with its payload file (if it keeps
    one, as npy entries do) in the place of the payload, so damage is drawn over both."""
    data = path.read_bytes()
    beside = [path.with_suffix(part) for part in PARTS if path.with_suffix(part).exists()]
    if not beside:
        return data
    try:
        start = data.index(b"\n") + 1
        name_len = struct.unpack_from("<4sBBHQ", data, start)[3]
    except (ValueError, struct.error):  # a damaged entry file: its layout cannot be read
        return data + beside[0].read_bytes()
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % 64)
    return data[:offset] + beside[0].read_bytes() + data[offset:]


def _write_joined(path: Path, original: bytes, damaged: bytes) -> None:
    """Write ``damaged`` (a ``_joined`` layout) back: the payload range to the payload file,
    the rest (head and trailer, kept at their ends) to the entry file."""
    beside = [path.with_suffix(part) for part in PARTS if path.with_suffix(part).exists()]
    if not beside:
        path.write_bytes(damaged)
        return
    regions = _regions(original)
    offset, end = regions["payload"]
    tail = len(original) - end  # the trailer's length
    cut = max(offset, len(damaged) - tail)
    path.write_bytes(damaged[:offset] + damaged[cut:])
    beside[0].write_bytes(damaged[offset:cut])


def _regions(data: bytes) -> dict[str, tuple[int, int]]:
    """The [start, end) byte ranges of an intact entry's regions."""
    start = data.index(b"\n") + 1
    magic, _fmt, flags, name_len, length = struct.unpack_from("<4sBBHQ", data, start)
    assert magic == b"MEMO"
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % 64)
    end = offset + length
    assert end + CHECK + (SIGNATURE if flags & SIGNED else 0) == len(data)
    return {
        "metadata": (0, start - 1),  # the JSON, without its newline
        "header": (start - 1, offset),  # from the newline to the payload
        "payload": (offset, end),
        "trailer": (end, len(data)),
    }


def _changed_field(metadata: dict[str, Any], field: str, position: int) -> Any:
    current: Any = metadata.get(field)
    if field == "payload_bytes":
        return int(current) + 1 + position % 1000
    if field == "serializer":
        others = [name for name in ("pickle", "json", "npy", "cacheable") if name != current]
        return others[position % len(others)]
    if field == "key":
        return hashlib.sha256(str(position).encode()).hexdigest()[:32]  # any other key
    if field == "created":
        return float(current) - 1 - position % 10**6
    return f"{current}_{position % 100}"


def damage_bytes(original: bytes, damage: Damage) -> bytes:
    """``original`` with ``damage`` applied (byte-level kinds)."""
    size = len(original)
    regions = _regions(original)
    newline = regions["metadata"][1]
    kind, position = damage.kind, damage.position
    if kind == "truncate":
        return original[: position % size]
    if kind == "zero-tail":
        n = 1 + position % size
        return original[:-n] + bytes(n)
    if kind == "garbage":
        return original + damage.data
    if kind in ("bit-flip", "overwrite"):
        start, end = regions[damage.region]
        at = start + position % (end - start)
        out = bytearray(original)
        if kind == "bit-flip":
            out[at] ^= 1 << damage.bit
        else:
            run = damage.data[: end - at]
            out[at : at + len(run)] = run
        return bytes(out)
    if kind == "metadata-json":  # bytes spliced over part of the JSON line
        at = position % newline
        return original[:at] + damage.data + original[at + len(damage.data) :]
    if kind == "metadata-field":
        metadata = json.loads(original[:newline])
        metadata[damage.field] = _changed_field(metadata, damage.field, position)
        line = json.dumps(metadata, separators=(",", ":")).encode()
        return line + original[newline:]
    if kind == "metadata-newline":
        if damage.bit == 0:
            return original[:newline] + original[newline + 1 :]
        at = position % newline
        return original[:at] + b"\n" + original[at:]
    raise AssertionError(kind)


def _entry(func: memo.Memoized[..., Any], *args: Any) -> Path:
    return Path(entry_store(func).path(sanitize(func.__qualname__), func.key(*args)))


def _directory_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def damage_directory(directory: Path, damage: Damage, neighbour: Path) -> None:
    """Damage a ``Cacheable`` entry's directory in place (``neighbour``: another entry's)."""
    files = _directory_files(directory)
    target = files[damage.position % len(files)]
    content = target.read_bytes()
    if damage.kind == "dir-truncate":
        target.write_bytes(content[: damage.position % len(content)])
    elif damage.kind == "dir-bit-flip":
        out = bytearray(content)
        out[damage.position % len(out)] ^= 1 << damage.bit
        target.write_bytes(bytes(out))
    elif damage.kind == "dir-garbage":
        target.write_bytes(content + damage.data)
    elif damage.kind == "dir-remove":
        target.unlink()
    elif damage.kind == "dir-add":
        (directory / f"extra-{damage.position % 7}.bin").write_bytes(damage.data)
    elif damage.kind == "dir-swap":
        shutil.rmtree(directory)
        os.rename(neighbour, directory)
    else:
        raise AssertionError(damage.kind)


# --- the property ---------------------------------------------------------------------------------


def _decorate(case: Case, func: Callable[[int, int], Any], root: Path, signed: str) -> Any:
    """``func`` memoized in ``root``; ``signed``: "", "option" or "environment"."""
    options = {**case.options, "secret_key": SECRET} if signed == "option" else case.options
    return memo.decorate(func, cache_path=root, **options)


def _damage_is_rejected(case: Case, damage: Damage, size: int, signed: str = "") -> None:
    """Store an entry, damage it, and check the damage is caught before deserializing."""
    reset_warnings()
    x = 7
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        if signed == "environment":
            patch.setenv("MEMO_SECRET_KEY", SECRET)
        root = Path(tmp) / "cache"
        func = _decorate(case, case.main, root, signed)
        expected = case.main(x, size)
        assert case.same(func(x, size), expected)
        path = _entry(func, x, size)
        original = _joined(path)
        directory = entry_store(func).directory(sanitize(func.__qualname__), func.key(x, size))
        if damage.kind in SWAP_KINDS:
            source = {"swap-key": case.main, "swap-function": case.other}
            donor = _decorate(case, source.get(damage.kind, case.before), root, signed)
            donor_x = x + 1 if damage.kind == "swap-key" else x
            donor(donor_x, size)
            donor_path = _entry(donor, donor_x, size)
            assert donor_path != path
            os.rename(donor_path, path)  # moved onto this entry's name
            for part in PARTS:  # and its payload file onto this entry's, if it has one
                if donor_path.with_suffix(part).exists():
                    os.rename(donor_path.with_suffix(part), path.with_suffix(part))
        elif damage.kind in DIRECTORY_KINDS:
            func(x + 1, size)
            neighbour = entry_store(func).directory(
                sanitize(func.__qualname__), func.key(x + 1, size)
            )
            before = {p.relative_to(directory): p.read_bytes() for p in _directory_files(directory)}
            damage_directory(directory, damage, neighbour)
            after = {p.relative_to(directory): p.read_bytes() for p in _directory_files(directory)}
            assume(after != before)
        else:
            damaged = damage_bytes(original, damage)
            assume(damaged != original)
            _write_joined(path, original, damaged)
        damaged = _joined(path)
        if damage.kind not in DIRECTORY_KINDS and not signed:
            # is_cached checks the entry file's digests, not a directory or a signature
            assert not func.is_cached(x, size)

        loads, misses = _loads[case.counter], func.misses
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = func(x, size)
        assert case.same(value, expected), f"a wrong value after {damage}"
        # A mapped recompute returns the mapping of the entry it has just stored (one load,
        # of the new entry: one of the damaged one would be a second, or no miss).
        fresh = int(bool(getattr(case.options.get("serializer"), "mmap_mode", None)) and not signed)
        assert _loads[case.counter] == loads + fresh, f"a damaged entry was deserialized: {damage}"
        assert isinstance(value, np.memmap) == bool(fresh)
        assert func.misses == misses + 1, "a damaged entry must be recomputed"
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1, messages
        assert issubclass(caught[0].category, memo.MemoWarning)
        assert "is damaged" in messages[0], messages

        assert func.is_cached(x, size), "the damaged entry must be replaced"
        if damage.kind not in DIRECTORY_KINDS:
            assert _joined(path) != damaged
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = func(x, size)
        assert caught == [], [str(w.message) for w in caught]
        assert case.same(again, expected)
        assert func.misses == misses + 1, "the replaced entry must be a hit"
        assert _loads[case.counter] == loads + fresh + 1, (
            "the hit must deserialize (the probe works)"
        )
    label = f"{damage.kind} ({damage.region})" if damage.kind == "bit-flip" else damage.kind
    _rejected[label] += 1
    _by_case[case.label + (f", signed ({signed})" if signed else "")] += 1


_sizes = st.sampled_from((SMALL, SMALL, SMALL, LARGE))


@_settings(200, 2000)
@given(damage=damages(), size=_sizes)
@example(damage=Damage("truncate", position=0), size=SMALL)
@example(damage=Damage("zero-tail", position=2**32), size=SMALL)
@example(damage=Damage("bit-flip", "metadata"), size=SMALL)
@example(damage=Damage("bit-flip", "header", position=5), size=SMALL)
@example(damage=Damage("bit-flip", "payload", bit=7), size=LARGE)
@example(damage=Damage("bit-flip", "trailer", position=15, bit=3), size=SMALL)
@example(damage=Damage("swap-old-code"), size=LARGE)
def test_damaged_pickled_entry_is_never_unpickled(damage: Damage, size: int) -> None:
    """Any damage to a pickled entry: right value, never unpickled, one warning, replaced."""
    _damage_is_rejected(PICKLED, damage, size)


@_settings(40, 400)
@given(damage=damages(), size=_sizes, how=st.sampled_from(("option", "environment")))
@example(damage=Damage("bit-flip", "trailer", position=40), size=SMALL, how="option")
@example(damage=Damage("swap-function"), size=SMALL, how="environment")
def test_damaged_signed_entry_is_never_unpickled(damage: Damage, size: int, how: str) -> None:
    """With signing on (option or environment), damage is caught before unpickling."""
    _damage_is_rejected(PICKLED, damage, size, signed=how)


@_settings(40, 400)
@given(damage=damages(), size=_sizes)
def test_damaged_npy_entry_is_never_loaded(damage: Damage, size: int) -> None:
    """Any damage to an npy entry is caught before numpy reads it."""
    with _counting_npy_loads():
        _damage_is_rejected(NPY, damage, size)


# A memory-mapped load checks everything but the payload's own digest (documented): damage
# confined to the payload is the one thing it cannot see, so it is not drawn here.
_MAPPED_KINDS = tuple(kind for kind in KINDS if kind not in ("bit-flip", "overwrite"))


@_settings(30, 300)
@given(
    damage=damages(_MAPPED_KINDS)
    | st.builds(
        Damage,
        kind=st.sampled_from(("bit-flip", "overwrite")),
        region=st.sampled_from(("metadata", "header", "trailer")),
        position=st.integers(min_value=0, max_value=2**32),
        bit=st.integers(0, 7),
        data=st.binary(min_size=1, max_size=64),
    ),
    size=_sizes,
)
def test_damaged_memory_mapped_npy_entry_is_never_mapped(damage: Damage, size: int) -> None:
    """With mmap_mode, damage outside the payload is caught before the file is mapped."""
    with _counting_npy_loads():
        _damage_is_rejected(MAPPED, damage, size)


@_settings(50, 500)
@given(damage=damages(DIRECTORY_KINDS) | damages(), size=st.sampled_from((SMALL, 64)))
@example(damage=Damage("dir-swap"), size=SMALL)
@example(damage=Damage("dir-remove", position=1), size=64)
def test_damaged_cacheable_entry_is_never_rebuilt(damage: Damage, size: int) -> None:
    """Damage to a Cacheable entry, its file or its directory, is caught before from_cache."""
    _damage_is_rejected(CACHEABLE, damage, size)


def test_each_damaged_entry_is_warned_about_once(cache_dir: Path) -> None:
    """Two damaged entries: one warning each; the same entry damaged again in the same
    process is recomputed without a second warning (warnings are once per entry)."""
    func = memo.decorate(compute, cache_path=cache_dir)
    paths = {x: _entry(func, x, SMALL) for x in (7, 8)}
    for x in paths:
        func(x, SMALL)
    for path in paths.values():
        path.write_bytes(path.read_bytes()[:-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [func(x, SMALL) for x in (7, 8, 7, 8)] == [compute(x, SMALL) for x in (7, 8, 7, 8)]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2, messages
    assert all(any(str(path) in m for m in messages) for path in paths.values()), messages
    paths[7].write_bytes(b"")
    loads = _loads["unpickled"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert func(7, SMALL) == compute(7, SMALL)
    assert caught == []
    assert _loads["unpickled"] == loads
    assert func.misses == 5  # 7 and 8 stored, both recomputed, 7 recomputed again
    _rejected["truncate"] += 3


def report_figures() -> None:
    """How many damaged variants were rejected, by kind (reported at the end)."""
    for kind, count in sorted(_rejected.items()):
        figure(f"damaged variants rejected: {kind}", count)
    for case, count in sorted(_by_case.items()):
        figure(f"damaged variants rejected: {case} entries", count)
    figure("damaged variants rejected", sum(_rejected.values()))
