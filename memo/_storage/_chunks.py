"""A payload's buffers read as one byte string without joining them: ``Chunks``.

A large result's payload is several buffers (an array's header and its memory; a pickle's
out-of-band buffers). A local store writes them one after the other. An object store needs
one request body: joining the buffers into one ``bytes`` copies the whole result (a 10 GB
array needs 10 GB more to be stored), and s3fs then copies each part again as it slices its
multipart upload. ``Chunks`` is both what s3fs slices (``len`` and ``[start:stop]``, giving
more ``Chunks`` over the same buffers) and what botocore sends (a seekable file it reads
part by part), so the bytes go from the result's own memory to the socket.
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Iterable
from typing import Any

__all__ = ["Chunks"]


class Chunks(io.RawIOBase):
    """Read-only, seekable bytes over a sequence of buffers, sliceable like ``bytes``
    (a slice shares the buffers: nothing is copied until read)."""

    def __init__(self, buffers: Iterable[Any]) -> None:
        super().__init__()
        views = [memoryview(buffer) for buffer in buffers]
        self._views = [view if view.format == "B" else view.cast("B") for view in views]
        self._ends = list(itertools.accumulate(view.nbytes for view in self._views))
        self._start = 0
        self._stop = self._ends[-1] if self._ends else 0
        self._at = 0  # the read position, from _start

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, index: slice) -> Chunks:
        if not isinstance(index, slice):
            raise TypeError("Chunks can be sliced, not indexed")
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("Chunks slices take every byte (no step)")
        window = Chunks(())
        window._views, window._ends = self._views, self._ends
        window._start = self._start + start
        window._stop = self._start + max(start, stop)
        return window

    def tobytes(self) -> bytes:
        """The bytes, joined (one copy)."""
        return b"".join(self._pieces(self._start, self._stop))

    def _pieces(self, start: int, stop: int) -> Iterable[memoryview]:
        """The buffers' views between two offsets, in order."""
        index = bisect.bisect_right(self._ends, start)
        while start < stop:
            end = self._ends[index]
            view = self._views[index]
            begin = end - view.nbytes
            piece = view[start - begin : min(stop, end) - begin]
            if piece.nbytes:
                yield piece
                start += piece.nbytes
            index += 1

    # --- a file, for request bodies ------------------------------------------------------

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Seekable: a retried request reads its body again from the start."""
        return True

    def tell(self) -> int:
        """The read position."""
        self._check_open()
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position (as a file's ``seek``) and return it."""
        self._check_open()
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self)}
        if whence not in bases:
            raise ValueError(f"invalid whence ({whence})")
        position = bases[whence] + offset
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._at = position
        return position

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` from the read position; the count read (0 at the end)."""
        self._check_open()
        out = memoryview(buffer).cast("B")
        start = min(self._start + self._at, self._stop)
        written = 0
        for piece in self._pieces(start, min(self._stop, start + out.nbytes)):
            out[written : written + piece.nbytes] = piece
            written += piece.nbytes
        self._at += written
        return written

    def readall(self) -> bytes:
        """The rest, in one read (io's default reads it 8 KiB at a time)."""
        self._check_open()
        rest = self[self._at :].tobytes()
        self._at = max(self._at, len(self))
        return rest

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed Chunks")
