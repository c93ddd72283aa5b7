"""Code written out per kind of call: the same key bytes as the general path."""

from __future__ import annotations

import math
from typing import Any

import xxhash
from hypothesis import given
from hypothesis import strategies as st

from memo._keys._bytes import text
from memo._keys._digest import stream_digest
from memo._keys._written import atom_default, atoms_encoder

_ATOM_VALUES = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.booleans(),
    st.none(),
)


_OF_KIND = {
    int: st.integers(min_value=-(2**64), max_value=2**64),
    float: st.floats(allow_nan=True, allow_infinity=True),
    str: st.text(),
}


def _fits(kind: type, value: Any) -> bool:
    if kind is int:
        return type(value) is int and -(2**63) <= value < 2**63
    if kind is float:
        return type(value) is float and value == value
    return type(value) is str


@given(st.lists(st.sampled_from([int, float, str]), min_size=1, max_size=5), st.data())
def test_the_atoms_encoder_gives_exactly_what_stream_digest_hashes(
    kinds: list[type], data: st.DataObject
) -> None:
    """Written out for some kinds, the encoder's bytes hash to stream_digest's key for values
    of those kinds (64-bit ints, non-NaN floats, any strings), and it declines anything else."""
    values: list[Any] = [data.draw(_OF_KIND[kind] | _ATOM_VALUES) for kind in kinds]
    prefix = data.draw(st.binary(max_size=40))
    labels = [text(f"p{i}") for i in range(len(kinds))]
    # Parameters' defaults, encoded once: some values are the default object itself.
    defaults: list[Any] = [data.draw(_OF_KIND[kind] | _ATOM_VALUES) for kind in kinds]
    for i in range(len(kinds)):
        if data.draw(st.booleans()):
            values[i] = defaults[i]
    encoder = atoms_encoder(labels, kinds, defaults if data.draw(st.booleans()) else ())
    assert encoder is not None
    encoded = encoder(prefix, values)
    fits = all(_fits(kind, value) for kind, value in zip(kinds, values, strict=True))
    assert (encoded is not None) == fits
    if encoded is not None:
        assert xxhash.xxh3_128_hexdigest(encoded) == stream_digest(prefix, labels, values)


def test_a_default_is_encoded_once_and_only_when_it_is_of_the_kind() -> None:
    """A default of the position's kind is used as is when the value is that very object; an
    equal value that is another object, or a default of another kind, is encoded anew."""
    labels = [text("a"), text("b")]
    big = 2**70
    encoder = atoms_encoder(labels, [float, int], [2.5, big])
    assert encoder is not None
    assert atom_default(float, 2.5)
    assert [atom_default(int, big), atom_default(float, math.nan), atom_default(str, 1)] == [
        False,
        False,
        False,
    ]
    for values in ([2.5, 1], [float("2.5"), -1], [0.5, 1]):
        encoded = encoder(b"p", values)
        assert encoded is not None
        assert xxhash.xxh3_128_hexdigest(encoded) == stream_digest(b"p", labels, values)
    assert encoder(b"p", [2.5, big]) is None  # not a 64-bit int: the general path


def test_the_atoms_encoder_is_only_for_numbers_and_strings() -> None:
    """Other kinds (bool, None, containers) and no arguments at all get no encoder."""
    refused: list[list[type]] = [[bool], [int, type(None)], [list], []]
    for kinds in refused:
        assert atoms_encoder([text("x")] * len(kinds), kinds) is None
