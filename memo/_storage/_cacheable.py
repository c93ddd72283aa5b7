"""Results that persist themselves: the ``Cacheable`` protocol and its entry directories.

A ``Cacheable`` result writes its own files into a directory (``to_cache``) and is rebuilt from
it (``from_cache``). The entry's payload is then a manifest naming the class and every file
with its size and digest, so a directory that was changed, truncated or swapped is detected
before ``from_cache`` sees it.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import xxhash

from ._format import DamagedEntryError

__all__ = [
    "Cacheable",
    "check_directory",
    "is_cacheable",
    "read_directory",
    "resolve_qualified",
    "write_directory",
]


@runtime_checkable
class Cacheable(Protocol):
    """A result that persists itself into its entry's own directory.

    ``to_cache(directory)`` writes any files it likes there; ``from_cache(directory)`` (a
    classmethod) rebuilds the object. memo records each file's size and digest and checks them
    before calling ``from_cache``.
    """

    def to_cache(self, directory: Path) -> None:
        """Write this object's files into ``directory`` (which exists and is empty)."""
        ...

    @classmethod
    def from_cache(cls, directory: Path) -> Self:
        """Rebuild an object from the files ``to_cache`` wrote into ``directory``."""
        ...


_cacheable_types: dict[type, bool] = {}


def is_cacheable(value: Any) -> bool:
    """Whether ``value`` (not a class) is a ``Cacheable``, decided once per type.

    ``isinstance`` against a runtime-checkable protocol walks the protocol's members on every
    call, which cost more than the rest of storing a small result.
    """
    tp = type(value)
    known = _cacheable_types.get(tp)
    if known is None:
        known = _cacheable_types[tp] = not isinstance(value, type) and isinstance(value, Cacheable)
    return known


def _digest(path: Path) -> str:
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return str(hasher.hexdigest())


def _files(directory: Path) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for folder, subfolders, names in os.walk(directory):
        for name in [*names, *subfolders]:
            path = Path(folder) / name
            if path.is_symlink():
                raise DamagedEntryError(f"{path} is a symbolic link; memo never follows links")
        for name in names:
            path = Path(folder) / name
            relative = path.relative_to(directory).as_posix()
            found[relative] = [path.stat().st_size, _digest(path)]
    return dict(sorted(found.items()))


def write_directory(value: Any, directory: Path) -> bytes:
    """Let ``value`` write itself into ``directory``; return the manifest (the payload)."""
    cls = type(value)
    if _importable(cls) is not cls:
        raise TypeError(
            f"{cls.__qualname__} cannot be found again by its name "
            f"({cls.__module__}:{cls.__qualname__}); define Cacheable classes at module level"
        )
    value.to_cache(directory)
    manifest = {"class": f"{cls.__module__}:{cls.__qualname__}", "files": _files(directory)}
    return json.dumps(manifest, separators=(",", ":")).encode()


def check_directory(payload: memoryview, directory: Path) -> dict[str, Any]:
    """The manifest, once ``directory`` matches it; raises DamagedEntryError otherwise."""
    try:
        manifest = json.loads(bytes(payload))
        recorded = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise DamagedEntryError("its directory manifest is unreadable") from None
    if not directory.is_dir() or directory.is_symlink():
        raise DamagedEntryError(f"its directory {directory.name} is missing")
    if _files(directory) != recorded:
        raise DamagedEntryError(f"the files in {directory.name} differ from those recorded")
    return dict(manifest)


def read_directory(payload: memoryview, directory: Path) -> Any:
    """Check ``directory`` against the manifest, then rebuild the object from it."""
    manifest = check_directory(payload, directory)
    module, _, qualname = manifest["class"].partition(":")
    return resolve_qualified(module, qualname).from_cache(directory)


def resolve_qualified(module: str, qualname: str) -> Any:
    """The object named ``qualname`` in ``module`` (imported if needed)."""
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _importable(cls: type) -> Any:
    try:
        return resolve_qualified(cls.__module__, cls.__qualname__)
    except (ImportError, AttributeError):
        return None
