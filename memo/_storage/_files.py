"""Low-level file operations of the local store: atomic publishing, whole reads, sweeping.

Kept apart from the store's logic so each stays readable; nothing here knows about entries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import xxhash

__all__ = [
    "HAVE_TMPFILE",
    "NO_TMPFILE",
    "O_CREATE",
    "O_READ",
    "O_TMPFILE",
    "PARALLEL",
    "anchor",
    "discard",
    "is_dead_temp",
    "is_sparse",
    "make_store_directory",
    "phase_hook",
    "preallocate",
    "pwrite_all",
    "reached",
    "read_all",
    "read_hashing",
    "read_quietly",
    "rename_into_place",
    "sweep_temp",
]

O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
O_CREATE = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
O_TMPFILE = os.O_WRONLY | getattr(os, "O_TMPFILE", 0) | getattr(os, "O_CLOEXEC", 0)
HAVE_TMPFILE = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
# Errors that mean "this filesystem or kernel cannot make unnamed files".
NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP}
SMALL = 1 << 20
_PAGE = 4096
PARALLEL = 32 << 20  # payloads from this size on are hashed by a second thread
_READ_PIECE = 16 << 20  # a large read is handed to the hashing thread in pieces this big
_FALLOC_FL_KEEP_SIZE = 1
_fallocate: Any = None  # libc's fallocate(2), looked up at the first large write (Linux)
_SPARSE_RATIO = 8  # a file with under 1/8 of its size allocated was not written by memo
_TEMP_MAX_AGE = 24 * 3600.0
_O_NOATIME = getattr(os, "O_NOATIME", 0)
# <name>-<key>.<pid>.<token>.tmp, possibly with .d (a directory being built) or .old after it.
_TEMP_NAME = re.compile(r"-[0-9a-f]{32}\.([0-9]+)\.[0-9a-f]{8}\.tmp(?:\.d|\.old)?$")

# Tests set this to stop a writer at a known phase of publishing and kill it there, in order:
# "locked" (the key's lock is held), "staged", "moved-aside", "placed" (a Cacheable's
# directory is written under .tmp, the old one is moved into .tmp, the new one is in place),
# "opened" (the entry's file is created, empty), "payload" (after each chunk written; the
# first leaves part of an entry: a large unsigned one's head is written last), "written"
# (all bytes are in an unpublished file), "named" (that file has a temporary name),
# "published" (the entry is in place, lock held). The phases every store passes through are
# guarded where they are reached (``if phase_hook is not None``): a call costs on every store.
phase_hook: Callable[[str], None] | None = None


def reached(phase: str) -> None:
    """Call the test hook, if one is set, at a phase of publishing."""
    if phase_hook is not None:
        phase_hook(phase)


_anchor_fd: int | None = None


def discard(path: str) -> None:
    """Remove a file if it is there."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def rename_into_place(temp: str, final: str) -> None:
    """Atomically replace ``final`` with the complete file at ``temp`` (removed on failure)."""
    reached("named")
    try:
        os.replace(temp, final)
    except BaseException:
        discard(temp)
        raise


def anchor() -> int:
    """A directory descriptor for ``os.link(source, target, dst_dir_fd=anchor(),
    follow_symlinks=True)``, which names the file behind /proc/self/fd/N (linkat with
    AT_SYMLINK_FOLLOW): CPython calls plain link(2), which does not follow the /proc symlink,
    unless a directory descriptor is given. Both paths are absolute, so the descriptor itself
    is never used; one is opened per process."""
    global _anchor_fd
    if _anchor_fd is None:
        _anchor_fd = os.open("/", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return _anchor_fd


_GITIGNORE = b"# Made by memo with its cache directory: a cache is never committed.\n*\n"


def make_store_directory(path: str) -> None:
    """Create a store directory (``0o700``) and its parents if it is not there. One memo
    makes holds a ``.gitignore`` of ``*``, so a cache inside a repository is not committed by
    accident; a directory that was already there is left as it is (it may be a project's)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return
    with contextlib.suppress(OSError):  # (the cache works without it)
        fd = os.open(os.path.join(path, ".gitignore"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _GITIGNORE)
        finally:
            os.close(fd)


def read_all(fd: int, size: int | None = None) -> bytes | bytearray | memoryview:
    """The whole file of ``size`` bytes (plus any byte it grew by, so a size check fails).

    Large files are read into writable memory that results (arrays) can keep as their own.
    """
    if size is None:
        size = os.fstat(fd).st_size
    if size < SMALL:
        # One byte more than expected, so a file that grew meanwhile fails the size check.
        return os.read(fd, size + 1)
    view = _destination(size + 1, os.lseek(fd, 0, os.SEEK_CUR))
    filled = 0
    while filled < len(view):
        count = os.readv(fd, [view[filled:]])
        if count == 0:
            break
        filled += count
    return view[:filled]


def read_hashing(fd: int, size: int, start: int, end: int) -> tuple[memoryview, bytes]:
    """``read_all`` of a large file from its beginning, and the xxh3_128 digest of its bytes
    ``[start, end)``, hashed by a second thread as the reading thread brings them in.

    Reading 400 MB from the page cache and hashing it take about 80 and 30 ms: one after the
    other they made a warm hit a third slower than ``np.load``; on two cores they overlap.
    """
    import queue  # (large reads only)

    view = _destination(size + 1, 0)
    hasher = xxhash.xxh3_128()
    ready: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()

    def hash_pieces() -> None:
        while (piece := ready.get()) is not None:
            hasher.update(view[piece[0] : piece[1]])

    hashing = threading.Thread(target=hash_pieces, name="memo-hash", daemon=True)
    hashing.start()
    filled = 0
    try:
        while filled < len(view):
            count = os.preadv(fd, [view[filled : filled + _READ_PIECE]], filled)
            if count == 0:
                break
            low, high = max(filled, start), min(filled + count, end)
            if low < high:
                ready.put((low, high))
            filled += count
    finally:
        ready.put(None)
        hashing.join()
    return view[:filled], hasher.digest()


def _destination(size: int, position: int) -> memoryview:
    """Writable memory for ``size`` bytes read from file offset ``position``, which results
    (arrays) can keep as their own."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        # numpy's allocator neither zero-fills nor pages in small pieces: about twice as
        # fast as a bytearray for a 400 MB read.
        memory = numpy.empty(size + _PAGE, dtype=numpy.uint8)
        address = memory.ctypes.data
    else:
        import ctypes  # (large reads and writes only: not imported with memo)

        memory = bytearray(size + _PAGE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    # The kernel copies from page-aligned page-cache pages; a destination at (nearly) the same
    # offset within its page makes the CPU see false dependencies between the copy's loads
    # and stores (4K aliasing), and a 400 MB read took three times as long. Start the copy
    # half a page away (still 64-byte aligned, so arrays in it stay aligned).
    shift = (_PAGE // 2 + position - address) % _PAGE
    return memoryview(memory)[shift : shift + size]


def is_sparse(st: os.stat_result) -> bool:
    """Whether a large file has far fewer bytes allocated than its size (a hole, not data).

    Filesystems that compress (or do not report blocks) may under-report; the cost of a
    false positive is a recomputation, never a wrong value.
    """
    blocks: int | None = getattr(st, "st_blocks", None)
    if blocks is None or st.st_size < SMALL:
        return False
    return blocks * 512 * _SPARSE_RATIO < st.st_size


def write_hashed(fd: int, chunks: Sequence[Any], offset: int) -> tuple[int, bytes]:
    """Write the chunks from ``offset`` on while hashing them; returns the byte count and the
    xxh3_128 digest of everything written.

    A large payload is hashed by a second thread while this one writes it: both release the
    GIL, so on two cores the hash (about 30 ms for 400 MB) costs no time.
    """
    views = [memoryview(chunk).cast("B") for chunk in chunks]
    total = sum(view.nbytes for view in views)
    preallocate(fd, offset, total)
    hasher = xxhash.xxh3_128()
    hashing: threading.Thread | None = None
    failed: list[BaseException] = []
    if total >= PARALLEL:

        def hash_all() -> None:
            try:
                for view in views:
                    hasher.update(view)
            except BaseException as exc:  # re-raised by the writing thread
                failed.append(exc)

        hashing = threading.Thread(target=hash_all, name="memo-hash", daemon=True)
        hashing.start()
    position = offset
    try:
        for view in views:
            if hashing is None:
                hasher.update(view)
            position = pwrite_all(fd, view, position)
            reached("payload")
    finally:
        if hashing is not None:
            hashing.join()
    if failed:
        raise failed[0]
    return position - offset, hasher.digest()


def pwrite_all(fd: int, data: Any, position: int) -> int:
    """Write all of ``data`` at ``position`` (partial writes resumed); returns the end offset."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, position)
        position += written
        view = view[written:]
    return position


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve the disk blocks of a region about to be written, where the system can.

    What ``np.save`` does: on ext4 a 400 MB write into reserved blocks took 80 ms instead of
    120 (no block reservation page by page). ``fallocate`` with ``FALLOC_FL_KEEP_SIZE``
    leaves the file's size alone and is never emulated by writing zeros (as
    ``os.posix_fallocate`` is, where the filesystem lacks it); any failure is ignored, since
    the write that follows reports real problems.
    """
    global _fallocate
    if length < SMALL or not sys.platform.startswith("linux"):
        return
    if _fallocate is None:
        import ctypes

        function: Any = False
        try:
            function = ctypes.CDLL(None, use_errno=True).fallocate
        except (OSError, AttributeError):
            pass
        else:
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            function.restype = ctypes.c_int
        _fallocate = function
    if _fallocate:
        _fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)


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


def read_quietly(path: str, limit: int | None = None) -> bytes | bytearray | memoryview:
    """A file's bytes (its first ``limit``), leaving its access time (its last use) alone."""
    try:
        fd = os.open(path, O_READ | _O_NOATIME)
        restore = False
    except PermissionError:
        if not _O_NOATIME:
            raise
        fd = os.open(path, O_READ)  # O_NOATIME is for the file's owner only
        restore = True
    try:
        before = os.fstat(fd)
        data = os.read(fd, limit) if limit is not None else read_all(fd, before.st_size)
        if restore or not _O_NOATIME:
            after = os.fstat(fd)
            if after.st_atime_ns != before.st_atime_ns:
                with contextlib.suppress(OSError, NotImplementedError):
                    os.utime(fd, ns=(before.st_atime_ns, after.st_mtime_ns))
    finally:
        os.close(fd)
    return data


def is_dead_temp(name: str, age: float) -> bool:
    """Whether a file in ``.tmp`` was left by a writer that died (or is a day old)."""
    match = _TEMP_NAME.search(name)
    if match is None:
        return False
    return not _alive(match.group(1)) or age > _TEMP_MAX_AGE


def sweep_temp(folder: str) -> None:
    """Remove temporary files left by writers that died (their pid is gone, or very old)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now = time.time()
    for name in names:
        full = os.path.join(folder, name)
        try:
            if not is_dead_temp(name, now - os.lstat(full).st_mtime):
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                import shutil

                shutil.rmtree(full, ignore_errors=True)
            else:
                os.unlink(full)
        except OSError:
            continue
