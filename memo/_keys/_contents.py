"""Digests of file contents, remembered while a file is unchanged, and the ``File`` argument."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import xxhash

from ._bytes import Context, text
from ._canonical import add_plugin

__all__ = ["File", "hash_contents"]

_StatKey = tuple[int, int, int, int, int]
_known: dict[tuple[str, int], tuple[_StatKey, str]] = {}
_known_lock = threading.Lock()
_MAX_REMEMBERED = 100_000


def _stat_key(st: os.stat_result) -> _StatKey:
    # ctime_ns changes on every write and cannot be set back by the user, unlike mtime.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def hash_contents(path: str | os.PathLike[str], chunk_size: int = 65536) -> str:
    """Return the xxh3_128 hex digest of the contents of the file at ``path``.

    The digest of a file whose size, modification and change times and inode are unchanged is
    remembered for the process, so checking a large file a second time costs one ``stat``.
    Raises ``FileNotFoundError`` (and the other ``OSError`` s) as ``open`` would.
    """
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    name = os.fspath(path)
    with open(name, "rb") as handle:
        before = _stat_key(os.fstat(handle.fileno()))
        memo_key = (os.path.abspath(name), chunk_size)
        with _known_lock:
            known = _known.get(memo_key)
        if known is not None and known[0] == before:
            return known[1]
        hasher = xxhash.xxh3_128()
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            hasher.update(view[:count])
        after = _stat_key(os.fstat(handle.fileno()))
    digest = hasher.hexdigest()
    if after == before:  # written to while we read: do not remember a torn digest
        with _known_lock:
            if len(_known) >= _MAX_REMEMBERED:
                _known.clear()
            _known[memo_key] = (after, digest)
    return digest


class File(os.PathLike[str]):
    """A path argument whose cache key is the file's contents, not its name.

    ``f(memo.File("data.csv"))`` recomputes when the file's bytes change and hits when the same
    bytes are found under another name. It behaves as a path inside the function (``open``,
    ``Path(...)``, pandas readers all accept it).
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"memo.File({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("memo.File", self.path))

    def digest(self) -> str:
        """The xxh3_128 hex digest of the file's current contents."""
        return hash_contents(self.path)


def _encode_file(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"@"
    out += text(obj.digest())


def _file_rule(tp: type) -> Any:
    return _encode_file if issubclass(tp, File) else None


add_plugin(_file_rule)
