"""The ``Backend`` protocol: what every place entries can live in (a local directory, an fsspec
URL) implements, and nothing more.

A backend moves an entry's bytes: it reads them (whole, or a few ranges of them), publishes a
new entry's final bytes atomically (create-only unless told to replace), deletes and lists
entries, and holds key leases so that callers missing one key compute it once. It knows neither
the entry format nor functions: the layer above (``_entries.EntryStore``) packs, checks, signs,
serializes and budgets, once for every backend. What a backend can or cannot do beyond that is
declared in its ``Capabilities``, which the layer above asks instead of asking which backend
it has. A new backend (a shared filesystem, GCS with its own preconditions) is one module.

An entry is one object (its ``.memo`` file), or two: a record and its payload as a plain file
of its format beside it, a ``part`` (a suffix such as ``.npy``, ``is_part``) that reads,
publishes and locations name. Which suffix an entry's payload has is the layer above's to
know (its record says); a backend treats any part alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

__all__ = [
    "MISS",
    "SUFFIX",
    "Backend",
    "Capabilities",
    "KeyLocks",
    "Listed",
    "Outgoing",
    "Placed",
    "Reader",
    "StoreError",
    "Writer",
    "is_part",
    "sanitize",
    "split_name",
]

SUFFIX = ".memo"
# The other part an entry may have: its payload as a plain file of its format, beside its
# record (the ``.memo`` file). ``.d`` is a Cacheable entry's directory, not a part.
_PART = re.compile(r"\.[A-Za-z0-9_]{1,16}")
_HEX = frozenset("0123456789abcdef")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")

# ``write(fd, data)`` fills an empty file and gives (bytes written, payload fingerprint).
Writer = Callable[[int, Any], tuple[int, bytes]]
# ``then(bytes written, fingerprint)``: run by publish once the bytes are written, before they
# are placed (if it raises, nothing is placed).
Placed = Callable[[int, bytes], None]


class Outgoing(NamedTuple):
    """A new entry (or part) as the layer above hands it to ``Backend.publish``: a ``write``
    and the ``data`` it writes, or (``write`` None) the whole bytes and their fingerprint as
    ``data``; which ``part`` of the entry it is (its suffix); and ``then``, run once the bytes
    are written and before they are placed (if it raises, nothing is placed). Backends
    without in-place files (``Capabilities.files`` False) are always given the whole bytes:
    ``bytes``, or for a large payload ``Chunks`` over its buffers (``Chunks.tobytes`` joins
    them)."""

    write: Writer | None
    data: Any
    part: str = SUFFIX
    then: Placed | None = None


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()
"""What a lookup gives when there is no usable entry (a value may be None)."""


class StoreError(Exception):
    """Internal: a store operation failed; the message is one line for the user."""


def is_part(suffix: str) -> bool:
    """Whether ``suffix`` (``.npy``, ``.arrow``: a dot and 1-16 letters, digits or _) names
    an entry's payload file, which is neither its record's ``.memo`` nor its directory's ``.d``."""
    return suffix != SUFFIX and suffix != ".d" and _PART.fullmatch(suffix) is not None


def split_name(file_name: str) -> tuple[str, str, str] | None:
    """A file name ``<name>-<key><suffix>`` (the key: 32 lowercase hex digits) as ``(name,
    key, suffix)``, or None if it is not of that form: how every store tells the files of an
    entry (its record, payload, directory, lease) from any other file."""
    stem, dot, suffix = file_name.rpartition(".")
    if not dot or len(stem) < 34 or stem[-33] != "-" or not _HEX.issuperset(stem[-32:]):
        return None
    return stem[:-33], stem[-32:], dot + suffix


def sanitize(name: str) -> str:
    """A file-name-safe form of a function's name (letters, digits, ``_`` and ``.``).

    ``outer.<locals>.inner`` becomes ``inner``: the key, not the name, tells entries apart.
    """
    name = name.rpartition("<locals>.")[2]
    cleaned = _UNSAFE.sub("_", name).strip("._") or "f"
    return cleaned[:80]


class Capabilities(NamedTuple):
    """What a backend can do beyond the protocol's core (the layer above asks these).

    - ``files``: entries are local files written in place (so a large payload is hashed as
      it is written, and the writer is given a descriptor); else whole bytes are handed over.
    - ``mmap``: ``local_file`` names a file that can be memory-mapped.
    - ``last_use``: ``note_use`` records an entry's last use and listings report it, so a
      least-recently-used size budget can be kept.
    - ``directories``: ``Cacheable`` results can keep a directory beside their entry.
    - ``exactly_once``: the key leases are shared by every process and machine using the
      store, so N callers missing one key compute it once (else only among this process's
      threads, and other processes may compute it too).
    """

    files: bool
    mmap: bool
    last_use: bool
    directories: bool
    exactly_once: bool


class Listed(NamedTuple):
    """One entry as a listing shows it (no entry is read to make it)."""

    last_used: float
    bytes: int
    created: float
    name: str
    key: str
    location: str
    directory: str | None
    payload: str | None = None  # the entry's payload file, if it has one (``is_part``)

    @property
    def part(self) -> str | None:
        """The suffix of the entry's payload file (``.npy``), if it has one."""
        return None if self.payload is None else "." + self.payload.rpartition(".")[2]


class Reader(Protocol):
    """An entry opened for a few range reads (a header, a trailer) of one version of it."""

    size: int

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (fewer at the end of the entry)."""
        ...

    def close(self) -> None:
        """Let go of the entry."""
        ...


class KeyLocks(Protocol):
    """Per-key leases: who computes a missing key while the others wait (never needed for
    correctness: publishing is atomic either way)."""

    def acquire(
        self, key: str, timeout: float, name: str = "", owner: Any = None
    ) -> tuple[Any, bool]:
        """Wait up to ``timeout`` seconds for ``key`` (of the entry ``name``): ``(claim,
        held)``. ``held`` says this caller may compute alone, or the entry has appeared
        meanwhile; unless ``claim`` is None pass both to ``release``. At once
        ``(None, False)`` when ``owner`` (by default this thread) holds ``key`` already (a
        function calling itself). Raises ``OSError`` or ``StoreError`` if leases cannot be
        used here."""
        ...

    def release(self, key: str, claim: Any, held: bool) -> None:
        """Give back what ``acquire`` returned."""
        ...

    def absent(self, claim: Any) -> bool:
        """Whether taking ``claim`` showed that the entry was not stored, so the caller need
        not look for it again before computing (False: look)."""
        ...

    async def acquire_async(self, key: str, timeout: float, name: str = "") -> bool:
        """As ``acquire`` without blocking the event loop; True when held (then call
        ``release_async``), False at once when this task holds ``key`` already."""
        ...

    def release_async(self, key: str) -> None:
        """Give back a lease taken with ``acquire_async``."""
        ...

    def absent_async(self, key: str) -> bool:
        """``absent`` for the lease this task took with ``acquire_async``."""
        ...


class Backend(Protocol):
    """Where entries' bytes live. Names are sanitized function names, keys 32 hex digits."""

    @property
    def root(self) -> Path | str:
        """The directory (a ``Path``) or the URL (a ``str``) of the store."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do beyond the core (asked, never assumed)."""
        ...

    @property
    def locks(self) -> KeyLocks:
        """The key leases."""
        ...

    def location(self, name: str, key: str, part: str = SUFFIX) -> str:
        """The path or URL of an entry (or of its ``part``), for messages and other tools."""
        ...

    def read(self, name: str, key: str, part: str = SUFFIX) -> tuple[Any, bytes | None] | None:
        """An entry's whole bytes (or its ``part``'s), with the payload's digest when the
        backend hashed it while reading (else None); None if there is none. Raises ``OSError``
        if it cannot be read (then ``warn_unreadable`` says so)."""
        ...

    def peek(self, name: str, key: str, limit: int | None = None, part: str = SUFFIX) -> Any:
        """An entry's bytes (its first ``limit``) read without counting as a use (for
        ``memo verify`` and metadata). Raises ``FileNotFoundError`` if there is none."""
        ...

    def open(self, name: str, key: str, part: str = SUFFIX) -> Reader | None:
        """The entry, opened for range reads; None if there is none (or it cannot be read)."""
        ...

    def exists(self, name: str, key: str) -> bool:
        """Whether an entry is present (cheap: nothing is read or checked)."""
        ...

    def publish(self, name: str, key: str, entry: Outgoing, replace: bool) -> tuple[int, bytes]:
        """Put a new entry (or one ``part`` of it) in place atomically (a reader sees all of
        it or none); gives what the writer gave. Without ``replace`` the write is create-only
        where the backend can make it so: ``FileExistsError`` if an entry is there (then it
        stands)."""
        ...

    def delete(
        self, name: str, key: str, part: str | None = None, payload: str | None = None
    ) -> bool:
        """Remove an entry (its record, directory and its ``payload`` part, if it has one), or
        only its ``part``; True if it (its record, or that part) existed."""
        ...

    def listing(self, name: str | None = None) -> list[Listed]:
        """The entries, optionally only those stored under ``name``."""
        ...

    def untrusted(self) -> str | None:
        """Why others could plant entries here (then only signed entries are used), or None."""
        ...

    def warn_unreadable(self, name: str, key: str, exc: OSError) -> None:
        """Warn, once per kind of failure, that an entry could not be read."""
        ...

    def leftovers(self, fix: bool) -> list[tuple[str, str, str, bool]]:
        """What writers that died left beside the entries, as ``(kind, location, detail,
        fixed)``: ``memo verify`` reports them, and removes them with ``fix``."""
        ...

    # Capability-bound: called only when the capability is declared.

    def note_use(self, name: str, key: str) -> None:
        """Record that an entry was just used (``last_use``)."""
        ...

    def local_file(self, name: str, key: str, part: str = SUFFIX) -> str:
        """The local file holding an entry (or its ``part``), to memory-map (``mmap``)."""
        ...

    def directory(self, name: str, key: str) -> Path:
        """Where a ``Cacheable`` entry's directory is (``directories``); ``StoreError`` else."""
        ...

    def write_directory(self, name: str, key: str, fill: Callable[[Path], bytes]) -> bytes:
        """Make an entry's directory: ``fill(staging)`` writes it aside (giving the manifest),
        then it is swapped into place (``directories``)."""
        ...
