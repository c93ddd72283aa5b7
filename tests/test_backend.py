"""The store protocol: every backend (a local directory, an fsspec URL) keeps the same contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memo._storage._backend import MISS, Backend, Outgoing, sanitize, split_name
from memo._storage._disk import DiskBackend
from memo._storage._entries import EntryStore
from memo._storage._fsspec import FsspecBackend
from memo._storage._serializers import PICKLE

KEY = "0123456789abcdef" * 2
OTHER = "fedcba9876543210" * 2


@pytest.fixture(params=["disk", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend, on a fresh location (S3: moto's server on 127.0.0.1)."""
    if request.param == "disk":
        yield DiskBackend(tmp_path / "store")
    elif request.param == "memory":
        yield FsspecBackend(f"memory://memo-{uuid.uuid4().hex[:8]}/store")
    else:
        yield FsspecBackend(request.getfixturevalue("url"))


def _entry(store: EntryStore, key: str, value: object) -> None:
    store.save("f", key, value, f'"key":"{key}"', PICKLE, '"function":"f"')


def test_a_missing_entry_reads_as_none(backend: Backend) -> None:
    """Reading, opening or asking for an entry that is not there gives None / False."""
    assert backend.read("f", KEY) is None
    assert backend.open("f", KEY) is None
    assert not backend.exists("f", KEY)
    assert backend.listing() == []
    assert not backend.delete("f", KEY)


def test_publish_is_create_only_unless_replacing(backend: Backend) -> None:
    """A create-only publish over an entry raises FileExistsError and leaves it; a
    replacing one overwrites it whole."""
    backend.publish("f", KEY, Outgoing(None, (b"first", b"0" * 16)), replace=False)
    with pytest.raises(FileExistsError):
        backend.publish("f", KEY, Outgoing(None, (b"second", b"1" * 16)), replace=False)
    got = backend.read("f", KEY)
    assert got is not None
    assert bytes(got[0]) == b"first"
    backend.publish("f", KEY, Outgoing(None, (b"third", b"2" * 16)), replace=True)
    got = backend.read("f", KEY)
    assert got is not None
    assert bytes(got[0]) == b"third"


def test_ranges_listing_and_delete(backend: Backend) -> None:
    """An opened entry gives byte ranges of itself; listings name each entry by function
    name and key with its size; deleting removes one entry only."""
    backend.publish("f", KEY, Outgoing(None, (b"0123456789", b"0" * 16)), replace=False)
    backend.publish("g", OTHER, Outgoing(None, (b"abc", b"0" * 16)), replace=False)
    reader = backend.open("f", KEY)
    assert reader is not None
    try:
        assert reader.size == 10
        assert reader.read(2, 5) == b"234"
        assert reader.read(8, 100) == b"89"
    finally:
        reader.close()
    assert bytes(backend.peek("f", KEY, 4)) == b"0123"
    listed = sorted((entry.name, entry.key, entry.bytes) for entry in backend.listing())
    assert listed == [("f", KEY, 10), ("g", OTHER, 3)]
    assert [entry.key for entry in backend.listing("g")] == [OTHER]
    assert backend.location("g", OTHER) == backend.listing("g")[0].location
    assert backend.delete("f", KEY)
    assert [entry.key for entry in backend.listing()] == [OTHER]


def test_entries_round_trip_on_every_backend(backend: Backend) -> None:
    """The entry layer stores, checks and loads values alike on every backend, and reads a
    header without the payload."""
    store = EntryStore(backend)
    _entry(store, KEY, {"a": [1, 2]})
    assert store.load("f", KEY) == {"a": [1, 2]}
    assert store.contains("f", KEY)
    header = store.header("f", KEY)
    assert header is not None
    assert header.serializer == "pickle"
    assert store.metadata("f", KEY) == {
        "function": "f",
        "key": KEY,
        "serializer": "pickle",
        "payload_bytes": header.length,
    }
    assert store.check("f", KEY) is None


def test_a_damaged_entry_is_a_miss_on_every_backend(backend: Backend) -> None:
    """Bytes that fail their checks are never loaded, whichever backend holds them."""
    store = EntryStore(backend)
    _entry(store, KEY, "value")
    got = backend.read("f", KEY)
    assert got is not None
    damaged = bytearray(bytes(got[0]))
    damaged[-20] ^= 0xFF
    backend.publish("f", KEY, Outgoing(None, (bytes(damaged), b"0" * 16)), replace=True)
    with pytest.warns(UserWarning, match="damaged"):
        assert store.load("f", KEY) is MISS
    assert store.check("f", KEY) is not None
    assert not store.contains("f", KEY)


def test_capabilities_are_declared_not_assumed(backend: Backend) -> None:
    """A backend says what it can do beyond the core; the layer above asks."""
    capabilities = backend.capabilities
    local = isinstance(backend, DiskBackend)
    assert capabilities.files is local
    assert capabilities.mmap is local
    assert capabilities.last_use is local
    assert capabilities.directories is local
    assert capabilities.exactly_once


def test_names_are_sanitized_into_file_names() -> None:
    """Function names become safe file-name parts; a local function keeps its own name."""
    assert sanitize("outer.<locals>.inner") == "inner"
    assert sanitize("Model.predict") == "Model.predict"
    assert sanitize("a/b c") == "a_b_c"
    assert sanitize("...") == "f"


def test_an_entrys_file_names_split_into_name_key_and_suffix() -> None:
    """``<name>-<32 hex><suffix>`` splits (any suffix: record, payload, directory, lease);
    a short, upper-case or missing key, no name or no suffix is no entry's file."""
    key = "0123456789abcdef" * 2
    assert split_name(f"f-{key}.memo") == ("f", key, ".memo")
    assert split_name(f"my-step-{key}.lease") == ("my-step", key, ".lease")
    assert split_name(f"f-{key}.d") == ("f", key, ".d")
    for other in (
        f"f-{key[:-1]}.memo",
        f"f-{key.upper()}.memo",
        f"-{key}.memo",
        f"f-{key}",
        "notes.txt",
    ):
        assert split_name(other) is None, other
