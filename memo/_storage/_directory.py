"""What is in a store directory: its entry files (with their sizes and times, from ``stat``
alone), the directories of ``Cacheable`` entries, what dead writers left, and whether users
other than this one could plant entries in it."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time

from . import _files
from ._backend import SUFFIX, Listed, is_part, split_name

__all__ = ["exposure", "leftovers", "list_entries"]

# A writer moves a Cacheable's directory into place just before publishing its entry file,
# so a young directory without an entry is most likely being written, not orphaned.
_ORPHAN_AFTER = 3600.0


def list_entries(root: str, name: str | None = None) -> list[Listed]:
    """The entry files in ``root`` (optionally only ``name``'s), a directory's files counted
    with its entry's."""
    scan = _scan(root)
    found = []
    for entry_name, key, item in scan.entries:
        if name is not None and entry_name != name:
            continue
        try:
            st = item.stat(follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
        size, directory, payload = st.st_size, None, None
        stem = f"{entry_name}-{key}"
        if scan.directories and stem in scan.directories:
            directory = item.path[: -len(SUFFIX)] + ".d"
            size += _tree_size(directory)
        part = scan.payloads.get(stem)
        if part is not None:
            with contextlib.suppress(OSError):
                size += part.stat(follow_symlinks=False).st_size
                payload = part.path
        found.append(
            Listed(st.st_atime, size, st.st_mtime, entry_name, key, item.path, directory, payload)
        )
    return found


def leftovers(root: str, tmp: str, fix: bool) -> list[tuple[str, str, str, bool]]:
    """Directories without their entry file, and temp files in ``tmp`` of writers that died,
    as ``(kind, path, detail, removed)``; with ``fix`` they are removed."""
    scan = _scan(root)
    found: list[tuple[str, str, str, bool]] = []
    now = time.time()
    stems = {f"{name}-{key}" for name, key, _ in scan.entries}
    for stem in sorted(scan.directories - stems):
        path = os.path.join(root, f"{stem}.d")
        try:
            young = now - os.lstat(path).st_mtime < _ORPHAN_AFTER
        except OSError:
            continue
        if young or os.path.lexists(os.path.join(root, stem + SUFFIX)):
            continue  # being written, or its entry was published since the scan
        found.append(("orphan-directory", path, "no entry file", fix and _rmtree(path)))
    for stem in sorted(set(scan.payloads) - stems):
        path = scan.payloads[stem].path
        try:
            young = now - os.lstat(path).st_mtime < _ORPHAN_AFTER
        except OSError:
            continue
        if young or os.path.lexists(os.path.join(root, stem + SUFFIX)):
            continue  # being replaced (its record comes next), or it has it now
        found.append(("orphan-payload", path, "no entry file", fix and _rmtree(path)))
    try:
        names = sorted(os.listdir(tmp))
    except OSError:
        names = []
    for temp in names:
        path = os.path.join(tmp, temp)
        try:
            if not _files.is_dead_temp(temp, now - os.lstat(path).st_mtime):
                continue
        except OSError:
            continue
        found.append(("temp-file", path, "left by a writer that died", fix and _rmtree(path)))
    return found


class _Scan:
    """One listing of a store directory: entry files, directories and payload files."""

    __slots__ = ("directories", "entries", "payloads")

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, os.DirEntry[str]]] = []  # name, key, the file
        self.directories: set[str] = set()  # name-key stems
        self.payloads: dict[str, os.DirEntry[str]] = {}  # name-key stem -> the payload file


def _scan(root: str) -> _Scan:
    """The entry files, directories and payload files in ``root``, told apart by name."""
    found = _Scan()
    try:
        scan = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError):
        return found
    with scan:
        for item in scan:
            # <name>-<32 hex>.memo, .d or a payload's.
            named = split_name(item.name)
            if named is None:
                continue
            name, key, suffix = named
            if suffix == ".d":
                if item.is_dir(follow_symlinks=False):
                    found.directories.add(f"{name}-{key}")
            elif item.is_file(follow_symlinks=False):
                if suffix == SUFFIX:
                    found.entries.append((name, key, item))
                elif is_part(suffix):
                    found.payloads[f"{name}-{key}"] = item
    return found


def _tree_size(path: str) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _rmtree(path: str) -> bool:
    """Remove a directory tree, or a file or link; True if it is gone."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return not os.path.lexists(path)


def exposure(st: os.stat_result, root: str) -> str | None:
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
