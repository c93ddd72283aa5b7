"""Hashing encodings: a call's key digest and one value's digest agree with encode()."""

from __future__ import annotations

from typing import Any

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from memo._keys._canonical import encode
from memo._keys._digest import stream_digest, value_digest

_ATOMS = (
    st.text()
    | st.integers()
    | st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2)
    | st.integers(min_value=2**63 - 2, max_value=2**63 + 2)
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.none()
    | st.binary()
)


@settings(max_examples=300)
@given(st.lists(st.recursive(_ATOMS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)))
def test_streamed_digest_equals_the_digest_of_the_encoding(values: list[Any]) -> None:
    """The key's digest (atoms encoded inline on the hit path) equals that of encode()."""
    labels = [f"p{i}".encode() for i in range(len(values))]
    expected = b"prefix" + b"".join(
        label + encode(value) for label, value in zip(labels, values, strict=True)
    )
    assert stream_digest(b"prefix", labels, values) == xxhash.xxh3_128_hexdigest(expected)


@settings(max_examples=300)
@given(st.recursive(_ATOMS, lambda inner: st.lists(inner, max_size=3), max_leaves=6))
def test_value_digest_is_the_digest_of_the_encoding(value: Any) -> None:
    """One value's digest (atoms inline, for the per-argument digests) is that of encode()."""
    assert value_digest(value) == xxhash.xxh3_128_hexdigest(encode(value))
    assert value_digest(value) == stream_digest(b"", (b"",), (value,))
