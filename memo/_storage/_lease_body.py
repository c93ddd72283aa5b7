"""What a key lease object says: its holder, heartbeat and length, or that it is done, and
the takeover markers named after one lease (``_leases`` is the protocol that writes them).

A lease is a small JSON object: ``{"holder": token, "beat": n, "seconds": length}`` while its
holder computes, ``{"holder": token, "done": true}`` once the entry is stored. A waiter that
takes over a lease first creates ``<lease>.<fingerprint of what it saw>.taken`` holding its
own token, create-only, so of the waiters that saw one lease exactly one takes it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "body",
    "done_body",
    "fingerprint",
    "holder",
    "is_done",
    "leftover_marker",
    "length",
    "marked_lease",
    "marker_path",
]

_MARKER = ".taken"


def body(token: str, beat: int, seconds: float) -> bytes:
    """A held lease: its holder, its heartbeat count and its length."""
    return json.dumps({"holder": token, "beat": beat, "seconds": seconds}).encode()


def done_body(token: str) -> bytes:
    """A lease whose entry is stored."""
    return json.dumps({"holder": token, "done": True}).encode()


def _parsed(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def is_done(data: bytes) -> bool:
    """Whether a lease says its entry is stored."""
    return _parsed(data).get("done") is True


def holder(data: bytes) -> Any:
    """The token of a lease's holder (None if it names none)."""
    return _parsed(data).get("holder")


def length(data: bytes, default: float) -> float:
    """The length its holder gave a lease (so waiters with other settings agree)."""
    seconds = _parsed(data).get("seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return float(seconds)
    return default


def fingerprint(data: bytes) -> str:
    """A short digest of a lease's bytes: each write of a lease (holder, beat) has its own."""
    import xxhash

    return str(xxhash.xxh3_64_hexdigest(data))


def marker_path(lease: str, seen: bytes) -> str:
    """The takeover marker of the lease at path ``lease`` as it was ``seen``."""
    return f"{lease}.{fingerprint(seen)}{_MARKER}"


def marked_lease(path: str) -> str | None:
    """The lease a takeover marker's path names, or None if ``path`` is no marker."""
    if not path.endswith(_MARKER):
        return None
    lease, dot, _ = path.removesuffix(_MARKER).rpartition(".")
    return lease if dot and lease.endswith(".lease") else None


def leftover_marker(marker: bytes | None, lease: bytes | None, age: float, default: float) -> bool:
    """Whether a takeover marker ``age`` seconds old (its bytes: the taker's token) was left
    behind by a taker that died: older than twice its lease's length, and its taker does not
    hold the lease now (gone, done, or another holder's). A live taker removes its own marker
    when it releases the lease; removing one left behind lets waiters take the lease over
    again (a taker that died between its marker and its lease write blocked them)."""
    if age <= 2 * (default if lease is None else length(lease, default)):
        return False
    if lease is None or is_done(lease) or marker is None:
        return True
    return bool(holder(lease) != marker.decode("utf-8", "replace"))
