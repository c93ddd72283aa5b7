"""The building blocks of canonical encodings: fixed-width packers, length-prefixed text,
the per-encoding context (cycle guard, depth, streaming hasher) and the error for values no
rule covers."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import xxhash

__all__ = [
    "NAN",
    "Context",
    "UnencodableError",
    "pack_d",
    "pack_i",
    "pack_q",
    "qualified",
    "tag_d",
    "tag_i",
    "tag_q",
    "text",
]

pack_q = struct.Struct("<Q").pack
pack_i = struct.Struct("<q").pack  # = int.to_bytes(8, "little", signed=True), at half the cost
pack_d = struct.Struct("<d").pack
NAN = b"f" + pack_d(math.nan)
# A type tag and the value's 8 bytes in one call (the atoms of stream_digest, on every call).
tag_q = struct.Struct("<cQ").pack
tag_i = struct.Struct("<cq").pack
tag_d = struct.Struct("<cd").pack


class UnencodableError(Exception):
    """Internal: a value no rule covers; ``path`` says where it sits inside the argument."""

    def __init__(self, value_type: type, reason: str = "") -> None:
        super().__init__(value_type, reason)
        self.value_type = value_type
        self.reason = reason
        self.path: list[str] = []
        self.index = -1

    def where(self) -> str:
        """The location inside the argument, such as ``['model'][2]``, or ``''`` at the top."""
        return "".join(reversed(self.path))


class Context:
    """Per-encoding state: containers being encoded (cycle guard), depth, optional hasher."""

    __slots__ = ("active", "depth", "hasher", "stream")

    def __init__(self, stream: bool = False) -> None:
        self.active: set[int] | None = None  # made at the first container: atoms need none
        self.depth = 0
        self.stream = stream
        self.hasher: Any = None

    def feed(self, out: bytearray, buffer: Any) -> None:
        """Append a (possibly huge) buffer, streaming it into the hasher when hashing."""
        if not self.stream:
            out += buffer
            return
        if self.hasher is None:
            self.hasher = xxhash.xxh3_128()
        self.hasher.update(out)
        out.clear()
        self.hasher.update(buffer)


def qualified(tp: type | Callable[..., Any]) -> bytes:
    """A type's or function's module and qualified name, length-prefixed."""
    name = f"{getattr(tp, '__module__', '?')}:{getattr(tp, '__qualname__', repr(tp))}"
    data = name.encode("utf-8", "surrogatepass")
    return pack_q(len(data)) + data


def text(value: str) -> bytes:
    """A string's UTF-8 bytes, length-prefixed."""
    data = value.encode("utf-8", "surrogatepass")
    return pack_q(len(data)) + data
