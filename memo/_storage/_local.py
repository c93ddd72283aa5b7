"""A store in a local directory: one file per entry, published atomically, checked on read.

Entries are ``<name>-<key>.memo`` files (see ``_format``), so a directory listing shows which
function each belongs to; a ``Cacheable`` result also has a ``<name>-<key>.d`` directory. An
entry is written as an unnamed file and linked into place (or renamed from ``.tmp/``), so a
reader sees the old entry, the new one, or none, never a partial one. Reads take no lock. The
store knows nothing about functions: it maps (name, key) to values.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._exceptions import warn_once
from . import _files
from ._budget import Budget
from ._cacheable import CACHEABLE, check_directory, read_directory, write_directory
from ._entry_file import (
    checked_header,
    deserialize,
    entry_age,
    fromhex,
    read_entry,
    read_rest,
    warn_damaged,
    warn_unloadable,
    write_chunks,
    write_entry,
    write_hooked,
    write_large,
)
from ._format import (
    MAX_METADATA,
    DamagedEntryError,
    Header,
    metadata_line,
    pack,
    parse_metadata,
    small_entry,
    unpack,
)
from ._locks import KeyLocks, hold
from ._serializers import Serializer

__all__ = ["MISS", "LocalStore", "StoreError", "sanitize"]

SUFFIX = ".memo"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_KEY = re.compile(r"^[0-9a-f]{32}$")
_TOUCH_AFTER_NS = 60 * 10**9  # last use is recorded at most once a minute per entry
_FIRST_READ = 1 << 16  # a hit's first read: every small entry whole, with no fstat before it
_USED_MAX = 1 << 16  # entries whose last use a process remembers (then it starts over)
_PROBE_AFTER = 8  # loads that found nothing in a row, after which a load checks first

_shared: dict[str, LocalStore] = {}
_shared_lock = threading.Lock()


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()


class StoreError(Exception):
    """Internal: a store operation failed; the message is one line for the user."""


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
        # The key locks (acquire/release, and their async forms), taken on every miss.
        self.locks = KeyLocks(self._root)
        self._ready = False
        self._tmpfile = _files.HAVE_TMPFILE
        self._anchor = -1  # for os.link of an unnamed file (see _files.anchor)
        if self._tmpfile:
            try:
                self._anchor = _files.anchor()
            except OSError:  # no "/" to open (a sandbox?): named temporary files need none
                self._tmpfile = False
        self._budget: Budget | None = None
        self._exposed: str | None = None  # why others could write entries here, if they can
        self._checked = False
        self._used: dict[str, int] = {}  # entry path -> when this process last noted its use
        self._misses_in_row = 0  # loads that found no entry since the last one that did

    @classmethod
    def shared(cls, root: str | os.PathLike[str]) -> LocalStore:
        """The one store object of this process for ``root`` (so budgets and locks are shared)."""
        path = str(Path(root).expanduser().absolute())
        with _shared_lock:
            store = _shared.get(path)
            if store is None:
                store = _shared[path] = cls(path)
            return store

    def limit_size(self, max_bytes: int) -> None:
        """Keep the store under ``max_bytes``, evicting least-recently-used entries as it
        writes (the smallest limit wins if several functions set one)."""
        if self._budget is None or max_bytes < self._budget.limit:
            self._budget = Budget(self._root, max_bytes)

    @property
    def max_size(self) -> int | None:
        """The size budget in bytes, if one is set."""
        return self._budget.limit if self._budget is not None else None

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other._root == self._root

    def __hash__(self) -> int:
        return hash(self._root)

    def path(self, name: str, key: str) -> str:
        """Where the entry for ``key`` of ``name`` lives."""
        return f"{self._root}/{name}-{key}{SUFFIX}"

    def directory(self, name: str, key: str) -> Path:
        """The directory of a ``Cacheable`` entry."""
        return Path(f"{self._root}/{name}-{key}.d")

    # --- reading -------------------------------------------------------------------------

    def load(
        self,
        name: str,
        key: str,
        own: Mapping[str, Serializer] | None = None,
        secret_keys: Sequence[bytes] = (),
        max_age: float | None = None,
    ) -> Any:
        """The stored value, or ``MISS``; a damaged or unreadable entry is a miss, warned once.

        ``own`` are the caller's serializers by name (used when the entry names one, e.g. to
        memory-map); with ``secret_keys`` only entries signed by one of them are accepted;
        entries older than ``max_age`` seconds are misses.
        """
        path = f"{self._root}/{name}-{key}{SUFFIX}"
        # After a run of misses (a cache being filled) ask first whether the entry is there:
        # a failed open costs three times as much, in raising FileNotFoundError.
        if self._misses_in_row >= _PROBE_AFTER and not os.access(path, os.F_OK):
            return MISS
        try:
            fd = os.open(path, _files.O_READ)
        except (FileNotFoundError, NotADirectoryError):
            # No entry (or no directory at all: failing to store there is reported, once).
            self._misses_in_row += 1
            return MISS
        except OSError as exc:
            self._warn_read(path, exc)
            return MISS
        if self._misses_in_row:
            self._misses_in_row = 0
        try:
            if not self._checked:
                self._check_exposure()
            if self._exposed is not None and not secret_keys:
                return MISS  # anyone may have written it: not read (saving says why, once)
            if own is not None and not secret_keys and _maps(own):
                return self._load_mapped(fd, os.fstat(fd), name, key, own, max_age)
            # The hit path: a small entry is one read and no fstat; a larger one (the first
            # read came back full) is sized, and checked piecewise first if it is large.
            first = os.pread(fd, _FIRST_READ, 0)
            if len(first) < _FIRST_READ:
                header, payload = unpack(first, fromhex(key), secret_keys)
            else:
                data, digest = read_rest(fd, first, key)
                header, payload = unpack(data, fromhex(key), secret_keys, digest)
            if max_age is not None and entry_age(header) > max_age:
                return MISS
            last = self._used.get(path)
            if last is None or time.monotonic_ns() - last > _TOUCH_AFTER_NS:
                self._note_use(fd, path)
            if payload[0] == 0x80 and header.serializer == "pickle":
                return pickle.loads(payload)  # a plain pickle, the common case: no lookups
            return self._deserialize(header, payload, name, key, own)
        except OSError as exc:
            self._warn_read(path, exc)
            return MISS
        except DamagedEntryError as exc:
            warn_damaged(path, exc)
            return MISS
        except Exception as exc:
            warn_unloadable(path, exc)
            return MISS
        finally:
            # close() closes even when it reports an error (a delayed write error, on NFS);
            # raising it here would turn a hit or a miss into an exception for the caller.
            # (try costs nothing on the hit path; contextlib.suppress would.)
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass

    def _note_use(self, fd: int, path: str) -> None:
        # Last use (the access time, for the size budget's LRU order) is checked at most once
        # a minute per entry by each process, so a repeated hit costs no fstat.
        if len(self._used) >= _USED_MAX:
            self._used.clear()
        self._used[path] = time.monotonic_ns()
        st = os.fstat(fd)
        if st.st_atime_ns < time.time_ns() - _TOUCH_AFTER_NS:
            _touch(fd, st)

    def _deserialize(
        self,
        header: Header,
        payload: memoryview,
        name: str,
        key: str,
        own: Mapping[str, Serializer] | None,
    ) -> Any:
        if header.serializer == CACHEABLE:
            return read_directory(payload, self.directory(name, key))
        return deserialize(header, payload, own)

    def _load_mapped(
        self,
        fd: int,
        st: os.stat_result,
        name: str,
        key: str,
        own: Mapping[str, Serializer],
        max_age: float | None,
    ) -> Any:
        header = checked_header(fd, st.st_size, key)
        if max_age is not None and entry_age(header) > max_age:
            return MISS
        serializer: Any = own.get(header.serializer)
        if not getattr(serializer, "mmap_mode", None):
            data, digest = read_entry(fd, st, key)
            full, payload = unpack(data, fromhex(key), (), digest)
            return self._deserialize(full, payload, name, key, own)
        return serializer.load_file(self.path(name, key), header.offset, header.length)

    def header(self, name: str, key: str) -> Header | None:
        """The checked header of an entry (fingerprint, serializer, ...) without its payload."""
        try:
            fd = os.open(self.path(name, key), _files.O_READ)
        except OSError:
            return None
        try:
            header = checked_header(fd, os.fstat(fd).st_size, key)
        except (OSError, DamagedEntryError):
            return None
        finally:
            with contextlib.suppress(OSError):  # as in load: closed even if close() reports
                os.close(fd)
        return header

    def exists(self, name: str, key: str) -> bool:
        """Whether an entry file is present (cheap: no exception, no read, no check)."""
        return os.access(f"{self._root}/{name}-{key}{SUFFIX}", os.F_OK)

    def contains(
        self,
        name: str,
        key: str,
        max_age: float | None = None,
        secret_keys: Sequence[bytes] = (),
    ) -> bool:
        """Whether an entry ``load`` would accept exists (checks the digests, the signature
        with ``secret_keys`` and a ``Cacheable``'s directory; does not deserialize)."""
        try:
            fd = os.open(self.path(name, key), _files.O_READ)
        except OSError:
            return False
        try:
            if not self._checked:
                self._check_exposure()
            if self._exposed is not None and not secret_keys:
                return False  # load would not read it
            data, digest = read_entry(fd, os.fstat(fd), key)
            header, payload = unpack(data, fromhex(key), secret_keys, digest)
            if header.serializer == CACHEABLE:
                check_directory(payload, self.directory(name, key))
        except (OSError, DamagedEntryError):
            return False
        finally:
            with contextlib.suppress(OSError):  # as in load: closed even if close() reports
                os.close(fd)
        return max_age is None or entry_age(header) <= max_age

    def _warn_read(self, path: str, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            message = f"memo: {path} is a symbolic link; memo never follows links in a cache"
        else:
            message = f"memo: could not read the cache entry {path}: {exc}"
        warn_once(("read", path, str(exc.errno)), message + "; the value is recomputed")

    def _check_exposure(self) -> None:
        """Note whether other users can write to the directory (then only signed entries
        are read, and nothing is written unsigned)."""
        try:
            st = os.stat(self._root)
        except OSError:
            return  # not there yet: memo creates it private
        self._checked = True
        self._exposed = _exposure(st, self._root)

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
        _files.sweep_temp(self._tmp)

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
        """Serialize and publish an entry atomically; returns its fingerprint (hex).

        ``metadata`` is JSON object members (``"a":1,"b":2``, no braces) for the entry's
        metadata line; ``fixed_metadata`` is more, which the caller encodes once and reuses,
        written first. With ``secret`` the entry is signed.
        Raises ``StoreError`` (nothing partial left behind) if serializing or writing fails.
        """
        try:
            if not self._ready:
                self.prepare()
            if not self._checked:
                self._check_exposure()
            if self._exposed is not None and secret is None:
                raise StoreError(self._exposed)
            # (Its name read once: a class attribute read through an instance is looked up
            # anew each time.)
            kind = serializer.name
            if kind == CACHEABLE:
                payload: Sequence[Any] = [self._write_directory(name, key, value)]
            else:
                payload = serializer.dumps(value)
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"could not write to {self._root}: {exc}") from exc
        except Exception as exc:
            raise StoreError(
                f"the result ({type(value).__qualname__}) could not be serialized with "
                f"{serializer.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        budget = self._budget
        first: Any = payload[0] if len(payload) == 1 else None
        if type(first) is bytes:
            size = len(first)
        else:
            size = sum(memoryview(chunk).nbytes for chunk in payload)
        if budget is not None and not budget.fits(size):
            self._refuse(
                name,
                key,
                serializer,
                f"the result ({size} bytes) is larger than the store's whole size budget "
                f"({budget.limit} bytes), so it is not stored",
            )
        keyed = fromhex(key)
        # A writer and its data, not a functools.partial: a partial is called from C, which
        # costs a fresh interpreter frame on every store. No writer: _publish writes the
        # entry's bytes (data) itself.
        write: Callable[[int, Any], tuple[int, bytes]] | None = None
        data: Any
        line: bytes | None = None
        try:
            small = type(first) is bytes and size < _files.SMALL and secret is None
            if small and fixed_metadata and metadata:
                # The usual entry (every miss of a function with a small result), made in
                # one step (memo's calls give both kinds of metadata).
                data = small_entry(metadata, fixed_metadata, kind, keyed, first)
            else:
                line = metadata_line(metadata, kind, size, fixed_metadata)
        except ValueError as exc:  # too long for the entry format
            self._refuse(name, key, serializer, str(exc))
        if line is not None:  # any other entry: its line, then its writer or its bytes
            if secret is None and size >= _files.SMALL:
                # A large payload is written first, each piece hashed as it is written, and
                # the head (which holds the payload's digest) last: one pass over the data
                # instead of two. The file has no name, or a temporary one, until complete.
                write, data = write_large, (line, keyed, kind, payload)
            else:
                chunks, fingerprint = pack(line, keyed, kind, payload, secret)
                if len(chunks) == 1:
                    data = chunks[0], fingerprint
                else:
                    write, data = write_chunks, (chunks, fingerprint)
        try:
            try:
                written, fingerprint = self._publish(name, key, write, data)
            except FileNotFoundError:
                # The directory was removed under us (e.g. `rm -rf` of the cache): recreate it,
                # and its lock file, so other processes share our locks again.
                self._ready = False
                self.locks.forget_lock_file()
                self.prepare()
                written, fingerprint = self._publish(name, key, write, data)
        except OSError as exc:
            raise StoreError(f"could not write to {self._root}: {exc}") from exc
        if _files.phase_hook is not None:
            _files.phase_hook("published")
        if budget is not None:
            try:
                budget.record(written)
            except OSError as exc:
                # The entry is stored; only eviction failed, and the next write retries it.
                warn_once(
                    ("evict", self._root),
                    f"memo: could not evict old entries from {self._root}: {exc}; the store "
                    "may exceed its size budget until a later write succeeds",
                )
        return fingerprint.hex()

    def _refuse(self, name: str, key: str, serializer: Serializer, why: str) -> NoReturn:
        """Store nothing for ``key`` (and remove a Cacheable result's directory, already
        written): raises ``StoreError`` saying ``why``."""
        if serializer.name == CACHEABLE:
            shutil.rmtree(self.directory(name, key), ignore_errors=True)
        raise StoreError(why)

    def _write_directory(self, name: str, key: str, value: Any) -> bytes:
        """Write a Cacheable's directory aside, then swap it into place; returns the manifest."""
        staging = Path(self._temp_name(name, key) + ".d")
        staging.mkdir(mode=0o700)
        try:
            manifest = write_directory(value, staging)
            _files.reached("staged")
            final = self.directory(name, key)
            if final.exists() or final.is_symlink():
                old = Path(self._temp_name(name, key) + ".old")
                os.rename(final, old)
                _files.reached("moved-aside")
                # No is_dir() first: if that failed, the old directory would stay in .tmp.
                # rmtree never follows a link at ``old``; discard removes what it leaves.
                shutil.rmtree(old, ignore_errors=True)
                _files.discard(str(old))  # something planted there: never followed
            os.rename(staging, final)
            _files.reached("placed")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return manifest

    def _publish(
        self,
        name: str,
        key: str,
        write: Callable[[int, Any], tuple[int, bytes]] | None,
        data: Any,
    ) -> tuple[int, bytes]:
        """Write an entry with ``write(fd, data)`` (it gives the byte count and the
        fingerprint) and put it in place atomically; returns what ``write`` gave. Without
        ``write``, ``data`` is a small entry's bytes and fingerprint, written here."""
        final = f"{self._root}/{name}-{key}{SUFFIX}"
        if self._tmpfile:
            # An O_TMPFILE file has no name until it is linked, so a writer killed at any point
            # leaves nothing behind, and linking it publishes the whole entry at once.
            try:
                fd = os.open(self._root, _files.O_TMPFILE, 0o600)
            except OSError as exc:
                if exc.errno not in _files.NO_TMPFILE:
                    raise
                self._tmpfile = False  # this filesystem has no O_TMPFILE: use named temp files
            else:
                try:
                    if write is None and _files.phase_hook is None:
                        # The usual entry: written by one call, no writer called (every store).
                        entry, fingerprint = data
                        count = os.write(fd, entry)
                        if count < len(entry):  # resumed where the write stopped
                            count = _files.pwrite_all(fd, memoryview(entry)[count:], count)
                        written = count, fingerprint
                    else:
                        written = write_hooked(fd, write or write_entry, data)
                    # Names the file behind the /proc link (linkat, AT_SYMLINK_FOLLOW).
                    source = f"/proc/self/fd/{fd}"
                    try:
                        os.link(source, final, dst_dir_fd=self._anchor, follow_symlinks=True)
                    except FileExistsError:
                        # Replacing an entry (refresh, damaged or racing writer): link under a
                        # temporary name, then rename over the old one, which is atomic.
                        temp = self._temp_name(name, key)
                        os.link(source, temp, dst_dir_fd=self._anchor, follow_symlinks=True)
                        _files.rename_into_place(temp, final)
                except BaseException:
                    with contextlib.suppress(OSError):  # the original error is the one to report
                        os.close(fd)
                    raise
                # Linked, so published: a close() error now (a delayed write error, on NFS)
                # does not unstore it, and a damaged entry would fail its checks when read.
                # (try, not contextlib.suppress: this runs on every store.)
                try:  # noqa: SIM105
                    os.close(fd)
                except OSError:
                    pass
                return written
        temp = self._temp_name(name, key)
        fd = os.open(temp, _files.O_CREATE, 0o600)
        try:
            total = write_hooked(fd, write or write_entry, data)
        except BaseException:
            _files.discard(temp)
            raise
        finally:
            try:
                os.close(fd)
            except OSError:
                _files.discard(temp)  # else it stays in .tmp until this process has ended
                raise
        _files.rename_into_place(temp, final)
        return total

    def _temp_name(self, name: str, key: str) -> str:
        return os.path.join(self._tmp, f"{name}-{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp")

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lock (it gives False when ``timeout`` ran out)."""
        if not self._ready:
            self.prepare()
        return hold(self.locks, key, timeout)

    # --- managing ------------------------------------------------------------------------

    def delete(self, name: str, key: str) -> bool:
        """Remove one entry (and its directory, if any); True if it existed."""
        directory = self.directory(name, key)
        try:
            os.unlink(self.path(name, key))
        except FileNotFoundError:
            return False
        finally:
            if directory.is_dir() and not directory.is_symlink():
                shutil.rmtree(directory, ignore_errors=True)
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
            # Looking is not using: the access time is the entry's last use.
            head = _files.read_quietly(os.fspath(path), MAX_METADATA + 1)
        except OSError:
            return None
        return parse_metadata(bytes(head))


def _exposure(st: os.stat_result, root: str) -> str | None:
    """Why users other than this one can plant entries in the directory ``st``, or None."""
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if uid is None:  # pragma: no cover - Windows: no modes to check
        return None
    if st.st_mode & stat.S_IWOTH:
        why = f"is writable by every user (mode {stat.S_IMODE(st.st_mode):o})"
    elif st.st_uid not in (uid, 0):
        why = f"belongs to another user (uid {st.st_uid})"
    elif st.st_mode & stat.S_IWGRP and st.st_uid != uid:
        why = f"is writable by its group (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        return None
    return (
        f"the cache directory {root} {why}, so anyone could plant entries that unpickle "
        "code; memo neither reads nor writes it unless entries are signed (set secret_key= "
        "or MEMO_SECRET_KEY), or make it private (chmod 700)"
    )


def _maps(own: Mapping[str, Serializer]) -> bool:
    return any(getattr(serializer, "mmap_mode", None) for serializer in own.values())


def _touch(fd: int, st: os.stat_result) -> None:
    # Last use is the access time (the modification time stays the publish time), set
    # through the descriptor we already hold: no rewrite, no extra open.
    with contextlib.suppress(OSError):
        os.utime(fd, ns=(time.time_ns(), st.st_mtime_ns))
