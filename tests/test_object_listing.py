"""What an object store's listing says: entries, their payload objects, sizes and times."""

from __future__ import annotations

import datetime

import pytest

from memo._storage._object_listing import created, entries_in

_KEY = "0123456789abcdef0123456789abcdef"
_OTHER = "fedcba9876543210fedcba9876543210"


def _location(name: str, key: str, part: str) -> str:
    return f"s3://b/cache/{name}-{key}{part}"


def _object(name: str, size: int = 10, kind: str = "file", **fields: object) -> dict[str, object]:
    return {"name": f"b/cache/{name}", "size": size, "type": kind, **fields}


def test_an_entry_is_paired_with_its_payload_object() -> None:
    """A record and the payload object of its stem are one entry, their sizes summed."""
    written = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    items = [
        _object(f"f-{_KEY}.memo", 100, LastModified=written),
        _object(f"f-{_KEY}.npy", 5000),
        _object(f"g-{_OTHER}.memo", 7),
    ]
    first, second = entries_in(items, None, _location)
    assert (first.name, first.key, first.bytes) == ("f", _KEY, 5100)
    assert first.payload == _location("f", _KEY, ".npy")
    assert first.created == first.last_used == written.timestamp()
    assert (second.name, second.bytes, second.payload) == ("g", 7, None)
    assert second.location == _location("g", _OTHER, ".memo")


def test_only_entries_of_the_function_asked_for() -> None:
    """Given a function's name, the listing gives its entries only."""
    items = [_object(f"f-{_KEY}.memo"), _object(f"g-{_KEY}.memo")]
    assert [entry.name for entry in entries_in(items, "g", _location)] == ["g"]


@pytest.mark.parametrize(
    "item",
    [
        _object(f"f-{_KEY}.lease"),  # not an entry's suffix
        _object("f-0123.memo"),  # a key too short
        _object(f"f-{_KEY.upper()}.memo"),  # not lowercase hex
        _object(f"f{_KEY}.memo"),  # no name
        _object(f"f-{_KEY}.memo", kind="directory"),
        _object(f"f-{_KEY}.npy"),  # a payload without its record
    ],
    ids=["lease", "short key", "upper hex", "no dash", "directory", "payload alone"],
)
def test_other_objects_are_not_entries(item: dict[str, object]) -> None:
    """Leases, a user's files, directories and payloads without a record are not entries."""
    assert entries_in([item], None, _location) == []


def test_when_an_object_was_written_whatever_the_backend_calls_it() -> None:
    """A datetime, a number or an ISO string under any backend's field name; 0 if none."""
    moment = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    assert created({"LastModified": moment}) == moment.timestamp()
    assert created({"mtime": 12.5}) == 12.5
    assert created({"updated": "2026-03-04T05:06:07Z"}) == moment.timestamp()
    assert created({"timeCreated": "not a time", "size": 3}) == 0.0
    assert created({"mtime": True}) == 0.0  # (a flag, not a time)
