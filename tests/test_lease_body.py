"""What a key lease object says, and when a takeover marker was left behind by its taker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memo._storage import _lease_body as lease_body

_LEASE = "bucket/cache/.leases/f-0123456789abcdef0123456789abcdef.lease"


def test_a_held_and_a_done_lease_say_who_holds_them() -> None:
    """A held lease gives its holder and length; a done one its holder and that it is done."""
    held = lease_body.body("host:1:ab", 2, 30.0)
    done = lease_body.done_body("host:1:ab")
    assert lease_body.holder(held) == lease_body.holder(done) == "host:1:ab"
    assert lease_body.length(held, 60.0) == 30.0
    assert not lease_body.is_done(held)
    assert lease_body.is_done(done)
    assert lease_body.length(done, 60.0) == 60.0  # (a done lease has no length of its own)


@given(st.binary(max_size=30))
def test_any_bytes_read_as_a_lease_never_raise(data: bytes) -> None:
    """A damaged or foreign object read as a lease names no holder rather than failing."""
    lease_body.holder(data)
    assert lease_body.length(data, 7.0) > 0
    assert isinstance(lease_body.is_done(data), bool)


def test_each_write_of_a_lease_has_its_own_marker() -> None:
    """A marker names its lease and the very write of it seen: each beat has another."""
    first = lease_body.marker_path(_LEASE, lease_body.body("a", 1, 60.0))
    second = lease_body.marker_path(_LEASE, lease_body.body("a", 2, 60.0))
    assert first != second
    assert lease_body.marked_lease(first) == lease_body.marked_lease(second) == _LEASE
    assert lease_body.marked_lease(_LEASE) is None
    assert lease_body.marked_lease("bucket/cache/notes.taken") is None


def test_a_marker_is_left_behind_only_when_old_and_its_taker_does_not_hold_the_lease() -> None:
    """Old and its lease gone, done or another's: left behind; young, or its taker holding the
    lease: not."""
    held = lease_body.body("taker", 5, 10.0)
    others = lease_body.body("someone else", 0, 10.0)
    done = lease_body.done_body("taker")
    assert not lease_body.leftover_marker(b"taker", others, 19.0, 60.0)  # (twice 10 s)
    assert lease_body.leftover_marker(b"taker", others, 21.0, 60.0)
    assert lease_body.leftover_marker(b"taker", done, 121.0, 60.0)
    assert lease_body.leftover_marker(b"taker", None, 121.0, 60.0)
    assert not lease_body.leftover_marker(b"taker", None, 119.0, 60.0)
    assert not lease_body.leftover_marker(b"taker", held, 1000.0, 60.0)
