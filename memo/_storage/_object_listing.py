"""What an object store's listing says: which objects are entries, each with its payload
object, size and the time it was written.

A listing is fsspec's ``ls(detail=True)``: one dict per object, whose fields differ by
backend. An entry is a ``<name>-<key>.memo`` object, its payload (if any) the object of the
same stem with a payload suffix; every other object (leases, a user's files) is not an entry.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._backend import SUFFIX, Listed, is_part, split_name

__all__ = ["created", "entries_in"]


def entries_in(
    items: Iterable[Mapping[str, Any]],
    name: str | None,
    location: Callable[[str, str, str], str],
) -> list[Listed]:
    """The entries among a listing's ``items`` (of function ``name``, or all); ``location``
    gives an entry's URL (or its part's) from its name, key and suffix. "Last used" is when
    each was written: objects have no last-use time."""
    records, payloads = [], {}
    for item in items:
        if item.get("type") != "file":
            continue
        named = split_name(str(item["name"]).rpartition("/")[2])
        if named is None:
            continue
        entry_name, key, suffix = named
        if suffix == SUFFIX:
            records.append((entry_name, key, item))
        elif is_part(suffix):
            payloads[f"{entry_name}-{key}"] = (suffix, int(item.get("size") or 0))
    found = []
    for entry_name, key, item in records:
        if name is None or entry_name == name:
            written = created(item)
            size, payload = int(item.get("size") or 0), None
            part = payloads.get(f"{entry_name}-{key}")
            if part is not None:
                size += part[1]
                payload = location(entry_name, key, part[0])
            url = location(entry_name, key, SUFFIX)
            found.append(Listed(written, size, written, entry_name, key, url, None, payload))
    return found


def created(item: Mapping[str, Any]) -> float:
    """When an object was written, from whatever its backend's listing calls it (0 if it
    says nothing)."""
    for field in ("LastModified", "mtime", "created", "last_modified", "updated", "timeCreated"):
        value = item.get(field)
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0
