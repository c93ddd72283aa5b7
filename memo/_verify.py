"""``Store.verify``'s checks: every entry in full, orphaned directories, dead writers' files.

The checks are the ones memo applies when it reads (size, key, digests, a Cacheable's files),
plus a readable metadata line. With ``fix``, what is wrong is removed, unless a writer replaced
it since it was checked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._storage import _files
from ._storage._cacheable import CACHEABLE, check_directory
from ._storage._format import MAX_METADATA, DamagedEntryError, parse_metadata, unpack

__all__ = ["Problem", "rmtree", "verify_directory"]

# A writer moves a Cacheable's directory into place just before publishing its entry file,
# so a young directory without an entry is most likely being written, not orphaned.
_ORPHAN_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Problem:
    """Something ``Store.verify`` found wrong, and whether it was removed (``fixed``).

    ``kind`` is ``"damaged"`` (fails its checks), ``"unreadable"`` (cannot be opened; never
    removed), ``"orphan-directory"`` (an entry directory without its entry file) or
    ``"temp-file"`` (left in ``.tmp`` by a writer that died).
    """

    kind: Literal["damaged", "unreadable", "orphan-directory", "temp-file"]
    path: Path
    detail: str
    fixed: bool = False


def verify_directory(
    root: Path,
    listing: list[tuple[str, str, os.DirEntry[str]]],
    directories: set[str],
    fix: bool,
) -> list[Problem]:
    """Check a store's scanned entries, orphaned directories and temp files."""
    problems: list[Problem] = []
    for name, key, item in listing:
        directory = root / f"{name}-{key}.d"
        try:
            item.stat(follow_symlinks=False)  # cached: fix compares it before removing
            detail = _check(item.path, key, directory)
        except FileNotFoundError:
            continue  # removed meanwhile
        except OSError as exc:
            problems.append(Problem("unreadable", Path(item.path), str(exc)))
            continue
        if detail is not None:
            fixed = fix and _remove_if_unchanged(item, directory)
            problems.append(Problem("damaged", Path(item.path), detail, fixed))
    now = time.time()
    stems = {f"{name}-{key}" for name, key, _ in listing}
    for stem in sorted(directories - stems):
        path = root / f"{stem}.d"
        try:
            young = now - os.lstat(path).st_mtime < _ORPHAN_AFTER
        except OSError:
            continue
        if young or os.path.lexists(root / f"{stem}.memo"):
            continue  # being written, or its entry was published since the scan
        fixed = fix and rmtree(path)
        problems.append(Problem("orphan-directory", path, "no entry file", fixed))
    problems.extend(_dead_temp_files(root / ".tmp", now, fix))
    return problems


def _check(path: str, key: str, directory: Path) -> str | None:
    """What is wrong with an entry, or None; raises OSError if it cannot be read."""
    data = _files.read_quietly(path)
    try:
        header, payload = unpack(data, bytes.fromhex(key))
    except DamagedEntryError as exc:
        return str(exc)
    if parse_metadata(bytes(data[: MAX_METADATA + 1])) is None:
        return "its metadata line is not a JSON object"
    if header.serializer != CACHEABLE:
        return None
    try:
        check_directory(payload, directory)
    except DamagedEntryError as exc:
        return str(exc)
    return None


def _remove_if_unchanged(item: os.DirEntry[str], directory: Path) -> bool:
    """Remove a damaged entry unless a writer replaced it since it was checked."""
    try:
        then, now = item.stat(follow_symlinks=False), os.lstat(item.path)
        if (then.st_ino, then.st_mtime_ns) != (now.st_ino, now.st_mtime_ns):
            return False
        os.unlink(item.path)
    except OSError:
        return False
    if directory.is_dir() and not directory.is_symlink():
        rmtree(directory)
    return True


def rmtree(path: Path) -> bool:
    """Remove a directory tree, or a file or link; True if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
    return not os.path.lexists(path)


def _dead_temp_files(folder: Path, now: float, fix: bool) -> list[Problem]:
    """Temp files of writers that died or are a day old: what memo's own sweep removes."""
    problems = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        path = folder / name
        try:
            if not _files.is_dead_temp(name, now - os.lstat(path).st_mtime):
                continue
        except OSError:
            continue
        fixed = fix and rmtree(path)
        problems.append(Problem("temp-file", path, "left by a writer that died", fixed))
    return problems
