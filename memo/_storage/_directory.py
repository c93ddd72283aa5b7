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
from ._backend import SUFFIX, Listed

__all__ = ["exposure", "leftovers", "list_entries"]

# A writer moves a Cacheable's directory into place just before publishing its entry file,
# so a young directory without an entry is most likely being written, not orphaned.
_ORPHAN_AFTER = 3600.0
_HEX = frozenset("0123456789abcdef")


def list_entries(root: str, name: str | None = None) -> list[Listed]:
    """The entry files in ``root`` (optionally only ``name``'s), a directory's files counted
    with its entry's."""
    entries, directories = _scan(root)
    found = []
    for entry_name, key, item in entries:
        if name is not None and entry_name != name:
            continue
        try:
            st = item.stat(follow_symlinks=False)
        except OSError:
            continue  # removed meanwhile
        size, directory = st.st_size, None
        if directories and f"{entry_name}-{key}" in directories:
            directory = item.path[: -len(SUFFIX)] + ".d"
            size += _tree_size(directory)
        found.append(Listed(st.st_atime, size, st.st_mtime, entry_name, key, item.path, directory))
    return found


def leftovers(root: str, tmp: str, fix: bool) -> list[tuple[str, str, str, bool]]:
    """Directories without their entry file, and temp files in ``tmp`` of writers that died,
    as ``(kind, path, detail, removed)``; with ``fix`` they are removed."""
    _, directories = _scan(root)
    found: list[tuple[str, str, str, bool]] = []
    now = time.time()
    for stem in sorted(directories):
        path = os.path.join(root, f"{stem}.d")
        try:
            young = now - os.lstat(path).st_mtime < _ORPHAN_AFTER
        except OSError:
            continue
        if young or os.path.lexists(os.path.join(root, stem + SUFFIX)):
            continue  # being written, or it has its entry
        found.append(("orphan-directory", path, "no entry file", fix and _rmtree(path)))
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


def _scan(root: str) -> tuple[list[tuple[str, str, os.DirEntry[str]]], set[str]]:
    """(name, key, dir entry) of the entry files, and the ``name-key`` stems of directories."""
    entries: list[tuple[str, str, os.DirEntry[str]]] = []
    directories: set[str] = set()
    try:
        scan = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError):
        return entries, directories
    with scan:
        for item in scan:
            # <name>-<32 hex>.memo or <name>-<32 hex>.d, told apart without a regex per name.
            file_name = item.name
            if file_name.endswith(SUFFIX):
                stem = file_name[: -len(SUFFIX)]
            elif file_name.endswith(".d"):
                stem = file_name[:-2]
            else:
                continue
            if len(stem) < 34 or stem[-33] != "-" or not _is_key(stem[-32:]):
                continue
            if len(stem) + len(SUFFIX) == len(file_name):
                if item.is_file(follow_symlinks=False):
                    entries.append((stem[:-33], stem[-32:], item))
            elif item.is_dir(follow_symlinks=False):
                directories.add(stem)
    return entries, directories


def _is_key(text: str) -> bool:
    return _HEX.issuperset(text)


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
