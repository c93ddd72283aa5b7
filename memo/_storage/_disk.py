"""The local-directory backend: one file per entry, published atomically, read without locks.

Entries are ``<name>-<key>.memo`` files, so a directory listing shows which function each
belongs to; a ``Cacheable`` result also has a ``<name>-<key>.d`` directory. An entry is written
as an unnamed file and linked into place (or renamed from ``.tmp/``), so a reader sees the old
entry, the new one, or none, never a partial one. Key leases are kernel record locks
(``_locks``), which a killed holder drops at once. Last use is a file's access time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._exceptions import warn_once
from . import _files
from ._backend import SUFFIX, Capabilities, Listed, Outgoing, StoreError
from ._directory import exposure, leftovers, list_entries
from ._entry_file import read_rest, write_entry, write_hooked
from ._format import DamagedEntryError
from ._locks import KeyLocks

__all__ = ["DiskBackend"]

_FIRST_READ = 1 << 16  # a hit's first read: every small entry whole, with no fstat before it
_PROBE_AFTER = 8  # reads that found nothing in a row, after which a read checks first
_TOUCH_AFTER_NS = 60 * 10**9  # an access time this recent already says "used now"
_CAPABILITIES = Capabilities(
    files=True, mmap=True, last_use=True, directories=True, exactly_once=True
)


class _FileReader:
    """An open entry file, for range reads of one version of it."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def read(self, start: int, end: int) -> bytes:
        return os.pread(self.fd, max(0, end - start), start)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # closed even if close() reports (NFS)
            os.close(self.fd)


class DiskBackend:
    """Entries in one local directory (created ``0o700`` on first write)."""

    capabilities = _CAPABILITIES

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root: Path | str = Path(root).expanduser().absolute()
        self._root = str(self.root)
        self._tmp = os.path.join(self._root, ".tmp")
        # Kernel record locks, taken on every miss (they make the directory if need be).
        self.locks = KeyLocks(self._root)
        self._ready = False
        self._tmpfile = _files.HAVE_TMPFILE
        self._anchor = -1  # for os.link of an unnamed file (see _files.anchor)
        if self._tmpfile:
            try:
                self._anchor = _files.anchor()
            except OSError:  # no "/" to open (a sandbox?): named temporary files need none
                self._tmpfile = False
        self._exposed: str | None = None  # why others could write entries here, if they can
        self._checked = False
        self._misses_in_row = 0  # reads that found no entry since the last one that did

    def __repr__(self) -> str:
        return f"DiskBackend({self._root!r})"

    def location(self, name: str, key: str, part: str = SUFFIX) -> str:
        """The entry file's path (or its ``part``'s)."""
        return f"{self._root}/{name}-{key}{part}"

    def directory(self, name: str, key: str) -> Path:
        """The directory of a ``Cacheable`` entry."""
        return Path(f"{self._root}/{name}-{key}.d")

    def local_file(self, name: str, key: str, part: str = SUFFIX) -> str:
        """The entry file, or its ``part`` (it can be memory-mapped)."""
        return f"{self._root}/{name}-{key}{part}"

    # --- reading -------------------------------------------------------------------------

    def read(self, name: str, key: str, part: str = SUFFIX) -> tuple[Any, bytes | None] | None:
        """The entry's bytes (a large one's payload hashed as it is read), or None."""
        path = f"{self._root}/{name}-{key}{part}"
        if part != SUFFIX:
            return _read_part(path)
        # After a run of misses (a cache being filled) ask first whether the entry is there:
        # a failed open costs three times as much, in raising FileNotFoundError.
        if self._misses_in_row >= _PROBE_AFTER and not os.access(path, os.F_OK):
            return None
        try:
            fd = os.open(path, _files.O_READ)
        except (FileNotFoundError, NotADirectoryError):
            self._misses_in_row += 1
            return None
        if self._misses_in_row:
            self._misses_in_row = 0
        try:
            # The hit path: a small entry is one read and no fstat; a larger one (the first
            # read came back full) is sized, and checked piecewise first if it is large.
            first = os.pread(fd, _FIRST_READ, 0)
            if len(first) < _FIRST_READ:
                return first, None
            return read_rest(fd, first, key)
        finally:
            # close() closes even when it reports an error (a delayed write error, on NFS);
            # raising it here would turn a hit or a miss into an exception for the caller.
            try:  # noqa: SIM105 (try costs nothing here; contextlib.suppress would)
                os.close(fd)
            except OSError:
                pass

    def peek(self, name: str, key: str, limit: int | None = None, part: str = SUFFIX) -> Any:
        """The entry's bytes (its first ``limit``), leaving its access time alone."""
        return _files.read_quietly(self.location(name, key, part), limit)

    def open(self, name: str, key: str, part: str = SUFFIX) -> _FileReader | None:
        """The entry file (or its ``part``), opened for range reads; None if there is none."""
        try:
            fd = os.open(self.location(name, key, part), _files.O_READ)
        except OSError:
            return None
        try:
            return _FileReader(fd)
        except OSError:
            os.close(fd)
            return None

    def exists(self, name: str, key: str) -> bool:
        """Whether the entry file is there (no exception, no read)."""
        return os.access(f"{self._root}/{name}-{key}{SUFFIX}", os.F_OK)

    def note_use(self, name: str, key: str) -> None:
        """Set the entry's access time to now (its modification time stays its creation)."""
        path = self.location(name, key)
        with contextlib.suppress(OSError, NotImplementedError):
            st = os.stat(path, follow_symlinks=False)
            if st.st_atime_ns < time.time_ns() - _TOUCH_AFTER_NS and stat.S_ISREG(st.st_mode):
                os.utime(path, ns=(time.time_ns(), st.st_mtime_ns), follow_symlinks=False)

    def warn_unreadable(self, name: str, key: str, exc: OSError) -> None:
        """One warning per entry and kind of error (a symbolic link is named as such)."""
        path = self.location(name, key)
        if exc.errno == errno.ELOOP:
            message = f"memo: {path} is a symbolic link; memo never follows links in a cache"
        else:
            message = f"memo: could not read the cache entry {path}: {exc}"
        warn_once(("read", path, str(exc.errno)), message + "; the value is recomputed")

    def untrusted(self) -> str | None:
        """Why users other than this one can plant entries in the directory, or None."""
        if not self._checked:
            try:
                st = os.stat(self._root)
            except OSError:
                return None  # not there yet: memo creates it private
            self._checked = True
            self._exposed = exposure(st, self._root)
        return self._exposed

    # --- writing -------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Create the directory (``0o700``) and its temp folder; done once, before writing."""
        _files.make_store_directory(self._root)
        try:
            os.mkdir(self._tmp, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(self._tmp).st_mode):
                raise StoreError(f"{self._tmp} exists and is not a directory") from None
        self._ready = True
        _files.sweep_temp(self._tmp)

    def publish(self, name: str, key: str, entry: Outgoing, replace: bool) -> tuple[int, bytes]:
        """Write the entry into a file with no name (or a temporary one) and link it into
        place; ``FileExistsError`` if there is one and not ``replace``."""
        if not self._ready:
            self._prepare()
        stem = f"{name}-{key}"
        try:
            written = self._place(stem, entry, replace)
        except FileNotFoundError:
            # The directory was removed under us (e.g. `rm -rf` of the cache): recreate it,
            # and its lock file, so other processes share our locks again.
            self.locks.forget_lock_file()
            self._prepare()
            written = self._place(stem, entry, replace)
        if _files.phase_hook is not None:
            _files.phase_hook("published")
        return written

    def _place(self, stem: str, entry: Outgoing, replace: bool) -> tuple[int, bytes]:
        """Write ``entry`` and put it at ``stem`` and its part: linked from a file with no
        name where the filesystem has O_TMPFILE, else renamed from a named temporary file."""
        fd = self._unnamed_file() if self._tmpfile else None
        if fd is None:
            return self._rename_into_place(stem, entry, replace)
        try:
            written = _write(fd, entry)
            self._link(fd, stem, entry.part, replace)
        except BaseException:
            with contextlib.suppress(OSError):  # the original error is the one to report
                os.close(fd)
            raise
        # Linked, so published: a close() error now (a delayed write error, on NFS) does not
        # unstore it, and a damaged entry would fail its checks when read.
        try:  # noqa: SIM105 (this runs on every store: no contextlib.suppress)
            os.close(fd)
        except OSError:
            pass
        return written

    def _unnamed_file(self) -> int | None:
        """An O_TMPFILE file in the store's directory: it has no name until it is linked, so
        a writer killed at any point leaves nothing behind, and linking it publishes the
        whole entry at once. None (from now on) where the filesystem has no O_TMPFILE."""
        try:
            return os.open(self._root, _files.O_TMPFILE, 0o600)
        except OSError as exc:
            if exc.errno not in _files.NO_TMPFILE:
                raise
            self._tmpfile = False
            return None

    def _link(self, fd: int, stem: str, part: str, replace: bool) -> None:
        """Name the unnamed file ``fd`` (the file behind its /proc link: linkat with
        AT_SYMLINK_FOLLOW); ``FileExistsError`` if an entry is there and not ``replace``."""
        source = f"/proc/self/fd/{fd}"
        final = f"{self._root}/{stem}{part}"
        try:
            os.link(source, final, dst_dir_fd=self._anchor, follow_symlinks=True)
        except FileExistsError:
            if not replace:
                raise
            # Replacing an entry (refresh, a damaged one): link under a temporary name, then
            # rename over the old one, which is atomic.
            temp = self._temp_name(stem)
            os.link(source, temp, dst_dir_fd=self._anchor, follow_symlinks=True)
            _files.rename_into_place(temp, final)

    def _rename_into_place(self, stem: str, entry: Outgoing, replace: bool) -> tuple[int, bytes]:
        """Publish through a named temporary file in ``.tmp`` (no O_TMPFILE here)."""
        final = f"{self._root}/{stem}{entry.part}"
        temp = self._temp_name(stem)
        fd = os.open(temp, _files.O_CREATE, 0o600)
        try:
            written = _write(fd, entry)
        except BaseException:
            _files.discard(temp)
            raise
        finally:
            try:
                os.close(fd)
            except OSError:
                _files.discard(temp)  # else it stays in .tmp until this process has ended
                raise
        if not replace and os.path.lexists(final):
            # (A rename cannot be made create-only here; the key's lock keeps this process's
            # look and rename from racing another writer, and either entry is complete.)
            _files.discard(temp)
            raise FileExistsError(errno.EEXIST, "an entry is there already", final)
        _files.rename_into_place(temp, final)
        return written

    def _temp_name(self, stem: str) -> str:
        """A fresh name in ``.tmp`` for ``stem`` (``<name>-<key>``), with this pid in it so a
        sweep knows when its writer has died."""
        return os.path.join(self._tmp, f"{stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp")

    def write_directory(self, name: str, key: str, fill: Callable[[Path], bytes]) -> bytes:
        """Write a Cacheable's directory aside, then swap it into place; returns the manifest."""
        if not self._ready:
            self._prepare()
        staging = Path(self._temp_name(f"{name}-{key}") + ".d")
        staging.mkdir(mode=0o700)
        try:
            manifest = fill(staging)
            _files.reached("staged")
            final = self.directory(name, key)
            if final.exists() or final.is_symlink():
                old = Path(self._temp_name(f"{name}-{key}") + ".old")
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

    # --- managing ------------------------------------------------------------------------

    def delete(
        self, name: str, key: str, part: str | None = None, payload: str | None = None
    ) -> bool:
        """Remove one entry (its ``payload`` file and directory too, if any), or only its
        ``part``; True if it existed."""
        if part is not None:
            try:
                os.unlink(self.location(name, key, part))
            except FileNotFoundError:
                return False
            return True
        directory = self.directory(name, key)
        try:
            os.unlink(self.location(name, key))
        except FileNotFoundError:
            return False
        finally:
            if payload is not None:
                _files.discard(self.location(name, key, payload))
            if directory.is_dir() and not directory.is_symlink():
                shutil.rmtree(directory, ignore_errors=True)
        return True

    def listing(self, name: str | None = None) -> list[Listed]:
        """The entry files and their times, from ``stat`` alone (no file is read)."""
        return list_entries(self._root, name)

    def leftovers(self, fix: bool) -> list[tuple[str, str, str, bool]]:
        """Directories without their entry and temp files of writers that died."""
        return leftovers(self._root, self._tmp, fix)


def _read_part(path: str) -> tuple[Any, bytes | None] | None:
    """A payload file's bytes (a large one hashed as it is read), or None; a sparse one (a
    planted hole, not a written file) is refused before it is read."""
    try:
        fd = os.open(path, _files.O_READ)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        st = os.fstat(fd)
        if st.st_size >= _files.SMALL and _files.is_sparse(st):
            raise DamagedEntryError(f"its payload file {path} is sparse: not a written file")
        if st.st_size >= _files.PARALLEL:
            return _files.read_hashing(fd, st.st_size, 0, st.st_size)
        return _files.read_all(fd, st.st_size), None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _write(fd: int, entry: Outgoing) -> tuple[int, bytes]:
    """Fill the new file ``fd`` with ``entry``, then run its ``then``."""
    write, data, _, then = entry
    if write is None and _files.phase_hook is None:
        # The usual entry: written by one call, no writer called (every store).
        whole, fingerprint = data
        count = os.write(fd, whole)
        if count < len(whole):  # resumed where the write stopped
            count = _files.pwrite_all(fd, memoryview(whole)[count:], count)
        written = count, fingerprint
    else:
        written = write_hooked(fd, write or write_entry, data)
    if then is not None:
        then(*written)
    return written
