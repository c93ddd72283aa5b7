"""The fsspec backend: entries at a URL (``s3://bucket/prefix``, ``gs://...``, ``memory://x``).

Entries are the same ``<name>-<key>.memo`` objects as in a local directory, so a store can be
copied between a bucket and a directory. fsspec and the URL's package (s3fs for S3) are
imported only when such a URL is used; ``pip install "memo-cache[remote]"`` installs both.

- **No partial values.** An entry is published as one object write of its final bytes (one
  PUT on S3; a multipart upload above 100 MB, which S3 shows only once complete). Filesystems
  that write in place (sftp, ftp) can show a racing reader a partial file: it fails the checks
  above and is a miss, never a wrong value.
- **Create-only after a miss** where the backend has such writes (S3 ``If-None-Match``): an
  entry another machine stored meanwhile stands. Refreshes and replacements of damaged entries
  overwrite; either way what is stored is one writer's complete entry.
- **Compute once across machines** through key leases (``_leases``), small objects under
  ``.leases/`` in the store, on every backend with create-only writes; without them, machines
  may compute a key twice.
- **The network never fails a call.** A read that fails is a miss, warned about once per store
  and kind of error; a failed write is reported by the decorator as one warning.

``max_size`` is not enforced (objects have no last-use time; use the bucket's lifecycle rules
or ``memo prune --older-than``), and ``Cacheable`` results need a local ``cache_path``.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, cast

from .._exceptions import warn_once
from ._backend import SUFFIX, Capabilities, Listed, Outgoing, StoreError, split_name
from ._chunks import Chunks
from ._leases import LeaseSettings, ObjectLeases
from ._object_listing import created, entries_in
from ._urls import HINT, MissingPackageError, import_fsspec, normalize, storage_options

__all__ = ["FsspecBackend", "RemoteStoreError"]

# Protocols whose first path component is a bucket: a missing one is reported, never created.
_BUCKETS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})
# Errors of a create-only write meaning "this backend cannot do create-only writes".
_NO_CREATE_ERRNOS = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
_CAPABILITIES = Capabilities(
    files=False, mmap=False, last_use=False, directories=False, exactly_once=True
)

logger = logging.getLogger("memo")


class RemoteStoreError(StoreError, OSError):
    """A remote store operation failed (unreachable, denied, missing bucket); one line."""


class _ObjectReader:
    """An object opened for range reads (each a ranged GET)."""

    def __init__(self, backend: FsspecBackend, path: str, size: int) -> None:
        self._backend = backend
        self._path = path
        self.size = size

    def read(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        return self._backend._read(self._path, start, min(end, self.size))

    def close(self) -> None:
        pass


class RemoteSettings(NamedTuple):
    """What a remote store is opened with (``_config`` resolves them from the environment)."""

    options: Mapping[str, Any] = {}  # storage options, merged over memo's defaults
    timeout: float | None = None  # a limit on each operation of an asynchronous filesystem
    lease: LeaseSettings = LeaseSettings()


_DEFAULT_SETTINGS = RemoteSettings()


class FsspecBackend:
    """Entries under one fsspec URL."""

    def __init__(self, url: str, settings: RemoteSettings | None = None) -> None:
        settings = settings or _DEFAULT_SETTINGS
        self.root: Path | str = normalize(url)
        self._url = str(self.root)
        self.scheme = self._url.partition("://")[0]
        self._options = storage_options(self.scheme, settings.options)
        self._timeout = settings.timeout
        self._fs: Any = None
        self._pid = 0
        self._path = ""
        self._create_only = True
        self._filesystem()  # a missing package or bad option shows now, not at a later read
        self.locks = ObjectLeases(self, settings.lease)

    @property
    def capabilities(self) -> Capabilities:
        """No local files, no last-use times, no directories; exactly once while the backend
        has create-only writes."""
        if self.locks.enabled and self._create_only:
            return _CAPABILITIES
        return _CAPABILITIES._replace(exactly_once=False)

    def __repr__(self) -> str:
        return f"FsspecBackend({self._url!r})"

    def _filesystem(self) -> Any:
        if self._fs is not None and self._pid == os.getpid():
            return self._fs
        fsspec = import_fsspec()
        try:
            fs, path = fsspec.core.url_to_fs(self._url, **self._options)
        except ImportError as exc:
            raise MissingPackageError(f"{self._url}: {exc} ({HINT})") from None
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

    def _object(self, name: str, key: str, suffix: str = SUFFIX) -> str:
        self._filesystem()
        return f"{self._path}/{name}-{key}{suffix}"

    def location(self, name: str, key: str, part: str = SUFFIX) -> str:
        """The URL of the entry (or of its ``part``)."""
        return f"{self._url}/{name}-{key}{part}"

    # --- reading -------------------------------------------------------------------------

    def _read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        if start is None and getattr(self._fs, "_cat_file_concurrent", None) is not None:
            # One GET: s3fs would otherwise read a large object in concurrent ranges, which
            # could mix two versions of an entry being replaced.
            return cast(bytes, self._call("cat_file", path, max_concurrency=1))
        return cast(bytes, self._call("cat_file", path, start=start, end=end))

    def read(self, name: str, key: str, part: str = SUFFIX) -> tuple[Any, bytes | None] | None:
        """The entry object's bytes (one GET), or None; ``OSError`` if unreachable."""
        try:
            return self._read(self._object(name, key, part)), None
        except FileNotFoundError:
            return None
        except OSError:
            raise
        except Exception as exc:  # the backend's own errors (botocore, aiohttp, ...)
            raise _unreachable("read from", self._url, exc) from exc

    def peek(self, name: str, key: str, limit: int | None = None, part: str = SUFFIX) -> Any:
        """The entry's bytes (its first ``limit``): objects have no last-use time to spare."""
        path = self._object(name, key, part)
        return self._read(path) if limit is None else self._read(path, 0, limit)

    def open(self, name: str, key: str, part: str = SUFFIX) -> _ObjectReader | None:
        """The object, sized, for ranged reads; None if it is missing or unreachable."""
        path = self._object(name, key, part)
        try:
            size = int(self._call("info", path)["size"])
        except Exception:
            return None
        return _ObjectReader(self, path, size)

    def exists(self, name: str, key: str) -> bool:
        """Whether the entry object is there (False if unreachable): one ranged GET of its
        first byte. (fsspec's ``exists`` costs s3fs a HEAD and, for a missing object, which is
        the usual answer, a LIST as well, to see whether it is a directory.)"""
        try:
            self._read(self._object(name, key), 0, 1)
        except Exception:
            return False
        return True

    def warn_unreadable(self, name: str, key: str, exc: OSError) -> None:
        """One warning per store and kind of error; values are recomputed meanwhile."""
        cause = exc.__cause__ if isinstance(exc, RemoteStoreError) and exc.__cause__ else exc
        detail = " ".join(str(cause).split())[:300] or "no detail"
        warn_once(
            ("remote", "read from", self._url, type(cause).__name__),
            f"memo: could not read from the remote store {self._url} ({type(cause).__name__}: "
            f"{detail}); values are recomputed meanwhile",
            stacklevel=4,
        )

    def untrusted(self) -> str | None:
        """None: who may write to a bucket is the bucket's policy (sign entries to check)."""
        return None

    # --- writing -------------------------------------------------------------------------

    def publish(self, name: str, key: str, entry: Outgoing, replace: bool) -> tuple[int, bytes]:
        """One object write of the whole entry (or part), create-only unless ``replace``."""
        whole, fingerprint = entry.data  # (given whole bytes: no in-place files here)
        path = self._object(name, key, entry.part)
        if entry.then is not None:
            entry.then(len(whole), fingerprint)
        try:
            self._in_directory(self._put, path, whole, not replace)
        except FileExistsError:
            self._stored(name, key, entry)
            raise
        except FileNotFoundError as exc:
            raise RemoteStoreError(
                f"could not write to {self._url}: the bucket does not exist ({exc})"
            ) from exc
        except Exception as exc:
            raise _unreachable("write to", self._url, exc) from exc
        self._stored(name, key, entry)
        return len(whole), fingerprint

    def _stored(self, name: str, key: str, entry: Outgoing) -> None:
        """The entry's record is in place: the lease held for it stays behind as done."""
        if entry.part == SUFFIX:
            self.locks.stored(name, key)

    def _in_directory(self, write: Callable[..., None], path: str, *args: Any) -> None:
        """``write(path, *args)``; on a filesystem with real directories (not a bucket) whose
        directory of ``path`` is missing, make it and write again."""
        try:
            write(path, *args)
        except FileNotFoundError:
            if self.scheme in _BUCKETS:
                raise
            self._call("makedirs", path.rpartition("/")[0], exist_ok=True)
            write(path, *args)

    def _put(self, path: str, data: Any, create: bool) -> None:
        """Write an object, create-only if ``create`` and the backend can (else overwrite)."""
        if create:
            try:
                self._create(path, data)
                return
            except NotImplementedError:
                pass
        self._call("pipe_file", path, self._body(data))

    def _create(self, path: str, data: Any) -> None:
        """A create-only write: ``FileExistsError`` if the object is there;
        ``NotImplementedError`` if the backend has no create-only writes (then it is not
        asked again)."""
        if not self._create_only:
            raise NotImplementedError("no create-only writes")
        try:
            self._call("pipe_file", path, self._body(data), mode="create")
        except FileExistsError:
            raise
        except (NotImplementedError, TypeError, ValueError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in _NO_CREATE_ERRNOS:
                raise
            logger.debug("%s: no create-only writes (%s); overwriting", self._url, exc)
            self._create_only = False
            raise NotImplementedError(f"no create-only writes: {exc}") from exc

    def _body(self, data: bytes | Chunks) -> bytes | Chunks:
        """What ``pipe_file`` is given for ``data``. s3fs slices its data into a multipart
        upload's parts and botocore sends a file as a request body, so there a large
        payload's ``Chunks`` go as they are (a new window, read from its start) and are
        never copied whole; other filesystems are given bytes."""
        if not isinstance(data, Chunks):
            return data
        return data[:] if self.scheme in ("s3", "s3a") else data.tobytes()

    # --- objects for the key leases (``_leases.Objects``) --------------------------------

    def lease_path(self, name: str, key: str) -> str:
        """The lease object of an entry, under ``.leases/`` (kept out of the listing of
        entries: a done lease stays as long as its entry)."""
        self._filesystem()
        return f"{self._path}/.leases/{name}-{key}.lease"

    def create_object(self, path: str, data: bytes) -> None:
        """Create-only write; ``NotImplementedError`` if the backend has none."""
        self._in_directory(self._create, path, data)

    def put_object(self, path: str, data: bytes) -> None:
        """Overwrite a small object."""
        self._call("pipe_file", path, data)

    def get_object(self, path: str) -> bytes | None:
        """A small object's bytes, or None."""
        try:
            return self._read(path)
        except FileNotFoundError:
            return None

    def remove_object(self, path: str) -> None:
        """Remove an object if it is there."""
        with contextlib.suppress(FileNotFoundError):
            self._call("rm_file", path)

    # --- managing ------------------------------------------------------------------------

    def delete(
        self, name: str, key: str, part: str | None = None, payload: str | None = None
    ) -> bool:
        """Remove one entry (with its ``payload`` object), or only its ``part``; True if it
        existed. Raises ``RemoteStoreError`` if unreachable."""
        path = self._object(name, key, part or SUFFIX)
        try:
            self._call("info", path)
            self._call("rm_file", path)
            if part is None:
                if payload is not None:
                    self.remove_object(self._object(name, key, payload))
                self.remove_object(self.lease_path(name, key))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise RemoteStoreError(
                f"could not delete {self.location(name, key)}: {type(exc).__name__}: {exc}"
            ) from exc
        return True

    def listing(self, name: str | None = None) -> list[Listed]:
        """The entry objects; "last used" is when each was written. Raises
        ``RemoteStoreError`` if the store cannot be listed; a missing bucket or prefix is
        an empty store."""
        fs = self._filesystem()
        try:
            fs.invalidate_cache(self._path)
            items = self._call("ls", self._path, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise RemoteStoreError(
                f"could not list {self._url}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            # Never answer a later existence check from this listing: others write meanwhile.
            fs.invalidate_cache(self._path)
        return entries_in(items, name, self.location)

    def leftovers(self, fix: bool) -> list[tuple[str, str, str, bool]]:
        """What leases leave behind: done leases whose entry is gone (removed by other means
        than memo's, such as a lifecycle rule on the entries only), and takeover markers of
        takers that died (older than twice their lease's length, by the store's write times
        and this machine's clock). One listing of ``.leases/``, and a read of each such
        object; with ``fix`` they are removed. (A writer that died leaves no entry object
        behind, and its lease expires by itself.)"""
        leases = f"{self._path}/.leases"
        try:
            self._filesystem().invalidate_cache(leases)
            items = self._call("ls", leases, detail=True)
        except FileNotFoundError:
            return []
        stored = {(entry.name, entry.key) for entry in self.listing()}
        found, now = [], time.time()
        for item in items:
            path = str(item["name"])
            url = f"{self.scheme}://{path}"
            if self.locks.leftover_marker(path, now - created(item)):
                found.append(("orphan-marker", url, "a takeover marker its taker left", fix))
            else:
                named = split_name(path.rpartition("/")[2])
                if named is None or named[2] != ".lease" or named[:2] in stored:
                    continue
                if not self.locks.is_done(path) or self.exists(*named[:2]):
                    continue  # (the entry looked for again: it may be stored since)
                found.append(("orphan-lease", url, "a done lease without its entry", fix))
            if fix:
                self.remove_object(path)
        return found

    # --- capabilities this backend lacks -------------------------------------------------

    def note_use(self, name: str, key: str) -> None:
        """Objects have no last-use time."""

    def local_file(self, name: str, key: str, part: str = SUFFIX) -> str:
        """Objects are not local files."""
        raise StoreError(f"{self._url} holds objects, not local files to memory-map")

    def directory(self, name: str, key: str) -> Path:
        """``Cacheable`` entries have directories only in local stores."""
        raise _no_directories()

    def write_directory(self, name: str, key: str, fill: Callable[[Path], bytes]) -> bytes:
        """``Cacheable`` entries have directories only in local stores."""
        raise _no_directories()


def _no_directories() -> StoreError:
    return StoreError(
        "Cacheable results need a local cache_path (a remote store holds single objects)"
    )


def _unreachable(what: str, url: str, exc: BaseException) -> RemoteStoreError:
    detail = " ".join(str(exc).split())[:300]
    return RemoteStoreError(f"could not {what} {url}: {type(exc).__name__}: {detail}")
