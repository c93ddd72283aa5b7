"""The entry format: checks before deserializing, and HMAC signing with key rotation."""

from __future__ import annotations

import hmac
import json
import time
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import memo
from memo._storage._format import (
    SIGNED,
    SIGNED_BODY,
    DamagedEntryError,
    metadata_line,
    pack,
    parse_header,
    small_entry,
    unpack,
)
from memo._storage._signing import hmac_sha256

KEY = bytes(range(16))
SECRET = b"a-secret-key-of-some-length"
OLD = b"the-previous-secret-key"


def _entry(payload: bytes, secret: bytes | None = None) -> bytes:
    chunks, _ = pack(b'{"m":1}', KEY, "pickle", [payload], secret)
    return b"".join(bytes(memoryview(chunk)) for chunk in chunks)


def test_round_trip_and_fingerprint() -> None:
    """pack then unpack gives the payload back, its fingerprint and creation time."""
    data = _entry(b"payload")
    header, payload = unpack(data, KEY)
    assert bytes(payload) == b"payload"
    assert header.serializer == "pickle"
    assert header.created_ns > 0
    assert len(header.fingerprint) == 16
    assert unpack(_entry(b"payload"), KEY)[0].fingerprint == header.fingerprint


def test_multi_chunk_payload_is_identical_to_joined() -> None:
    """A payload given as many buffers has the same fingerprint as the joined bytes."""
    _, fp_one = pack(b"{}", KEY, "pickle", [b"abcdef" * 1000])
    pieces = [b"abc", b"def" + b"abcdef" * 998 + b"abc", b"", b"def"]
    _, fp_many = pack(b"{}", KEY, "pickle", pieces)
    assert b"".join(pieces) == b"abcdef" * 1000
    assert fp_one == fp_many


def test_wrong_key_and_every_single_byte_change_are_detected() -> None:
    """Any changed byte (or another key) fails before the payload is used."""
    data = _entry(b"some payload bytes")
    with pytest.raises(DamagedEntryError):
        unpack(data, bytes(16))
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        with pytest.raises(DamagedEntryError):
            unpack(bytes(damaged), KEY)


def test_signatures_verify_with_current_and_old_keys() -> None:
    """A signed entry verifies with its key, also when listed as an old key."""
    data = _entry(b"value", SECRET)
    unpack(data, KEY, [SECRET])
    unpack(data, KEY, [b"the-new-key-after-rotation", SECRET])
    with pytest.raises(DamagedEntryError, match="signature"):
        unpack(data, KEY, [OLD])
    with pytest.raises(DamagedEntryError, match="not signed"):
        unpack(_entry(b"value"), KEY, [SECRET])


def _resealed(entry: bytes, *, metadata: bytes | None = None, flags: int | None = None) -> bytes:
    """``entry`` with its metadata line or header flags replaced and its xxh3 check made
    right again: what someone without the secret can do."""
    line, rest = entry.split(b"\n", 1)
    if metadata is not None:
        assert len(metadata) == len(line)  # the payload stays where it was
        line = metadata
    if flags is not None:
        rest = rest[:5] + bytes([flags]) + rest[6:]
    data = line + b"\n" + rest
    header = parse_header(data, len(data), KEY)
    check_at = header.offset + header.length
    return data[:check_at] + xxhash.xxh3_128_digest(data[: header.offset]) + data[check_at + 16 :]


def test_signature_covers_header_and_payload_not_the_metadata_line() -> None:
    """A signed entry whose metadata line is rewritten (check made right) still verifies, but
    one whose header flags change does not; an entry signed over its whole head (before
    SIGNED_BODY) still verifies."""
    genuine = _entry(b"value", SECRET)
    relabelled = _resealed(genuine, metadata=b'{"m":2}')
    assert unpack(relabelled, KEY, [SECRET])[0].signed
    for flags in (SIGNED, SIGNED | SIGNED_BODY | 8):  # (8: a flag no entry uses)
        with pytest.raises(DamagedEntryError, match="signature"):
            unpack(_resealed(genuine, flags=flags), KEY, [SECRET])
    # The earlier layout: flags SIGNED only, the HMAC over metadata, header and payload.
    older = _resealed(genuine, flags=SIGNED)
    header = unpack(older, KEY)[0]
    end = header.offset + header.length
    older = older[: end + 16] + hmac_sha256(SECRET, older[:end])
    assert unpack(older, KEY, [SECRET])[0].signed
    with pytest.raises(DamagedEntryError, match="signature"):
        unpack(_resealed(older, metadata=b'{"m":2}'), KEY, [SECRET])


def test_forged_payload_with_matching_digests_is_rejected() -> None:
    """Someone who rewrites the payload and recomputes the xxh3 digests cannot pass signing."""
    genuine = _entry(b"harmless", SECRET)
    unpack(genuine, KEY, [SECRET])
    forged = _entry(b"malicious", b"attacker-does-not-know-the-key")
    with pytest.raises(DamagedEntryError, match="signature"):
        unpack(forged, KEY, [SECRET])
    assert unpack(forged, KEY)[0].signed  # structurally fine: only the signature tells


def test_signed_cache_rejects_unsigned_and_foreign_entries(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MEMO_SECRET_KEY set, entries not signed by an accepted key are never loaded."""
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x * 2

    unsigned = memo.decorate(body, cache_path=cache_dir)
    unsigned(1)
    monkeypatch.setenv("MEMO_SECRET_KEY", SECRET.decode())
    signed = memo.decorate(body, cache_path=cache_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert signed(1) == 2
    assert calls == [1, 1]
    assert any("not signed" in str(w.message) for w in caught)
    assert signed(1) == 2
    assert calls == [1, 1]


def test_key_rotation_through_environment(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries signed with an old key still load when it is listed after the new one."""
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x

    monkeypatch.setenv("MEMO_SECRET_KEY", OLD.decode())
    memo.decorate(body, cache_path=cache_dir)(5)
    monkeypatch.setenv("MEMO_SECRET_KEY", f"{SECRET.decode()},{OLD.decode()}")
    rotated = memo.decorate(body, cache_path=cache_dir)
    assert rotated(5) == 5
    assert calls == [5]
    monkeypatch.setenv("MEMO_SECRET_KEY", SECRET.decode())
    dropped = memo.decorate(body, cache_path=cache_dir)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert dropped(5) == 5
    assert calls == [5, 5]


def test_secret_key_option(cache_dir: Path) -> None:
    """secret_key= signs; a short key is refused at decoration time."""

    @memo.cache(cache_path=cache_dir, secret_key=SECRET)
    def f(x: int) -> int:
        return x

    f(1)
    assert f(1) == 1
    assert f.hits == 1
    data = Path(f.entries()[0]["path"]).read_bytes()
    unpack(data, bytes.fromhex(f.key(1)), [SECRET])
    bad: dict[str, Any] = {"secret_key": "short"}
    with pytest.raises(ValueError, match="16"):
        memo.cache(**bad)(lambda x: x)


@given(secret=st.binary(max_size=200), data=st.binary(max_size=3000))
def test_hmac_with_kept_pads_equals_the_standard_one(secret: bytes, data: bytes) -> None:
    """The signing HMAC (pads kept per secret) equals hmac.digest, for keys of any length."""
    assert hmac_sha256(secret, data) == hmac.digest(secret, data, "sha256")
    assert hmac_sha256(secret, memoryview(data)) == hmac.digest(secret, data, "sha256")
    half = len(data) // 2
    assert hmac_sha256(secret, data[:half], data[half:]) == hmac.digest(secret, data, "sha256")


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(st.text(), _JSON_VALUES, max_size=4),
    st.dictionaries(st.text(), _JSON_VALUES, max_size=4),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    st.integers(min_value=0, max_value=2**63),
)
def test_metadata_line_is_the_json_object_of_its_members(
    fixed: dict[str, Any], members: dict[str, Any], serializer: str, size: int
) -> None:
    """The metadata line built as text is one line of JSON holding every member, in order."""
    fixed_text = json.dumps(fixed, separators=(",", ":"))[1:-1]
    members_text = json.dumps(members, separators=(",", ":"))[1:-1]
    line = metadata_line(members_text, serializer, size, fixed_text)
    assert b"\n" not in line
    expected = {**fixed, **members, "serializer": serializer, "payload_bytes": size}
    assert json.loads(line) == expected
    assert list(json.loads(line)) == list(expected)


def test_a_metadata_line_over_the_format_limit_is_refused_before_writing() -> None:
    """metadata_line refuses a line longer than the format allows, naming add_metadata."""
    members = '"user":{"blob":"' + "x" * 70_000 + '"}'
    with pytest.raises(ValueError, match="add_metadata"):
        metadata_line(members, "pickle", 10)
    assert len(metadata_line('"user":{"blob":"x"}', "pickle", 10)) < 100


def test_metadata_with_a_newline_is_refused_before_writing() -> None:
    """A metadata line holding a newline (it would end the line early) is refused."""
    with pytest.raises(ValueError, match="one line"):
        metadata_line('"user":"a\nb"', "pickle", 4)
    with pytest.raises(ValueError, match="one line"):
        metadata_line('"n":1', "pickle", 4, '"fixed":"a\nb"')


@given(
    st.dictionaries(st.text(), _JSON_VALUES, min_size=1, max_size=4),
    st.dictionaries(st.text(), _JSON_VALUES, min_size=1, max_size=4),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    st.binary(max_size=300),
)
def test_a_small_entry_made_in_one_step_is_the_packed_one(
    fixed: dict[str, Any], members: dict[str, Any], serializer: str, data: bytes
) -> None:
    """small_entry gives the bytes and fingerprint metadata_line and pack give (one chunk or
    several), so the store's usual entry is the general format, and reads back."""
    fixed_text = json.dumps(fixed, separators=(",", ":"))[1:-1]
    members_text = json.dumps(members, separators=(",", ":"))[1:-1]
    with mock.patch.object(time, "time_ns", return_value=1_700_000_000_123_456_789):
        entry, fingerprint = small_entry(members_text, fixed_text, serializer, KEY, data)
        line = metadata_line(members_text, serializer, len(data), fixed_text)
        one, fp_one = pack(line, KEY, serializer, [data])
        half = len(data) // 2
        several, fp_several = pack(line, KEY, serializer, [data[:half], data[half:]])
    assert entry == b"".join(one) == b"".join(bytes(chunk) for chunk in several)
    assert fingerprint == fp_one == fp_several
    header, payload = unpack(entry, KEY)
    assert (header.serializer, bytes(payload), header.created_ns) == (
        serializer,
        data,
        1_700_000_000_123_456_789,
    )


def test_a_small_entry_refuses_the_metadata_metadata_line_refuses() -> None:
    """small_entry raises metadata_line's errors: a newline, or a line too long."""
    cases = {'"user":"a\nb"': "one line", '"user":{"blob":"' + "x" * 70_000 + '"}': "limit"}
    for members, says in cases.items():
        with pytest.raises(ValueError, match=says) as general:
            metadata_line(members, "pickle", 4, '"f":1')
        with pytest.raises(ValueError, match=says) as small:
            small_entry(members, '"f":1', "pickle", KEY, b"data")
        assert str(small.value) == str(general.value)
