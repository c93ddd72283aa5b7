"""Low-level file operations of the local store: atomic publishing, whole reads, sweeping.

Kept apart from the store's logic so each stays readable; nothing here knows about entries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "HAVE_TMPFILE",
    "NO_TMPFILE",
    "O_CREATE",
    "O_READ",
    "O_TMPFILE",
    "discard",
    "link",
    "phase_hook",
    "reached",
    "read_all",
    "rename_into_place",
    "sweep_temp",
    "write_all",
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
_SMALL = 1 << 20
_TEMP_MAX_AGE = 24 * 3600.0
# <name>-<key>.<pid>.<token>.tmp, possibly with .d (a directory being built) or .old after it.
_TEMP_NAME = re.compile(r"-[0-9a-f]{32}\.([0-9]+)\.[0-9a-f]{8}\.tmp(?:\.d|\.old)?$")

# Tests set this to stop a writer at a known phase of publishing ("written": all bytes are
# in an unpublished file; "named": that file has a temporary name) and kill it there.
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


def link(source: str, target: str) -> None:
    """``linkat(source, target, AT_SYMLINK_FOLLOW)``: names the file behind /proc/self/fd/N."""
    global _anchor_fd
    if _anchor_fd is None:
        _anchor_fd = os.open("/", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    # CPython calls plain link(2), which does not follow the /proc symlink, unless a directory
    # descriptor is given; both paths are absolute, so the descriptor itself is never used.
    os.link(source, target, dst_dir_fd=_anchor_fd, follow_symlinks=True)


def read_all(fd: int, size: int | None = None) -> bytes | bytearray:
    """The whole file of ``size`` bytes (plus any byte it grew by, so a size check fails)."""
    if size is None:
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


def write_all(fd: int, chunks: list[Any]) -> int:
    """Write every chunk (partial writes resumed); returns the byte count."""
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


def sweep_temp(folder: str) -> None:
    """Remove temporary files left by writers that died (their pid is gone, or very old)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    now = time.time()
    for name in names:
        match = _TEMP_NAME.search(name)
        pid_text = match.group(1) if match else ""
        full = os.path.join(folder, name)
        try:
            age = now - os.lstat(full).st_mtime
            if not _alive(pid_text) or age > _TEMP_MAX_AGE:
                if os.path.isdir(full) and not os.path.islink(full):
                    import shutil

                    shutil.rmtree(full, ignore_errors=True)
                else:
                    os.unlink(full)
        except (OSError, ValueError):
            continue
