"""A store at an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://name``).

Entries are the same ``<name>-<key>.memo`` objects as in a local directory (``_format``), so
integrity checks, fingerprints and signing work identically, and a store can be copied between
a bucket and a directory. fsspec and the backend's package (s3fs for S3) are imported only
when such a URL is used; ``pip install "memo[remote]"`` installs both.

Guarantees, where the backend allows:

- **No partial values.** An entry is published as one object write of its final bytes (one
  PUT on S3; a multipart upload above 100 MB, which S3 shows only once complete). Every read
  checks size, key and digests before anything is deserialized. Filesystems that write in
  place (sftp, ftp) can show a racing reader a partial file: it fails those checks and is a
  miss, never a wrong value.
- **Concurrent writers.** After a miss, the entry is written with a create-only request where
  the backend supports one (S3 ``If-None-Match``): if another process stored the key meanwhile,
  its entry stands. Otherwise (``refresh``, replacing a damaged entry, backends without
  create-only writes) the object is overwritten and the last writer wins; either way what is
  stored is one writer's complete entry.
- **No cross-process locks.** Object stores have none, so two machines missing the same key
  may both compute it: duplicate computation is possible, corruption is not. Threads of one
  process still wait for each other per key.
- **The network never fails a call.** A read that fails (connection refused, timeout, denied)
  is a miss, warned about once per store and kind of error; a failed write is reported by the
  decorator as one warning and the value is returned.

Configuration, read when a URL's store is first used in a process:

- ``MEMO_STORAGE_OPTIONS``: a JSON object passed to the fsspec filesystem (e.g.
  ``{"endpoint_url": "http://minio:9000", "anon": false}``); nested objects are merged into
  the defaults. For ``s3://`` the defaults are ``config_kwargs={"connect_timeout": 5,
  "read_timeout": 30, "retries": {"total_max_attempts": 2, "mode": "standard"}}`` (two
  attempts per request) and ``use_listings_cache=False`` (another machine's writes must be
  seen), and s3fs's own retry loop is turned off, so a stalled request gives up after about a
  minute and a refused connection within a second or two. The endpoint, credentials and
  region come from the usual AWS settings (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
  ``~/.aws/config``, ...), in child processes too.
- ``MEMO_REMOTE_TIMEOUT``: a hard limit on each store operation (``"2m"``, seconds) for
  asynchronous backends (s3, gs, az, http); unset by default, since a large value can take
  long to transfer.

``max_size`` is not enforced on remote stores (objects have no last-use time; use the bucket's
lifecycle rules or ``memo prune --older-than``), and ``Cacheable`` results need a local
``cache_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import errno
import importlib
import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

from .._catalog import EntryInfo, Problem, Store, _Raw
from .._config import parse_duration
from .._exceptions import ConfigError, warn_once
from ._cacheable import CACHEABLE
from ._entry_file import deserialize, warn_damaged, warn_unloadable
from ._format import (
    MAX_METADATA,
    DamagedEntryError,
    Header,
    check_trailer,
    metadata_line,
    pack,
    parse_header,
    parse_metadata,
    unpack,
)
from ._local import MISS, SUFFIX, StoreError
from ._locks import Claims, hold
from ._serializers import Serializer

__all__ = [
    "MissingPackageError",
    "RemoteCatalog",
    "RemoteEntryInfo",
    "RemotePath",
    "RemoteStore",
    "RemoteStoreError",
    "check_url",
    "is_remote",
    "storage_options",
]

HINT = 'pip install "memo[remote]"'
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_KEY = re.compile(r"^[0-9a-f]{32}$")
_HEAD_READ = (1 << 16) + 4096
# Protocols whose first path component is a bucket: a missing one is reported, never created.
_BUCKETS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})
_S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"total_max_attempts": 2, "mode": "standard"},
    },
    "use_listings_cache": False,
}
_DEFAULTS: dict[str, dict[str, Any]] = {"s3": _S3_DEFAULTS, "s3a": _S3_DEFAULTS}
_ABSENT_LIMIT = 10_000
_POLL_START = 0.001
_POLL_MAX = 0.05
# Errors of a create-only write meaning "this backend cannot do create-only writes".
_NO_CREATE_ERRNOS = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}

logger = logging.getLogger("memo")
_shared: dict[str, RemoteStore] = {}
_shared_lock = threading.Lock()


class MissingPackageError(ConfigError, ImportError):
    """fsspec, or the package of a URL's backend (s3fs for S3), is not installed."""


class RemoteStoreError(StoreError, OSError):
    """A remote store operation failed (unreachable, denied, missing bucket); one line."""


def scheme_of(path: object) -> str | None:
    """The lower-case scheme of a URL string (``s3``), or None for anything else."""
    if not isinstance(path, str):
        return None
    match = _SCHEME.match(path.strip())
    return match.group(1).lower() if match else None


def is_remote(path: object) -> bool:
    """Whether ``path`` is a URL with a scheme other than ``file://`` (cheap: no import)."""
    scheme = scheme_of(path)
    return scheme is not None and scheme != "file"


def _normalize(url: str) -> str:
    url = url.strip()
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def _import_fsspec() -> Any:
    try:
        return importlib.import_module("fsspec")
    except ImportError:
        raise MissingPackageError(
            f"remote cache paths need fsspec (and s3fs for S3): {HINT}"
        ) from None


def check_url(url: str) -> str:
    """The normalized URL, if fsspec knows its scheme and its backend package is installed.

    Raises ``MissingPackageError`` (a ``ConfigError`` and an ``ImportError``) with the install
    hint, or ``ConfigError`` for an unknown scheme or bad ``MEMO_STORAGE_OPTIONS``.
    """
    scheme = scheme_of(url)
    if scheme is None:
        raise ConfigError(f"cache_path={url!r} is not a URL")
    fsspec = _import_fsspec()
    if scheme not in fsspec.available_protocols():
        raise ConfigError(
            f"cache_path={url!r}: fsspec knows no {scheme}:// filesystem (see "
            "fsspec.available_protocols())"
        )
    known = importlib.import_module("fsspec.registry").known_implementations.get(scheme)
    if known is not None:
        module = str(known.get("class", "")).partition(".")[0]
        if module and importlib.util.find_spec(module) is None:
            why = known.get("err") or f"install {module}"
            raise MissingPackageError(f"cache_path={url!r}: {why} ({HINT} for S3)")
    storage_options(scheme)  # a bad MEMO_STORAGE_OPTIONS is reported now, not at a call
    return _normalize(url)


def storage_options(scheme: str) -> dict[str, Any]:
    """memo's defaults for a protocol, with ``MEMO_STORAGE_OPTIONS`` merged over them."""
    options = copy.deepcopy(_DEFAULTS.get(scheme, {}))
    raw = os.environ.get("MEMO_STORAGE_OPTIONS", "").strip()
    if not raw:
        return options
    try:
        given = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"MEMO_STORAGE_OPTIONS is not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise ConfigError("MEMO_STORAGE_OPTIONS must be a JSON object of storage options")
    return _merge(options, given)


def _merge(base: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in given.items():
        if isinstance(value, Mapping) and isinstance(base.get(name), dict):
            base[name] = _merge(base[name], value)
        else:
            base[name] = value
    return base


def _timeout_from_env() -> float | None:
    raw = os.environ.get("MEMO_REMOTE_TIMEOUT", "").strip()
    if not raw:
        return None
    return parse_duration(raw, what="MEMO_REMOTE_TIMEOUT") or None  # 0 means no limit


class _ThreadLocks:
    """Per-key locks among the threads of this process (object stores have no shared locks)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._claims = Claims()

    def _current(self) -> Claims:
        if self._pid != os.getpid():
            # A claim held by a parent's thread would never be dropped in a forked child.
            self._pid, self._claims = os.getpid(), Claims()
        return self._claims

    def acquire(self, key: str, timeout: float) -> tuple[Any, bool]:
        """``(claim, held)`` as ``KeyLocks.acquire`` gives them (here both or neither)."""
        claim = self._current().claim(key, threading.get_ident(), timeout)
        return claim, claim is not None

    def release(self, key: str, claim: Any, held: bool) -> None:
        """Give back what ``acquire`` returned."""
        self._current().drop(key, claim)

    async def acquire_async(self, key: str, timeout: float) -> bool:
        """Wait for ``key``'s lock without blocking the event loop; True when held. False at
        once when this task holds the key already."""
        claims = self._current()
        owner = asyncio.current_task()
        deadline = time.monotonic() + timeout
        pause = _POLL_START
        while claims.claim(key, owner, 0.0) is None:
            if claims.holder(key) is owner or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        return True

    def release_async(self, key: str) -> None:
        """Release a lock taken with ``acquire_async``."""
        self._current().drop_owned(key, asyncio.current_task())


class RemoteStore:
    """Entries under one fsspec URL; the same interface as ``LocalStore``."""

    def __init__(self, url: str) -> None:
        self.root = _normalize(url)
        self.scheme = self.root.partition("://")[0]
        self._options = storage_options(self.scheme)
        self._timeout = _timeout_from_env()
        self.locks = _ThreadLocks()  # the key locks, as LocalStore's
        self._fs: Any = None
        self._pid = 0
        self._path = ""
        self._create_only = True
        self._absent: set[tuple[str, str]] = set()  # keys this process saw missing
        self._filesystem()  # a missing package or bad option shows now, not at a later read

    @classmethod
    def shared(cls, url: str) -> RemoteStore:
        """The one store object of this process for ``url``."""
        root = _normalize(url)
        with _shared_lock:
            store = _shared.get(root)
            if store is None:
                store = _shared[root] = cls(root)
            return store

    def __repr__(self) -> str:
        return f"RemoteStore({self.root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteStore) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def _filesystem(self) -> Any:
        if self._fs is not None and self._pid == os.getpid():
            return self._fs
        fsspec = _import_fsspec()
        try:
            fs, path = fsspec.core.url_to_fs(self.root, **self._options)
        except ImportError as exc:
            raise MissingPackageError(f"{self.root}: {exc} ({HINT})") from None
        if self.scheme in ("s3", "s3a") and isinstance(getattr(fs, "retries", None), int):
            # botocore already retries (config_kwargs); s3fs's loop on top would multiply
            # a stalled endpoint's timeouts by five.
            fs.retries = 1
        # A forked child gets a new filesystem object: the parent's event loop is not its own.
        self._fs, self._pid, self._path = fs, os.getpid(), str(path).rstrip("/")
        return fs

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a filesystem method, within ``MEMO_REMOTE_TIMEOUT`` on asynchronous backends."""
        fs = self._filesystem()
        if self._timeout is not None and getattr(fs, "async_impl", False):
            coroutine = getattr(fs, "_" + method, None)
            if coroutine is not None:
                sync = importlib.import_module("fsspec.asyn").sync
                return sync(fs.loop, coroutine, *args, timeout=self._timeout, **kwargs)
        return getattr(fs, method)(*args, **kwargs)

    def _object(self, name: str, key: str) -> str:
        self._filesystem()
        return f"{self._path}/{name}-{key}{SUFFIX}"

    def path(self, name: str, key: str) -> str:
        """The URL of the entry for ``key`` of ``name``."""
        return f"{self.root}/{name}-{key}{SUFFIX}"

    def directory(self, name: str, key: str) -> Path:
        """``Cacheable`` entries have directories only in local stores."""
        raise StoreError(
            "Cacheable results need a local cache_path (a remote store holds single objects)"
        )

    # --- budget (not enforced remotely) --------------------------------------------------

    def limit_size(self, max_bytes: int) -> None:
        """Not enforced: objects have no last-use time to evict by (warned once)."""
        warn_once(
            ("remote-max-size", self.root),
            f"memo: max_size is not enforced on the remote store {self.root}; use the "
            "bucket's lifecycle rules or `memo prune --older-than`",
            stacklevel=4,
        )

    @property
    def max_size(self) -> int | None:
        """Always None: remote stores have no size budget."""
        return None

    # --- reading -------------------------------------------------------------------------

    def _read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        if start is None and getattr(self._fs, "_cat_file_concurrent", None) is not None:
            # One GET: s3fs would otherwise read a large object in concurrent ranges, which
            # could mix two versions of an entry being replaced.
            return cast(bytes, self._call("cat_file", path, max_concurrency=1))
        return cast(bytes, self._call("cat_file", path, start=start, end=end))

    def _warn_unreachable(self, what: str, exc: BaseException) -> None:
        detail = " ".join(str(exc).split())[:300] or "no detail"
        warn_once(
            ("remote", what, self.root, type(exc).__name__),
            f"memo: could not {what} the remote store {self.root} ({type(exc).__name__}: "
            f"{detail}); values are recomputed meanwhile",
            stacklevel=4,
        )

    def _note_absent(self, name: str, key: str) -> None:
        absent = self._absent
        if len(absent) >= _ABSENT_LIMIT:
            absent.clear()  # only an optimization: forgetting costs an overwrite, not a wrong value
        absent.add((name, key))

    def load(
        self,
        name: str,
        key: str,
        own: Mapping[str, Serializer] | None = None,
        secret_keys: Sequence[bytes] = (),
        max_age: float | None = None,
    ) -> Any:
        """The stored value, or ``MISS``; a damaged or unreachable entry is a miss, warned once.

        ``own`` are the caller's serializers by name (memory-mapping does not apply: the
        bytes are already in memory); with ``secret_keys`` only entries signed by one of them
        are accepted; entries older than ``max_age`` seconds are misses.
        """
        path = self._object(name, key)
        try:
            data = self._read(path)
        except FileNotFoundError:
            self._note_absent(name, key)
            return MISS
        except Exception as exc:
            self._warn_unreachable("read from", exc)
            return MISS
        url = self.path(name, key)
        try:
            header, payload = unpack(data, bytes.fromhex(key), secret_keys)
        except DamagedEntryError as exc:
            warn_damaged(url, exc, stacklevel=3)
            return MISS
        if max_age is not None and _age(header) > max_age:
            return MISS
        try:
            return deserialize(header, payload, own)
        except Exception as exc:
            warn_unloadable(url, exc, stacklevel=3)
            return MISS

    def header(self, name: str, key: str) -> Header | None:
        """The checked header of an entry (fingerprint, serializer, ...), reading little of a
        large entry; None if it is missing, damaged or unreachable."""
        path = self._object(name, key)
        binary_key = bytes.fromhex(key)
        try:
            size = int(self._call("info", path)["size"])
            if size <= 2 * _HEAD_READ:
                return unpack(self._read(path), binary_key)[0]
            head = self._read(path, 0, _HEAD_READ)
            header = parse_header(head, size, binary_key)
            if len(head) < header.offset:
                head = self._read(path, 0, header.offset)
            end = header.offset + header.length
            check_trailer(memoryview(head)[: header.offset], self._read(path, end, size))
        except Exception:
            return None
        return header

    def exists(self, name: str, key: str) -> bool:
        """Whether an entry object is present (no read, no check; False if unreachable)."""
        try:
            return bool(self._call("exists", self._object(name, key)))
        except Exception:
            return False

    def contains(
        self,
        name: str,
        key: str,
        max_age: float | None = None,
        secret_keys: Sequence[bytes] = (),
    ) -> bool:
        """Whether an entry ``load`` would accept exists (checks the digests, and the signature
        with ``secret_keys``; does not deserialize)."""
        try:
            header, _ = unpack(self._read(self._object(name, key)), bytes.fromhex(key), secret_keys)
        except Exception:
            return False
        return max_age is None or _age(header) <= max_age

    # --- writing -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Nothing to prepare: object stores need no directories (created on demand else)."""

    def save(
        self,
        name: str,
        key: str,
        value: Any,
        metadata: str,
        serializer: Serializer,
        fixed_metadata: str = "",
        secret: bytes | None = None,
    ) -> str:
        """Serialize and publish an entry as one object; returns its fingerprint (hex).

        ``metadata`` and ``fixed_metadata`` are as for ``LocalStore.save``.

        Raises ``StoreError`` (a ``RemoteStoreError`` when the store cannot be written) with
        nothing partial left behind.
        """
        if serializer.name == CACHEABLE:
            self.directory(name, key)  # raises: Cacheable results need a local store
        try:
            payload = serializer.dumps(value)
        except Exception as exc:
            raise StoreError(
                f"the result ({type(value).__qualname__}) could not be serialized with "
                f"{serializer.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        size = sum(memoryview(chunk).nbytes for chunk in payload)
        try:
            line = metadata_line(metadata, serializer.name, size, fixed_metadata)
        except ValueError as exc:  # too long for the entry format
            raise StoreError(str(exc)) from exc
        chunks, fingerprint = pack(line, bytes.fromhex(key), serializer.name, payload, secret)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        path = self._object(name, key)
        # Create-only after this process saw the key missing: if another process stored it
        # meanwhile, its entry stands. Refreshes and replacements of damaged entries overwrite.
        seen_missing = (name, key) in self._absent
        self._absent.discard((name, key))
        create = seen_missing and self._create_only
        try:
            try:
                self._put(path, data, create)
            except FileNotFoundError:
                if self.scheme in _BUCKETS:
                    raise
                # A filesystem with real directories: make the store's, then write again.
                self._call("makedirs", self._path, exist_ok=True)
                self._put(path, data, create)
        except FileExistsError:
            existing = self.header(name, key)
            return (existing.fingerprint if existing is not None else fingerprint).hex()
        except FileNotFoundError as exc:
            raise RemoteStoreError(
                f"could not write to {self.root}: the bucket does not exist ({exc})"
            ) from exc
        except Exception as exc:
            detail = " ".join(str(exc).split())[:300]
            raise RemoteStoreError(
                f"could not write to {self.root}: {type(exc).__name__}: {detail}"
            ) from exc
        return fingerprint.hex()

    def _put(self, path: str, data: Any, create: bool) -> None:
        if create:
            try:
                self._call("pipe_file", path, data, mode="create")
                return
            except FileExistsError:
                raise
            except (NotImplementedError, TypeError, ValueError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in _NO_CREATE_ERRNOS:
                    raise
                # This backend cannot write create-only: overwrite from now on.
                logger.debug("%s: no create-only writes (%s); overwriting", self.root, exc)
                self._create_only = False
        self._call("pipe_file", path, data)

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lock among this process's threads (other machines may compute the
        same key meanwhile: duplicate work is possible, corruption is not)."""
        return hold(self.locks, key, timeout)

    # --- managing ------------------------------------------------------------------------

    def delete(self, name: str, key: str) -> bool:
        """Remove one entry; True if it existed. Raises ``RemoteStoreError`` if unreachable."""
        path = self._object(name, key)
        try:
            self._call("info", path)
            self._call("rm_file", path)
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise RemoteStoreError(
                f"could not delete {self.path(name, key)}: {type(exc).__name__}: {exc}"
            ) from exc
        return True

    def listing(self, name: str | None = None) -> list[tuple[str, str, int, float]]:
        """(name, key, bytes, created) of the entries, optionally only ``name``'s.

        Raises ``RemoteStoreError`` if the store cannot be listed; a missing bucket or prefix
        is an empty store.
        """
        fs = self._filesystem()
        try:
            fs.invalidate_cache(self._path)
            items = self._call("ls", self._path, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise RemoteStoreError(
                f"could not list {self.root}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            # Never answer a later existence check from this listing: others write meanwhile.
            fs.invalidate_cache(self._path)
        found = []
        for item in items:
            if item.get("type") != "file":
                continue
            stem = str(item["name"]).rpartition("/")[2]
            if not stem.endswith(SUFFIX):
                continue
            entry_name, dash, key = stem[: -len(SUFFIX)].rpartition("-")
            if dash and _KEY.match(key) and (name is None or entry_name == name):
                found.append((entry_name, key, int(item.get("size") or 0), _created(item)))
        return found

    def iter_entries(self, name: str | None = None) -> Iterator[tuple[str, str, str]]:
        """(name, key, URL) of the entries, optionally only those stored under ``name``."""
        for entry_name, key, _, _ in self.listing(name):
            yield entry_name, key, self.path(entry_name, key)

    def metadata(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The metadata recorded in an entry (given by URL), or None if it cannot be read."""
        fs = self._filesystem()
        try:
            head = self._read(fs._strip_protocol(str(path)), 0, MAX_METADATA + 1)
        except Exception:
            return None
        return parse_metadata(bytes(head))

    def check(self, name: str, key: str) -> str | None:
        """What is wrong with an entry (as ``memo verify`` says it), or None if it is sound.

        Raises ``FileNotFoundError`` if it is gone, other errors if it cannot be read.
        """
        data = self._read(self._object(name, key))
        try:
            unpack(data, bytes.fromhex(key))
        except DamagedEntryError as exc:
            return str(exc)
        if parse_metadata(bytes(data[: MAX_METADATA + 1])) is None:
            return "unreadable metadata line"
        return None


def _age(header: Header) -> float:
    return (time.time_ns() - header.created_ns) / 1e9


def _created(item: Mapping[str, Any]) -> float:
    """When an object was written, from whatever its backend's listing calls it."""
    for field in ("LastModified", "mtime", "created", "last_modified", "updated", "timeCreated"):
        value = item.get(field)
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


# --- memo.Store on a URL ---------------------------------------------------------------------


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


def _remote_path(url: str) -> Path:
    # EntryInfo and Problem say Path; a RemotePath offers the pure part of that interface.
    return cast(Path, RemotePath(url))


@dataclass(frozen=True, slots=True)
class RemoteEntryInfo(EntryInfo):
    """An entry of a remote store; ``path`` is a ``RemotePath`` (its URL)."""

    def metadata(self) -> dict[str, Any] | None:
        """The entry's metadata (its first line, read now), or None if it cannot be read."""
        url = str(self.path)
        return RemoteStore.shared(url.rpartition("/")[0]).metadata(url)


class RemoteCatalog(Store):
    """``memo.Store`` on a URL: list, find, show, diff, delete, clear, prune and verify.

    "Last used" is the creation time (objects have no access time), so ``prune`` removes the
    oldest entries first.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        url = check_url(os.fspath(path))
        self._remote = RemoteStore.shared(url)
        self._root = _remote_path(self._remote.root)

    def __repr__(self) -> str:
        return f"memo.Store({self._remote.root!r})"

    def _scan(self, function: str | None) -> list[_Raw]:
        remote = self._remote
        return [
            (created, size, created, name, key, remote.path(name, key), False)
            for name, key, size, created in remote.listing(function)
        ]

    def _entry(self, raw: _Raw) -> EntryInfo:
        last_used, size, created, name, key, url, _ = raw
        return RemoteEntryInfo(name, key, _remote_path(url), size, created, last_used)

    def _remove(self, entry: EntryInfo) -> bool:
        return self._remote.delete(entry.name, entry.key)

    def _matching(self, name: str, prefix: str) -> list[EntryInfo]:
        return [self._entry(raw) for raw in self._scan(name or None) if raw[4].startswith(prefix)]

    def verify(self, *, fix: bool = False) -> list[Problem]:
        """Check every entry in full; with ``fix``, remove the damaged ones."""
        problems: list[Problem] = []
        for *_, name, key, url, _ in self._scan(None):
            try:
                detail = self._remote.check(name, key)
            except FileNotFoundError:
                continue  # removed meanwhile
            except Exception as exc:
                problems.append(Problem("unreadable", _remote_path(url), str(exc)))
                continue
            if detail is not None:
                fixed = fix and self._remote.delete(name, key)
                problems.append(Problem("damaged", _remote_path(url), detail, fixed))
        return problems
