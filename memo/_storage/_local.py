"""A store in a local directory: one file per entry, published atomically, checked on read.

Entries are ``<name>-<key>.memo`` files (see ``_format``), so a directory listing shows which
function each belongs to. Writes go to ``.tmp/`` and are renamed into place, so a reader sees
the old entry, the new one, or none, never a partial one. Reads take no lock. The store knows
nothing about functions: it maps (name, key) to values.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._exceptions import warn_once
from ._format import DamagedEntryError, pack, read_metadata_line, unpack
from ._locks import KeyLocks
from ._serializers import Serializer, get_serializer

__all__ = ["MISS", "LocalStore", "StoreError", "sanitize"]

SUFFIX = ".memo"
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_O_CREATE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_O_TMPFILE = os.O_WRONLY | getattr(os, "O_TMPFILE", 0) | getattr(os, "O_CLOEXEC", 0)
_HAVE_TMPFILE = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
# Errors that mean "this filesystem or kernel cannot make unnamed files".
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_KEY = re.compile(r"^[0-9a-f]{32}$")
_TEMP_MAX_AGE = 24 * 3600.0
_SMALL = 1 << 20


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()


class StoreError(Exception):
    """Internal: a store operation failed; ``reason`` is one line for the user."""


def sanitize(name: str) -> str:
    """A file-name-safe form of a function's name (letters, digits, ``_`` and ``.``).

    ``outer.<locals>.inner`` becomes ``inner``: the key, not the name, tells entries apart.
    """
    name = name.rpartition("<locals>.")[2]
    cleaned = _UNSAFE.sub("_", name).strip("._") or "f"
    return cleaned[:80]


class LocalStore:
    """Entries in one local directory (created ``0o700`` on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self._root = str(self.root)
        self._tmp = os.path.join(self._root, ".tmp")
        self._locks = KeyLocks(self._root)
        self._ready = False
        self._tmpfile = _HAVE_TMPFILE

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other._root == self._root

    def __hash__(self) -> int:
        return hash(self._root)

    def path(self, name: str, key: str) -> str:
        """Where the entry for ``key`` of ``name`` lives."""
        return f"{self._root}/{name}-{key}{SUFFIX}"

    # --- reading -------------------------------------------------------------------------

    def load(self, name: str, key: str) -> Any:
        """The stored value, or ``MISS``; a damaged or unreadable entry is a miss, warned once."""
        path = f"{self._root}/{name}-{key}{SUFFIX}"
        try:
            fd = os.open(path, _O_READ)
        except (FileNotFoundError, NotADirectoryError):
            # No entry can exist (e.g. the cache path is under a regular file); failing to
            # store there is what gets reported, once.
            return MISS
        except OSError as exc:
            self._warn_read(path, exc)
            return MISS
        try:
            data = _read_all(fd)
        except OSError as exc:
            self._warn_read(path, exc)
            return MISS
        finally:
            os.close(fd)
        try:
            serializer_name, payload = unpack(data, bytes.fromhex(key))
        except DamagedEntryError as exc:
            warn_once(
                ("damaged", path),
                f"memo: the cache entry {path} is damaged ({exc}); it is ignored, "
                "recomputed and replaced",
            )
            return MISS
        try:
            if serializer_name == "pickle":
                return pickle.loads(payload)  # the default, without a lookup
            return get_serializer(serializer_name).loads(payload)
        except Exception as exc:
            warn_once(
                ("unloadable", path),
                f"memo: the cache entry {path} passed its integrity check but could not be "
                f"loaded ({type(exc).__name__}: {exc}); it is recomputed and replaced",
            )
            return MISS

    def exists(self, name: str, key: str) -> bool:
        """Whether an entry file is present (cheap: no exception, no read, no check)."""
        return os.access(f"{self._root}/{name}-{key}{SUFFIX}", os.F_OK)

    def contains(self, name: str, key: str) -> bool:
        """Whether a readable, undamaged entry exists (checks the digest, does not load)."""
        path = self.path(name, key)
        try:
            fd = os.open(path, _O_READ)
        except OSError:
            return False
        try:
            unpack(_read_all(fd), bytes.fromhex(key))
        except (OSError, DamagedEntryError):
            return False
        finally:
            os.close(fd)
        return True

    def _warn_read(self, path: str, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            message = f"memo: {path} is a symbolic link; memo never follows links in a cache"
        else:
            message = f"memo: could not read the cache entry {path}: {exc}"
        warn_once(("read", path, str(exc.errno)), message + "; the value is recomputed")

    # --- writing -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the directory (``0o700``) and its temp folder; done once, before writing."""
        if self._ready:
            return
        os.makedirs(self._root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self._tmp, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(self._tmp).st_mode):
                raise StoreError(f"{self._tmp} exists and is not a directory") from None
        self._ready = True
        self._sweep_temp()

    def _sweep_temp(self) -> None:
        """Remove temporary files left by writers that died (their pid is gone, or very old)."""
        try:
            names = os.listdir(self._tmp)
        except OSError:
            return
        now = time.time()
        for name in names:
            pid_text = name.rsplit(".", 3)[-3] if name.count(".") >= 3 else ""
            full = os.path.join(self._tmp, name)
            try:
                age = now - os.lstat(full).st_mtime
                if not _alive(pid_text) or age > _TEMP_MAX_AGE:
                    os.unlink(full)
            except (OSError, ValueError):
                continue

    def save(
        self,
        name: str,
        key: str,
        value: Any,
        metadata: dict[str, Any],
        serializer: Serializer,
        fixed_metadata: bytes = b"",
    ) -> int:
        """Serialize and publish an entry atomically; returns its size in bytes.

        ``fixed_metadata`` is JSON members (``"a":1,"b":2``) the caller encodes once and
        reuses; they are written before ``metadata``'s. Raises ``StoreError`` (nothing partial
        left behind) if serializing or writing fails.
        """
        try:
            payload = serializer.dumps(value)
        except Exception as exc:
            raise StoreError(
                f"the result ({type(value).__qualname__}) could not be serialized with "
                f"{serializer.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        size = sum(memoryview(chunk).nbytes for chunk in payload)
        metadata = {**metadata, "serializer": serializer.name, "payload_bytes": size}
        line = json.dumps(metadata, separators=(",", ":"), default=str).encode()
        if fixed_metadata:
            line = b"{" + fixed_metadata + b"," + line[1:]
        chunks = pack(line, bytes.fromhex(key), serializer.name, payload)
        try:
            self.prepare()
            try:
                return self._publish(name, key, chunks)
            except FileNotFoundError:
                # The directory was removed under us (e.g. `rm -rf` of the cache): recreate it,
                # and its lock file, so other processes share our locks again.
                self._ready = False
                self._locks.forget_lock_file()
                self.prepare()
                return self._publish(name, key, chunks)
        except OSError as exc:
            raise StoreError(f"could not write to {self._root}: {exc}") from exc

    def _publish(self, name: str, key: str, chunks: list[Any]) -> int:
        final = self.path(name, key)
        if self._tmpfile:
            try:
                fd = os.open(self._root, _O_TMPFILE, 0o600)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
                self._tmpfile = False  # this filesystem has no O_TMPFILE: use named temp files
            else:
                try:
                    return self._publish_unnamed(fd, name, key, final, chunks)
                finally:
                    os.close(fd)
        temp = self._temp_name(name, key)
        fd = os.open(temp, _O_CREATE, 0o600)
        try:
            total = _write_all(fd, chunks)
        except BaseException:
            _discard(temp)
            raise
        finally:
            os.close(fd)
        _reached("written")
        _rename_into_place(temp, final)
        return total

    def _publish_unnamed(self, fd: int, name: str, key: str, final: str, chunks: list[Any]) -> int:
        # An O_TMPFILE file has no name until it is linked, so a writer killed at any point
        # leaves nothing behind, and linking it publishes the whole entry at once.
        total = _write_all(fd, chunks)
        _reached("written")
        source = f"/proc/self/fd/{fd}"
        try:
            _link(source, final)
        except FileExistsError:
            # Replacing an entry (refresh, damaged or racing writer): link under a temporary
            # name, then rename over the old one, which is atomic.
            temp = self._temp_name(name, key)
            _link(source, temp)
            _rename_into_place(temp, final)
        return total

    def _temp_name(self, name: str, key: str) -> str:
        return os.path.join(self._tmp, f"{name}-{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp")

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lock (yields False when ``timeout`` ran out)."""
        self.prepare()
        return self._locks.hold(key, timeout)

    @property
    def locks(self) -> KeyLocks:
        """The store's key locks (for async callers)."""
        return self._locks

    # --- managing ------------------------------------------------------------------------

    def delete(self, name: str, key: str) -> bool:
        """Remove one entry; True if it existed."""
        try:
            os.unlink(self.path(name, key))
        except FileNotFoundError:
            return False
        return True

    def iter_entries(self, name: str | None = None) -> Iterator[tuple[str, str, Path]]:
        """(name, key, path) of the entries, optionally only those stored under ``name``."""
        try:
            scan = os.scandir(self._root)
        except FileNotFoundError:
            return
        with scan:
            for item in scan:
                stem, dot, suffix = item.name.rpartition(".")
                if not dot or "." + suffix != SUFFIX or not item.is_file(follow_symlinks=False):
                    continue
                entry_name, dash, key = stem.rpartition("-")
                if not dash or not _KEY.match(key):
                    continue
                if name is None or entry_name == name:
                    yield entry_name, key, Path(item.path)

    def metadata(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """The metadata recorded in an entry file, or None if it cannot be read."""
        try:
            fd = os.open(os.fspath(path), _O_READ)
        except OSError:
            return None
        try:
            line = read_metadata_line(os.read(fd, 1 << 17))
        except OSError:
            return None
        finally:
            os.close(fd)
        if line is None:
            return None
        try:
            parsed = json.loads(line)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None


# Tests set this to stop a writer at a known phase of publishing ("written": all bytes are
# in an unpublished file; "named": that file has a temporary name) and kill it there.
phase_hook: Callable[[str], None] | None = None


def _reached(phase: str) -> None:
    if phase_hook is not None:
        phase_hook(phase)


_anchor_fd: int | None = None


def _discard(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _rename_into_place(temp: str, final: str) -> None:
    """Atomically replace ``final`` with the complete file at ``temp`` (removed on failure)."""
    _reached("named")
    try:
        os.replace(temp, final)
    except BaseException:
        _discard(temp)
        raise


def _link(source: str, target: str) -> None:
    """``linkat(source, target, AT_SYMLINK_FOLLOW)``: names the file behind /proc/self/fd/N."""
    global _anchor_fd
    if _anchor_fd is None:
        _anchor_fd = os.open("/", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    # CPython calls plain link(2), which does not follow the /proc symlink, unless a directory
    # descriptor is given; both paths are absolute, so the descriptor itself is never used.
    os.link(source, target, dst_dir_fd=_anchor_fd, follow_symlinks=True)


def _read_all(fd: int) -> bytes | bytearray:
    size = os.fstat(fd).st_size
    if size < _SMALL:
        # One byte more than expected, so a file that grew meanwhile fails the size check.
        return os.read(fd, size + 1)
    buffer = bytearray(size + 1)
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = os.readv(fd, [view[filled:]])
        if count == 0:
            break
        filled += count
    del view
    del buffer[filled:]
    return buffer


def _write_all(fd: int, chunks: list[Any]) -> int:
    total = 0
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view:
            written = os.write(fd, view)
            total += written
            view = view[written:]
    return total


def _alive(pid_text: str) -> bool:
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
