"""Chunks: a payload's buffers read as one byte string, sliced and read like the bytes joined."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memo._storage._chunks import Chunks

_buffers = st.lists(st.binary(max_size=40), max_size=6)
_bounds = st.integers(min_value=-60, max_value=260)


@given(_buffers, _bounds, _bounds)
def test_a_slice_holds_what_the_joined_bytes_slice_holds(
    buffers: list[bytes], start: int, stop: int
) -> None:
    """Any slice (of a slice) has the length and bytes of the same slice of the joined bytes."""
    whole = b"".join(buffers)
    chunks = Chunks(buffers)
    assert len(chunks) == len(whole)
    assert chunks.tobytes() == whole
    window = chunks[start:stop]
    assert len(window) == len(whole[start:stop])
    assert window.tobytes() == whole[start:stop]
    inner = window[1:-1]
    assert inner.tobytes() == whole[start:stop][1:-1]


@given(_buffers, st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=12))
def test_reads_of_any_size_give_the_bytes_in_order(buffers: list[bytes], sizes: list[int]) -> None:
    """Reads of any sizes, then the rest, give the joined bytes in order and then nothing."""
    whole = b"".join(buffers)
    chunks = Chunks(buffers)
    got = b"".join(chunks.read(size) for size in sizes) + chunks.read()
    assert got == whole
    assert chunks.tell() == len(whole)
    assert chunks.read(10) == b""
    assert chunks.read() == b""


@given(_buffers, st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=50))
def test_seek_then_read_matches_a_bytesio(buffers: list[bytes], target: int, size: int) -> None:
    """Seeking (from the start, the position or the end) then reading, a slice reads what a
    BytesIO of the same bytes reads."""
    whole = b"".join(buffers)[2:]
    for whence, offset in (
        (io.SEEK_SET, target),
        (io.SEEK_CUR, target - 1),
        (io.SEEK_END, target - len(whole)),
    ):
        chunks, reference = Chunks(buffers)[2:], io.BytesIO(whole)
        chunks.seek(1), reference.seek(1)
        assert chunks.seek(offset, whence) == reference.seek(offset, whence) == target
        assert chunks.read(size) == reference.read(size)
        assert chunks.tell() == reference.tell()


def test_a_slice_reads_from_its_own_start() -> None:
    """A slice has its own read position: reading the whole does not move its slices."""
    chunks = Chunks([b"abc", b"def"])
    assert chunks.read() == b"abcdef"
    window = chunks[2:5]
    assert window.tell() == 0
    assert window.read() == b"cde"


def test_an_arrays_memory_is_read_without_a_copy_of_it() -> None:
    """An array's memory (any dtype) is read in place: a change to the array shows."""
    array = np.arange(4, dtype=np.int32)
    chunks = Chunks([b"head", array.data])
    assert len(chunks) == 4 + 16
    array[0] = 7
    assert chunks[4:8].tobytes() == np.int32(7).tobytes()


def test_what_cannot_be_done_says_so() -> None:
    """Indexing, stepped slices, negative seeks and reads once closed are refused."""
    chunks = Chunks([b"abc"])
    with pytest.raises(TypeError, match="sliced"):
        chunks[0]  # type: ignore[index]
    with pytest.raises(ValueError, match="step"):
        chunks[::2]
    with pytest.raises(ValueError, match="negative"):
        chunks.seek(-1)
    with pytest.raises(ValueError, match="whence"):
        chunks.seek(0, 7)
    assert chunks.readable()
    assert chunks.seekable()
    assert not chunks.writable()
    chunks.close()
    with pytest.raises(ValueError, match="closed"):
        chunks.read(1)
