"""``memo.Store``: look into a cache directory and maintain it (list, find, verify, prune).

Listing works from file names and ``stat`` alone: every entry's file name holds its function's
name and key, its modification time is when it was created and its access time when it was
last used. So listing 100,000 entries reads no file; an entry's metadata line is read only
when asked for. Reading an entry here never moves its access time, since least-recently-used
eviction goes by it.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from ._config import default_cache_dir, max_size_from_env, parse_duration, parse_size
from ._exceptions import ConfigError, MemoError
from ._explain import ABSENT, changed_arguments
from ._storage import _files
from ._storage._format import MAX_METADATA, parse_metadata
from ._verify import Problem, rmtree, verify_directory

__all__ = ["EntryInfo", "EntryNotFoundError", "FunctionInfo", "Problem", "Store", "StoreStats"]

_KEY = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-f]{1,32}")
_O_NOATIME = getattr(os, "O_NOATIME", 0)
# A writer moves a Cacheable's directory into place just before publishing its entry file,
# so a young directory without an entry is most likely being written, not orphaned.
_ORPHAN_AFTER = 3600.0
# An entry as scanned, before any Path is made (making 100,000 of them takes a second):
# last used, bytes, created, name, key, path, whether it has a directory.
_Raw = tuple[float, int, float, str, str, str, bool]
_COMPONENTS = ("function", "code", "version", "python", "key_format")


class EntryNotFoundError(MemoError, KeyError):
    """No entry matches a key or key prefix, or a prefix matches several (``candidates``)."""

    def __init__(self, message: str, candidates: Sequence[EntryInfo] = ()) -> None:
        super().__init__(message)
        self.candidates = list(candidates)

    def __str__(self) -> str:
        # KeyError would quote the message; this one is meant to be read.
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """One stored entry, as its directory listing shows it (no file is read to make it).

    ``bytes`` counts the entry file and its directory's files; ``created`` and ``last_used``
    are Unix times. ``directory`` is the entry's directory (``Cacheable`` results) or None.
    """

    name: str
    key: str
    path: Path
    bytes: int
    created: float
    last_used: float
    directory: Path | None = None

    def metadata(self) -> dict[str, Any] | None:
        """The entry's metadata (its first line, read now), or None if it cannot be read."""
        try:
            return parse_metadata(bytes(_files.read_quietly(str(self.path), MAX_METADATA + 1)))
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """The totals of one function name's entries (times are Unix times)."""

    name: str
    entries: int
    bytes: int
    oldest: float
    newest: float
    last_used: float


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals of a store, its functions (largest first) and its budget (``MEMO_MAX_SIZE``)."""

    root: Path
    entries: int
    bytes: int
    functions: list[FunctionInfo]
    max_size: int | None


class Store:
    """A cache directory, for looking into and maintaining it (``memo ls`` and friends).

    ``Store(path)`` takes the directory memoized functions were given as ``cache_path`` (a
    ``file://`` URL works too); it must exist. Function names are those in the file names
    (``simulate``, ``Model.predict``); keys may be given as any unique prefix. A remote URL
    (``s3://bucket/prefix``) gives a store listing and reading that location through fsspec.
    """

    def __new__(cls, path: str | os.PathLike[str]) -> Store:
        """A ``Store``, or for a remote URL the remote variant (``_storage._remote``)."""
        if cls is Store and isinstance(path, str) and "://" in path:
            from ._storage._remote import RemoteCatalog, is_remote

            if is_remote(path):
                return object.__new__(RemoteCatalog)
        return object.__new__(cls)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if "://" in text:
            url = urlparse(text)
            if url.scheme != "file" or url.netloc not in ("", "localhost"):
                raise ConfigError(
                    f"{text!r}: only local directories are supported for now, not {url.scheme}://"
                )
            text = url2pathname(url.path)
        root = Path(text).expanduser().absolute()
        if not root.is_dir():
            if root.exists():
                raise NotADirectoryError(f"{root} is not a directory")
            raise FileNotFoundError(f"no cache directory at {root}")
        self._root = root

    @classmethod
    def default(cls) -> Store:
        """The store memoized functions use by default (``MEMO_CACHE_DIR``, else the user
        cache directory)."""
        configured = os.environ.get("MEMO_CACHE_DIR", "").strip()
        if "://" in configured:  # a URL, which default_cache_dir would take for a path
            return cls(configured)
        return cls(default_cache_dir())

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self._root

    def __repr__(self) -> str:
        return f"memo.Store({str(self._root)!r})"

    # --- listing -------------------------------------------------------------------------

    def functions(self) -> list[FunctionInfo]:
        """Per function name: number of entries, bytes, oldest and newest, last use; by name."""
        totals: dict[str, list[float]] = {}  # entries, bytes, oldest, newest, last used
        for last_used, size, created, name, *_ in self._scan(None):
            total = totals.get(name)
            if total is None:
                totals[name] = [1, size, created, created, last_used]
            else:
                total[0] += 1
                total[1] += size
                total[2] = min(total[2], created)
                total[3] = max(total[3], created)
                total[4] = max(total[4], last_used)
        return [
            FunctionInfo(name, int(count), int(size), oldest, newest, last_used)
            for name, (count, size, oldest, newest, last_used) in sorted(totals.items())
        ]

    def entries(self, function: str | None = None) -> list[EntryInfo]:
        """Every entry, or those of one function name, newest first."""
        found = sorted(self._scan(function), key=lambda raw: raw[2], reverse=True)
        return [self._entry(raw) for raw in found]

    def find(self, key: str) -> EntryInfo:
        """The entry whose key is, or starts with, ``key`` (also ``name-key`` or a file name).

        Raises ``EntryNotFoundError`` if none or several match.
        """
        text = Path(key.strip()).name.removesuffix(".memo")
        name, _, prefix = text.rpartition("-")
        prefix = prefix.lower()
        if not _HEX.fullmatch(prefix):
            raise EntryNotFoundError(f"{key!r} is not a key (up to 32 hexadecimal digits)")
        found = self._matching(name, prefix)
        if len(found) == 1:
            return found[0]
        if not found:
            raise EntryNotFoundError(f"no entry with key {key!r} in {self._root}")
        shown = ", ".join(f"{entry.name}-{entry.key[:12]}" for entry in found[:3])
        more = ", ..." if len(found) > 3 else ""
        raise EntryNotFoundError(
            f"key prefix {key!r} matches {len(found)} entries ({shown}{more}); give more digits",
            found,
        )

    def stats(self) -> StoreStats:
        """Totals, each function's share (largest first) and the ``MEMO_MAX_SIZE`` budget."""
        functions = sorted(self.functions(), key=lambda info: (-info.bytes, info.name))
        return StoreStats(
            root=self._root,
            entries=sum(info.entries for info in functions),
            bytes=sum(info.bytes for info in functions),
            functions=functions,
            max_size=max_size_from_env(),
        )

    def diff(self, key1: str, key2: str) -> list[tuple[str, Any, Any]]:
        """What sets two entries' keys apart: ``(component, value1, value2)`` for each of
        function, code, version, python, key format, each argument (``"argument NAME"``,
        shown by its summary), extra key and serializer that differs."""
        first, second = _metadata_of(self.find(key1)), _metadata_of(self.find(key2))
        differences: list[tuple[str, Any, Any]] = []
        parts1, parts2 = first.get("components") or {}, second.get("components") or {}
        for part in _COMPONENTS:
            if parts1.get(part) != parts2.get(part):
                differences.append((part, parts1.get(part), parts2.get(part)))
        digests1 = first.get("argument_digests") or {}
        digests2 = second.get("argument_digests") or {}
        for param, shown1, shown2 in changed_arguments(first, second):
            value1 = None if shown1 is ABSENT else shown1
            value2 = None if shown2 is ABSENT else shown2
            digest1, digest2 = digests1.get(param), digests2.get(param)
            if value1 == value2 and digest1 and digest2:
                # Summaries such as "<numpy.ndarray shape=(3,)>" can match; the digests do not.
                value1, value2 = f"{value1} [{digest1[:12]}]", f"{value2} [{digest2[:12]}]"
            differences.append((f"argument {param}", value1, value2))
        for part in ("extra", "serializer"):
            if first.get(part) != second.get(part):
                differences.append((part, first.get(part), second.get(part)))
        return differences

    # --- removing ------------------------------------------------------------------------

    def delete(self, entry: str | EntryInfo) -> bool:
        """Remove one entry (a key, unique key prefix or ``EntryInfo``) and its directory.

        Returns False if it was already gone; raises ``EntryNotFoundError`` for an unknown key.
        """
        return self._remove(self.find(entry) if isinstance(entry, str) else entry)

    def clear(self, function: str | None = None) -> list[EntryInfo]:
        """Remove every entry, or every entry of one function name; returns those removed."""
        return [entry for entry in map(self._entry, self._scan(function)) if self._remove(entry)]

    def prune(
        self,
        *,
        max_size: int | str | None = None,
        older_than: float | str | None = None,
        function: str | None = None,
        dry_run: bool = False,
    ) -> list[EntryInfo]:
        """Remove least recently used entries; returns them (least recently used first).

        ``older_than`` (seconds or ``"30d"``) removes entries not used for that long;
        ``max_size`` (bytes or ``"10GB"``) then removes more until the entries considered (all,
        or ``function``'s) fit in it. With neither, ``MEMO_MAX_SIZE`` is the size. With
        ``dry_run`` nothing is removed: the result is what would be.
        """
        limit = None if max_size is None else parse_size(max_size, what="max_size")
        age = None if older_than is None else parse_duration(older_than, what="older_than")
        if limit is None and age is None:
            limit = max_size_from_env()
            if limit is None:
                raise ConfigError("prune needs max_size or older_than (or MEMO_MAX_SIZE set)")
        entries = sorted(self._scan(function))  # least recently used first
        count = 0
        if age is not None:
            cutoff = time.time() - age
            while count < len(entries) and entries[count][0] < cutoff:
                count += 1
        if limit is not None:
            total = sum(raw[1] for raw in entries[count:])
            while total > limit and count < len(entries):
                total -= entries[count][1]
                count += 1
        chosen = [self._entry(raw) for raw in entries[:count]]
        return chosen if dry_run else [entry for entry in chosen if self._remove(entry)]

    # --- checking ------------------------------------------------------------------------

    def verify(self, *, fix: bool = False) -> list[Problem]:
        """Check every entry in full, and look for orphaned directories and temp files.

        An entry is damaged if its size, key, digests, metadata line or (for ``Cacheable``
        results) directory files do not match. With ``fix``, damaged entries and orphans are
        removed (``Problem.fixed``). Entries' last-use times are left as they were.
        """
        listing, directories = _listing(self._root)
        return verify_directory(self._root, listing, directories, fix)

    # Where a remote store (``_storage._remote.RemoteCatalog``) differs: listing, entries,
    # removal.

    def _matching(self, name: str, prefix: str) -> list[EntryInfo]:
        """Entries whose key starts with ``prefix`` (and of function ``name``, if given)."""
        listing, directories = _listing(self._root)
        return [
            _entry(raw)
            for entry_name, entry_key, item in listing
            if entry_key.startswith(prefix) and (not name or entry_name == name)
            if (raw := _stat(entry_name, entry_key, item, directories)) is not None
        ]

    def _entry(self, raw: _Raw) -> EntryInfo:
        return _entry(raw)

    def _remove(self, entry: EntryInfo) -> bool:
        return _remove(entry)

    def _scan(self, function: str | None) -> list[_Raw]:
        listing, directories = _listing(self._root)
        return [
            raw
            for name, key, item in listing
            if function is None or name == function
            if (raw := _stat(name, key, item, directories)) is not None
        ]


def _listing(root: Path) -> tuple[list[tuple[str, str, os.DirEntry[str]]], set[str]]:
    """(name, key, dir entry) of the entry files, and the ``name-key`` stems of directories."""
    entries: list[tuple[str, str, os.DirEntry[str]]] = []
    directories: set[str] = set()
    try:
        scan = os.scandir(root)
    except FileNotFoundError:
        return entries, directories
    with scan:
        for item in scan:
            # <name>-<32 hex>.memo or <name>-<32 hex>.d, told apart without a regex per name.
            file_name = item.name
            if file_name.endswith(".memo"):
                stem = file_name[:-5]
            elif file_name.endswith(".d"):
                stem = file_name[:-2]
            else:
                continue
            if len(stem) < 34 or stem[-33] != "-" or not _KEY.fullmatch(stem, len(stem) - 32):
                continue
            if len(stem) + 5 == len(file_name):
                if item.is_file(follow_symlinks=False):
                    entries.append((stem[:-33], stem[-32:], item))
            elif item.is_dir(follow_symlinks=False):
                directories.add(stem)
    return entries, directories


def _stat(name: str, key: str, item: os.DirEntry[str], directories: set[str]) -> _Raw | None:
    try:
        st = item.stat(follow_symlinks=False)
    except OSError:
        return None  # removed meanwhile
    size, has_directory = st.st_size, bool(directories) and f"{name}-{key}" in directories
    if has_directory:
        size += _tree_size(Path(item.path[: -len(".memo")] + ".d"))
    return st.st_atime, size, st.st_mtime, name, key, item.path, has_directory


def _entry(raw: _Raw) -> EntryInfo:
    last_used, size, created, name, key, path, has_directory = raw
    directory = Path(path[: -len(".memo")] + ".d") if has_directory else None
    return EntryInfo(name, key, Path(path), size, created, last_used, directory)


def _tree_size(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _metadata_of(entry: EntryInfo) -> dict[str, Any]:
    metadata = entry.metadata()
    if metadata is None:
        raise MemoError(f"the metadata of {entry.path.name} cannot be read (see memo verify)")
    return metadata


def _remove(entry: EntryInfo) -> bool:
    try:
        os.unlink(entry.path)
    except FileNotFoundError:
        return False
    finally:
        if entry.directory is not None:
            rmtree(entry.directory)
    return True
