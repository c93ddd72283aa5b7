"""``memo.Store``: look into a cache and maintain it (list, find, diff, verify, prune, clear).

Everything here goes through the store protocol (``_storage._backend``), so a directory and a
bucket are looked into alike. Listing reads no entry: a listing holds each entry's function
name and key, size, creation and last use (a local file's access time; an object's creation
time, as objects have no access time). An entry's metadata line is read only when asked for,
and reading an entry here never counts as using it, since least-recently-used eviction goes by
it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast

from ._config import (
    default_location,
    max_size_from_env,
    parse_duration,
    parse_size,
    remote_settings_from_env,
    secret_keys_from_env,
)
from ._exceptions import ConfigError, MemoError
from ._explain import ABSENT, changed_arguments
from ._storage._backend import Listed
from ._storage._entries import EntryStore
from ._storage._open import open_store
from ._storage._urls import is_remote, location

__all__ = [
    "EntryInfo",
    "EntryNotFoundError",
    "FunctionInfo",
    "Problem",
    "Store",
    "StoreStats",
    "store_of",
]

_HEX = re.compile(r"[0-9a-f]{1,32}")
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

    ``bytes`` counts the entry file, its payload file and its directory's files; ``created``
    and ``last_used`` are Unix times. ``directory`` is the entry's directory (``Cacheable``
    results) or None; ``payload`` its payload file (``npy``, ``parquet``, ``json`` entries:
    the plain file of the format, for other tools) or None.
    """

    name: str
    key: str
    path: Path
    bytes: int
    created: float
    last_used: float
    directory: Path | None = None
    payload: Path | None = None
    _store: EntryStore | None = field(default=None, repr=False, compare=False)

    def metadata(self) -> dict[str, Any] | None:
        """The entry's metadata (its first line, read now), or None if it cannot be read."""
        if self._store is None:
            return None
        return self._store.metadata(self.name, self.key)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something ``Store.verify`` found wrong, and whether it was removed (``fixed``).

    ``kind`` is ``"damaged"`` (fails its checks), ``"unreadable"`` (cannot be read; never
    removed), ``"orphan-directory"`` (an entry directory without its entry file),
    ``"orphan-payload"`` (a payload file without its entry file), ``"temp-file"`` (left in
    ``.tmp`` by a writer that died), ``"orphan-lease"`` (on an object store, a done lease
    whose entry was removed by other means than memo's) or ``"orphan-marker"`` (on an object
    store, the takeover marker of a lease whose taker died).
    """

    kind: Literal[
        "damaged",
        "unreadable",
        "orphan-directory",
        "orphan-payload",
        "temp-file",
        "orphan-lease",
        "orphan-marker",
    ]
    path: Path
    detail: str
    fixed: bool = False


class RemotePath(PurePosixPath):
    """A path in a remote store, shown as its URL (``s3://bucket/prefix/f-key.memo``).

    Only pure-path operations apply (``name``, ``relative_to``, ``str``); there is no local
    file behind it.
    """

    def __str__(self) -> str:
        text = super().__str__()
        first = self.parts[0] if self.parts else ""
        if first.endswith(":") and text.startswith(first + "/"):
            return f"{first}//{text[len(first) + 1 :]}"  # pathlib folds the "//" of a URL
        return text


def _as_path(location: str) -> Path:
    # EntryInfo and Problem say Path; a URL's RemotePath offers the pure part of that interface.
    return cast(Path, RemotePath(location)) if is_remote(location) else Path(location)


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
    """Totals of a store, its functions (largest first) and its budget (a function's
    ``max_size`` for its ``f.store``, else ``MEMO_MAX_SIZE``)."""

    root: Path
    entries: int
    bytes: int
    functions: list[FunctionInfo]
    max_size: int | None
    read_only: bool = False


class Store:
    """A cache directory, for looking into and maintaining it (``memo ls`` and friends).

    ``Store(path)`` takes the directory memoized functions were given as ``cache_path`` (a
    ``file://`` URL works too); it must exist. Function names are those in the file names
    (``simulate``, ``Model.predict``); keys may be given as any unique prefix. A remote URL
    (``s3://bucket/prefix``) gives a store listing and reading that location through fsspec.

    ``read_only=True``: nothing is ever written there, by this object (``delete``, ``clear``,
    ``prune`` and ``verify(fix=True)`` raise ``memo.ReadOnlyError``) or by a memoized function
    given it as ``cache_path``: its hits load from it, its misses are computed and returned,
    not stored, and it takes no lease there.

    ``signed_only=True`` declares that others can write there (a team's bucket), as memo finds
    by itself for a local directory others can write: a memoized function given it uses only
    entries signed with its key there (``secret_key=`` or ``MEMO_SECRET_KEY``), and without a
    key none (one warning says so), rather than unpickle what anyone may have planted; its
    entries are copied into other stores (tiers above it, ``pull``) only when signatures are
    checked there.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, signed_only: bool = False
    ) -> None:
        for name, flag in (("read_only", read_only), ("signed_only", signed_only)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name} must be True or False, not {flag!r}")
        where = location(path)
        self._where = where
        if isinstance(where, str):
            self._store = open_store(where, remote_settings_from_env(), read_only, signed_only)
            self._root = _as_path(str(self._store.root))
            return
        root = where.absolute()
        if not root.is_dir():
            if root.exists():
                raise NotADirectoryError(f"{root} is not a directory")
            raise FileNotFoundError(f"no cache directory at {root}")
        self._root = root
        self._store = open_store(root, None, read_only, signed_only)

    @classmethod
    def default(cls, *, read_only: bool = False) -> Store:
        """The store memoized functions use by default (``MEMO_CACHE_DIR``, else the user
        cache directory)."""
        return cls(default_location(), read_only=read_only)

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self._root

    @property
    def location(self) -> str | Path:
        """Where the store is, as ``cache_path`` takes it: a URL, or a directory."""
        return self._where

    @property
    def read_only(self) -> bool:
        """Whether nothing is written to this store through this object."""
        return self._store.read_only

    @property
    def signed_only(self) -> bool:
        """Whether the store is declared written by others: only signed entries are used."""
        return self._store.signed_only

    def __repr__(self) -> str:
        shown = ", read_only=True" if self.read_only else ""
        shown += ", signed_only=True" if self.signed_only else ""
        return f"memo.Store({str(self._root)!r}{shown})"

    @property
    def exactly_once(self) -> bool:
        """Whether N processes (or machines) missing one key compute it once here: key
        leases shared by all of them (a local directory's record locks, an object store's
        create-only lease objects); else only this process's threads wait for each other."""
        return self._store.capabilities.exactly_once

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
        found = sorted(self._scan(function), key=lambda raw: raw.created, reverse=True)
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
        """Totals, each function's share (largest first) and the budget (``max_size``)."""
        functions = sorted(self.functions(), key=lambda info: (-info.bytes, info.name))
        return StoreStats(
            root=self._root,
            entries=sum(info.entries for info in functions),
            bytes=sum(info.bytes for info in functions),
            functions=functions,
            max_size=self._store.max_size
            if self._store.max_size is not None
            else max_size_from_env(),
            read_only=self.read_only,
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
        self._store.refuse_if_read_only("delete an entry")
        return self._remove(self.find(entry) if isinstance(entry, str) else entry)

    def clear(self, function: str | None = None) -> list[EntryInfo]:
        """Remove every entry, or every entry of one function name; returns those removed."""
        self._store.refuse_if_read_only("clear entries")
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
        if not dry_run:
            self._store.refuse_if_read_only("prune entries")
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
            while count < len(entries) and entries[count].last_used < cutoff:
                count += 1
        if limit is not None:
            total = sum(raw.bytes for raw in entries[count:])
            while total > limit and count < len(entries):
                total -= entries[count].bytes
                count += 1
        chosen = [self._entry(raw) for raw in entries[:count]]
        return chosen if dry_run else [entry for entry in chosen if self._remove(entry)]

    # --- copying between stores ---------------------------------------------------------

    def pull(
        self,
        source: Store | str | os.PathLike[str],
        *,
        function: str | None = None,
        since: float | str | None = None,
        progress: bool | None = None,
        workers: int = 16,
    ) -> list[EntryInfo]:
        """Copy into this store the entries of ``source`` it lacks (``memo pull``).

        Each is copied as it is stored (metadata, payload file, signature) once its digests
        check, create-only; ``function``: only that function name's; ``since`` (seconds or
        ``"7d"``): only those created that recently. ``workers`` copies run at once, with a
        progress bar (tqdm, if installed; ``progress=False`` for none). Resumable: an entry
        this store has already is skipped, so running it again copies what an interrupted
        run did not. Not copied: ``Cacheable`` directories, damaged entries, and entries of
        a directory others can write. Returns the entries copied, as ``source`` lists them.
        """
        self._store.refuse_if_read_only("pull entries into it")
        origin = source if isinstance(source, Store) else Store(source)
        cutoff = None if since is None else time.time() - parse_duration(since, what="since")
        here = {(raw.name, raw.key) for raw in self._scan(function)}
        todo = [
            raw
            for raw in origin._scan(function)
            if (raw.name, raw.key) not in here and (cutoff is None or raw.created >= cutoff)
        ]
        copied = _copy_all(self._store, origin._store, todo, workers, progress)
        return [origin._entry(raw) for raw, done in zip(todo, copied, strict=True) if done]

    def push(
        self,
        target: Store | str | os.PathLike[str],
        *,
        function: str | None = None,
        since: float | str | None = None,
        progress: bool | None = None,
        workers: int = 16,
    ) -> list[EntryInfo]:
        """Copy this store's entries into ``target`` (``memo push``): ``target.pull(self)``,
        with the same options."""
        into = target if isinstance(target, Store) else Store(target)
        return into.pull(self, function=function, since=since, progress=progress, workers=workers)

    # --- checking ------------------------------------------------------------------------

    def verify(self, *, fix: bool = False) -> list[Problem]:
        """Check every entry in full, and look for what dead writers left behind.

        An entry is damaged if its size, key, digests, metadata line or (for ``Cacheable``
        results) directory files do not match. With ``fix``, damaged entries and leftovers
        (orphaned directories, temp files) are removed (``Problem.fixed``). Entries' last-use
        times are left as they were.
        """
        if fix:
            self._store.refuse_if_read_only("fix entries")
        store = self._store
        problems: list[Problem] = []
        for entry in self._scan(None):
            path = _as_path(entry.location)
            try:
                detail = store.check(entry.name, entry.key)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:
                problems.append(Problem("unreadable", path, str(exc)))
                continue
            if detail is not None:
                # Looked at again first: a writer may have replaced it since it was checked.
                fixed = (
                    fix
                    and _still_damaged(store, entry)
                    and store.delete(entry.name, entry.key, entry.part)
                )
                problems.append(Problem("damaged", path, detail, fixed))
        for kind, place, detail, fixed in store.backend.leftovers(fix):
            problems.append(Problem(kind, _as_path(place), detail, fixed))  # type: ignore[arg-type]
        return problems

    def _matching(self, name: str, prefix: str) -> list[EntryInfo]:
        """Entries whose key starts with ``prefix`` (and of function ``name``, if given)."""
        return [self._entry(raw) for raw in self._scan(name or None) if raw.key.startswith(prefix)]

    def _entry(self, raw: Listed) -> EntryInfo:
        directory = None if raw.directory is None else Path(raw.directory)
        payload = None if raw.payload is None else _as_path(raw.payload)
        path = _as_path(raw.location)
        return EntryInfo(
            raw.name,
            raw.key,
            path,
            raw.bytes,
            raw.created,
            raw.last_used,
            directory,
            payload,
            self._store,
        )

    def _remove(self, entry: EntryInfo) -> bool:
        part = None if entry.payload is None else entry.payload.suffix
        return self._store.delete(entry.name, entry.key, part)

    def _scan(self, function: str | None) -> list[Listed]:
        return self._store.listing(function)


def store_of(entries: EntryStore) -> Store:
    """The ``memo.Store`` over a store already open (a memoized function's ``f.store``): the
    same backend and budget, with no second opening and no check that the directory exists
    (it is made at the first write)."""
    store = Store.__new__(Store)
    store._store = entries
    root = str(entries.root)
    store._where = root if is_remote(root) else Path(root).absolute()
    store._root = _as_path(root) if is_remote(root) else Path(root).absolute()
    return store


def _copy_all(
    into: EntryStore, source: EntryStore, todo: list[Listed], workers: int, progress: bool | None
) -> list[bool]:
    """Copy each listed entry of ``source`` into ``into``, ``workers`` at a time; whether each
    was copied, in order."""
    import concurrent.futures

    bar: Any = None
    if progress is not False and todo:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=len(todo), desc=f"copying from {source.root}", unit="entry")

    # (From a store others write, only where MEMO_SECRET_KEY makes the readers check every
    # signature: see EntryStore.copy_from.)
    signed = bool(secret_keys_from_env())

    def copy(raw: Listed) -> bool:
        done = into.copy_from(source, raw.name, raw.key, signed)
        if bar is not None:
            bar.update()
        return done

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(todo) or 1))) as pool:
            return list(pool.map(copy, todo))
    finally:
        if bar is not None:
            bar.close()


def _still_damaged(store: EntryStore, entry: Listed) -> bool:
    try:
        return store.check(entry.name, entry.key) is not None
    except OSError:
        return False


def _metadata_of(entry: EntryInfo) -> dict[str, Any]:
    metadata = entry.metadata()
    if metadata is None:
        raise MemoError(f"the metadata of {entry.path.name} cannot be read (see memo verify)")
    return metadata
