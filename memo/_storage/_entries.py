"""``EntryStore``: entries (format, integrity, signing, serializers, size budget) on a backend.

Everything about what an entry holds is here, once, for every backend (``_backend``): packing
a value into an entry's bytes, checking size, key and digests (and the signature) before
anything is deserialized, ``max_age``, last-use times, the least-recently-used budget,
``Cacheable`` directories, and looking at entries without loading them (checked headers, where
a value is for other tools, what ``memo verify`` finds wrong). The backend only moves bytes;
what it can do beyond that is read from its ``Capabilities``. The store knows nothing about
functions: it maps (name, key) to values.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._exceptions import ReadOnlyError, warn_once
from ._backend import MISS, SUFFIX, Backend, Capabilities, KeyLocks, Listed, Outgoing, StoreError
from ._budget import Budget
from ._cacheable import check_directory, read_directory, write_directory
from ._entry_file import (
    checked_header,
    detached,
    entry_age,
    fromhex,
    outgoing,
    warn_damaged,
    warn_unloadable,
)
from ._format import (
    MAX_METADATA,
    DamagedEntryError,
    Header,
    check_payload,
    parse_metadata,
    unpack,
)
from ._locks import NoLocks, hold
from ._serializers import DEFAULT, PICKLE, Serializers, Traits, UnfaithfulError, writes_directory

__all__ = ["EntryExistsError", "EntryStore"]

logger = logging.getLogger("memo")

_TOUCH_AFTER_NS = 60 * 10**9  # last use is recorded at most once a minute per entry
_REMEMBERED = 1 << 16  # keys whose last use (or absence) a store remembers, then it starts over


class EntryExistsError(Exception):
    """Internal: another caller published the entry first (a create-only write found it)."""


class EntryStore:
    """The entries of one backend: load, save, look at and check, list and delete them."""

    def __init__(
        self, backend: Backend, read_only: bool = False, signed_only: bool = False
    ) -> None:
        self.backend = backend
        self.capabilities: Capabilities = backend.capabilities
        # Nothing is written to a read-only store: no entry, lease or last-use time.
        self.read_only = read_only
        # Declared written by others (a team's bucket): unsigned entries are neither loaded
        # nor stored there, as in a local directory others can write.
        self.signed_only = signed_only
        # The key leases, taken on every miss.
        self.locks: KeyLocks = NoLocks() if read_only else backend.locks
        # Bound once: the hit and miss paths call these on every call.
        self._read = backend.read
        self._untrusted = self._declared if signed_only else backend.untrusted
        self._publish = backend.publish
        self.exists = backend.exists
        self._budget: Budget | None = None
        self._used: dict[str, int] = {}  # key -> when this process last noted its use
        self._absent: set[str] = set()  # keys a load found missing (so publish create-only)

    def __repr__(self) -> str:
        return f"EntryStore({self.backend!r})"

    @property
    def root(self) -> Path | str:
        """The store's directory (a ``Path``) or URL (a ``str``)."""
        return self.backend.root

    def path(self, name: str, key: str) -> str:
        """Where the entry for ``key`` of ``name`` lives (a path, or a URL)."""
        return self.backend.location(name, key)

    def directory(self, name: str, key: str) -> Path:
        """The directory of a ``Cacheable`` entry (``StoreError`` where there are none)."""
        return self.backend.directory(name, key)

    # --- the size budget -----------------------------------------------------------------

    def limit_size(self, max_bytes: int) -> None:
        """Keep the store under ``max_bytes``, evicting least-recently-used entries as it
        writes (the smallest limit wins if several functions set one). Backends without
        last-use times cannot: that is warned once. A read-only store is never pruned."""
        if self.read_only:
            return
        if not self.capabilities.last_use:
            warn_once(
                ("no-max-size", str(self.root)),
                f"memo: max_size is not enforced on the store {self.root}, which has no "
                "last-use times; use the bucket's lifecycle rules or `memo prune --older-than`",
                stacklevel=4,
            )
            return
        if self._budget is None or max_bytes < self._budget.limit:
            self._budget = Budget(self.backend, max_bytes)

    @property
    def max_size(self) -> int | None:
        """The size budget in bytes, if one is set."""
        return self._budget.limit if self._budget is not None else None

    # --- reading -------------------------------------------------------------------------

    def load(
        self,
        name: str,
        key: str,
        serializers: Serializers = DEFAULT,
        secret_keys: Sequence[bytes] = (),
        max_age: float | None = None,
        mapped: bool = True,
    ) -> Any:
        """The stored value, or ``MISS``; a damaged or unreadable entry is a miss, warned once.

        ``serializers`` are the caller's (they load the entry by the name it records, and may
        memory-map it, unless not ``mapped``); with ``secret_keys`` only entries signed by one
        of them are accepted; entries older than ``max_age`` seconds are misses.
        """
        if mapped and serializers.maps and not secret_keys and self.capabilities.mmap:
            return self._load_mapped(name, key, serializers, max_age)
        try:
            got = self._read(name, key)
        except OSError as exc:
            self.backend.warn_unreadable(name, key, exc)
            return MISS
        except DamagedEntryError as exc:  # refused before its payload was read
            warn_damaged(self.backend.location(name, key), exc)
            return MISS
        if got is None:
            absent = self._absent
            if len(absent) >= _REMEMBERED:
                absent.clear()  # only an optimization: forgetting costs an overwrite
            absent.add(key)
            return MISS
        if not secret_keys and self._untrusted() is not None:
            if self.signed_only:  # (a read-only tier saves nothing, which would say why)
                warn_once(("signed-only", str(self.root)), f"memo: {self._declared()}")
            return MISS  # anyone may have written it: not read (saving says why, once)
        try:
            header, payload = unpack(got[0], fromhex(key), secret_keys, got[1])
            if max_age is not None and entry_age(header) > max_age:
                return MISS
            last = self._used.get(key)
            if last is None or time.monotonic_ns() - last > _TOUCH_AFTER_NS:
                self._note_use(name, key)
            if header.detached:
                payload = self._payload(name, key, header, got[0], secret_keys)
                if payload is None:
                    return MISS  # (being written, or gone)
                payload = memoryview(payload)
            elif writes_directory(header.serializer):
                return read_directory(payload, self.backend.directory(name, key))
            return serializers.loads(header.serializer, payload)
        except DamagedEntryError as exc:
            warn_damaged(self.backend.location(name, key), exc)
            return MISS
        except Exception as exc:
            warn_unloadable(self.backend.location(name, key), exc)
            return MISS

    def _note_use(self, name: str, key: str) -> None:
        # Last use (for the size budget's LRU order) is recorded at most once a minute per
        # entry by each process, so a repeated hit costs nothing more.
        if len(self._used) >= _REMEMBERED:
            self._used.clear()
        self._used[key] = time.monotonic_ns()
        if self.capabilities.last_use and not self.read_only:
            self.backend.note_use(name, key)

    def _load_mapped(
        self, name: str, key: str, serializers: Serializers, max_age: float | None
    ) -> Any:
        """A load that memory-maps the payload where the serializer asks to: the header and
        trailer are checked, the payload is not read (hashing 400 MB would defeat mapping)."""
        backend = self.backend
        header = self.header(name, key)
        if header is None:  # missing or damaged: the plain load notes which (and warns)
            return self.load(name, key, serializers, (), max_age, mapped=False)
        if self._untrusted() is not None or (max_age is not None and entry_age(header) > max_age):
            return MISS
        try:
            chosen = serializers.named(header.serializer)
        except KeyError:
            chosen = None
        if chosen is None or chosen.load_file is None:
            return self.load(name, key, serializers, (), max_age, mapped=False)
        part, offset = SUFFIX, header.offset
        if header.detached:
            part, offset = header.part, 0
            reader = backend.open(name, key, part)
            if reader is None:
                return MISS  # (being written, or gone)
            reader.close()
            if reader.size != header.length:
                return self.load(name, key, serializers, (), max_age, mapped=False)  # says why
        self._note_use(name, key)
        try:
            return chosen.load_file(backend.local_file(name, key, part), offset, header.length)
        except Exception as exc:
            warn_unloadable(backend.location(name, key), exc)
            return MISS

    # --- looking without loading: nothing here counts as a use -----------------------

    def _payload(
        self, name: str, key: str, header: Header, data: Any, secret_keys: Sequence[bytes]
    ) -> Any:
        """A record's payload file, checked against it; None if it is missing or unreadable
        (warned). Raises ``DamagedEntryError`` if it does not match."""
        try:
            got = self._read(name, key, header.part)
        except OSError as exc:
            self.backend.warn_unreadable(name, key, exc)
            return None
        if got is None:
            return None
        check_payload(data, header, got[0], secret_keys, got[1])
        return got[0]

    def header(self, name: str, key: str) -> Header | None:
        """The checked header of an entry (fingerprint, serializer, ...) without its payload;
        None if it is missing, damaged or unreadable."""
        reader = self.backend.open(name, key)
        if reader is None:
            return None
        try:
            return checked_header(reader.read, reader.size, key)
        except (OSError, DamagedEntryError):
            return None
        finally:
            reader.close()

    def value_path(self, name: str, key: str) -> str | None:
        """Where an entry's value is, for other tools: its payload file (npy, parquet, json, ...),
        else its entry file; None if there is no sound entry."""
        header = self.header(name, key)
        if header is None:
            return None
        return self.backend.location(name, key, header.part or SUFFIX)

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
            got = self.backend.read(name, key)
            if got is None or (not secret_keys and self._untrusted() is not None):
                return False
            header, payload = unpack(got[0], fromhex(key), secret_keys, got[1])
            if header.detached and self._payload(name, key, header, got[0], secret_keys) is None:
                return False
            if writes_directory(header.serializer):
                check_directory(payload, self.backend.directory(name, key))
        except (OSError, DamagedEntryError, StoreError):
            return False
        return max_age is None or entry_age(header) <= max_age

    def metadata(self, name: str, key: str) -> dict[str, Any] | None:
        """The metadata recorded in an entry, or None if it cannot be read."""
        try:
            head = self.backend.peek(name, key, MAX_METADATA + 1)
        except Exception:
            return None
        return parse_metadata(bytes(head))

    def check(self, name: str, key: str) -> str | None:
        """What is wrong with an entry (as ``memo verify`` says it), or None if it is sound.
        Raises ``FileNotFoundError`` if it is gone, other errors if it cannot be read; does
        not count as a use."""
        data = self.backend.peek(name, key)
        try:
            header, payload = unpack(data, fromhex(key))
        except DamagedEntryError as exc:
            return str(exc)
        if parse_metadata(bytes(data[: MAX_METADATA + 1])) is None:
            return "its metadata line is not a JSON object"
        if header.detached:
            part = header.part
            try:
                check_payload(data, header, self.backend.peek(name, key, None, part))
            except FileNotFoundError:
                return f"its payload file {self.backend.location(name, key, part)} is missing"
            except DamagedEntryError as exc:
                return str(exc)
        if not writes_directory(header.serializer):
            return None
        try:
            check_directory(payload, self.backend.directory(name, key))
        except DamagedEntryError as exc:
            return str(exc)
        return None

    # --- writing -------------------------------------------------------------------------

    def save(
        self,
        name: str,
        key: str,
        value: Any,
        metadata: str,
        chosen: Traits,
        fixed_metadata: str = "",
        secret: bytes | None = None,
    ) -> str:
        """Serialize ``value`` with the ``chosen`` serializer and publish its entry atomically;
        returns its fingerprint (hex).

        ``metadata`` is JSON object members (``"a":1,"b":2``, no braces) for the entry's
        metadata line; ``fixed_metadata`` is more, which the caller encodes once and reuses,
        written first. With ``secret`` the entry is signed. After a load found the key
        missing the write is create-only: ``EntryExistsError`` if another caller stored it
        meanwhile (its entry stands). Raises ``StoreError`` (nothing partial left behind) if
        serializing or writing fails, ``ReadOnlyError`` if the store is read-only.
        """
        self.refuse_if_read_only("store an entry")
        exposed = self._untrusted()
        if exposed is not None and secret is None:
            raise StoreError(exposed)
        chosen, payload = self._serialize(name, key, value, chosen)
        first: Any = payload[0] if len(payload) == 1 else None
        size = len(first) if type(first) is bytes else sum(memoryview(c).nbytes for c in payload)
        budget = self._budget
        if budget is not None and not budget.fits(size):
            self._refuse(
                name,
                key,
                chosen,
                f"the result ({size} bytes) is larger than the store's whole size budget "
                f"({budget.limit} bytes), so it is not stored",
            )
        written, fingerprint = self._write(
            name, key, chosen, payload, first, size, metadata, fixed_metadata, secret
        )
        if budget is not None:
            try:
                budget.record(written)
            except OSError as exc:
                # The entry is stored; only eviction failed, and the next write retries it.
                warn_once(
                    ("evict", str(self.root)),
                    f"memo: could not evict old entries from {self.root}: {exc}; the store "
                    "may exceed its size budget until a later write succeeds",
                )
        return fingerprint.hex()

    def _serialize(
        self, name: str, key: str, value: Any, chosen: Traits
    ) -> tuple[Traits, Sequence[Any]]:
        """``value``'s payload and the serializer that made it: pickle for a value ``chosen``
        would not give back unchanged (warned once); a ``Cacheable``'s is the manifest of the
        directory it wrote. ``StoreError`` if it cannot be serialized."""
        try:
            if chosen.directory:
                if not self.capabilities.directories:
                    raise StoreError(
                        "Cacheable results need a local cache_path (a remote store holds "
                        "single objects)"
                    )
                fill = functools.partial(write_directory, value)  # (into the directory given)
                return chosen, [self.backend.write_directory(name, key, fill)]
            try:
                return chosen, chosen.serializer.dumps(value)
            except UnfaithfulError as exc:
                # Stored as it is, with pickle, rather than returned changed on a hit.
                warn_once(
                    ("unfaithful", name, chosen.name),
                    f"memo: a result of {name} is stored with pickle, not {chosen.name}: {exc}",
                    stacklevel=7,
                )
                return PICKLE, PICKLE.serializer.dumps(value)
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"could not write to {self.root}: {exc}") from exc
        except Exception as exc:
            raise StoreError(
                f"the result ({type(value).__qualname__}) could not be serialized with "
                f"{chosen.name!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def _write(
        self,
        name: str,
        key: str,
        chosen: Traits,
        payload: Sequence[Any],
        first: Any,
        size: int,
        metadata: str,
        fixed: str,
        secret: bytes | None,
    ) -> tuple[int, bytes]:
        """Publish an entry holding ``payload`` (its ``first`` chunk, if it is one, and its
        ``size``), with its per-call and ``fixed`` metadata: create-only after a miss, in place
        otherwise. Returns the bytes written and the payload's fingerprint."""
        files = self.capabilities.files
        suffix = chosen.suffix  # (None: the payload stays inside the entry file)
        try:
            if suffix is None:
                entry = outgoing(
                    files, metadata, fixed, chosen.name, key, payload, first, size, secret
                )
            else:
                kind = (chosen.name, chosen.field)
                data = detached(files, metadata, fixed, kind, key, payload, size, secret)
        except ValueError as exc:  # too long for the entry format
            self._refuse(name, key, chosen, str(exc))
        absent = self._absent
        replace = key not in absent
        if not replace:
            absent.discard(key)
        try:
            if suffix is None:
                return self._publish(name, key, entry, replace)
            return self._publish_detached(name, key, suffix, data, replace)
        except FileExistsError:
            raise EntryExistsError(key) from None
        except StoreError:
            raise
        except OSError as exc:
            raise StoreError(f"could not write to {self.root}: {exc}") from exc

    def _publish_detached(
        self, name: str, key: str, part: str, data: Any, replace: bool
    ) -> tuple[int, bytes]:
        """Publish a payload file and its record so that a record is only ever loaded with the
        payload its digest names. After a miss the payload file is written (hashed as it
        goes) but placed only once its record is, create-only: a caller that lost the race
        for the key never touches the payload file, and a reader in between finds a record
        without a payload file, a clean miss. A replacement removes the old record first,
        then places the payload file, then the record: readers miss until it is whole."""
        make, payload = data
        publish = self._publish
        placed: list[int] = []

        def place_record(count: int, fingerprint: bytes) -> None:
            record = Outgoing(None, (make(fingerprint), fingerprint))
            placed.append(publish(name, key, record, False)[0])

        if replace:
            self.backend.delete(name, key, SUFFIX)
            written, fingerprint = publish(name, key, payload._replace(part=part), True)
            record = Outgoing(None, (make(fingerprint), fingerprint))
            written += publish(name, key, record, True)[0]
        else:
            placing = payload._replace(part=part, then=place_record)
            written, fingerprint = publish(name, key, placing, True)
            written += placed[0]
        return written, fingerprint

    def _refuse(self, name: str, key: str, chosen: Traits, why: str) -> NoReturn:
        """Store nothing for ``key`` (and remove a Cacheable result's directory, already
        written): raises ``StoreError`` saying ``why``."""
        if chosen.directory:
            self.backend.delete(name, key)
        raise StoreError(why)

    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[bool]:
        """Hold ``key``'s lease (it gives False when ``timeout`` ran out)."""
        return hold(self.locks, key, timeout)

    # --- managing ------------------------------------------------------------------------

    def delete(self, name: str, key: str, payload: str | None = None) -> bool:
        """Remove one entry (its directory and payload file too, if any); True if it existed.
        ``payload`` is its payload file's suffix where a listing gave it; else its record is
        read for it."""
        self.refuse_if_read_only("delete an entry")
        if payload is None:
            header = self.header(name, key)
            payload = header.part or None if header is not None else None
        return self.backend.delete(name, key, None, payload)

    def listing(self, name: str | None = None) -> list[Listed]:
        """The entries, optionally only those stored under ``name``."""
        return self.backend.listing(name)

    def untrusted(self) -> str | None:
        """Why others may have written this store's entries (then only signed ones are used
        here), or None."""
        return self._untrusted()

    def _declared(self) -> str:
        return (
            f"the store {self.root} is opened with signed_only=True (others write there), so "
            "only entries signed with your key are read or written there: set secret_key= or "
            "MEMO_SECRET_KEY to the key its writers sign with"
        )

    def copy_from(self, source: EntryStore, name: str, key: str, signed: bool = False) -> bool:
        """Copy an entry of ``source`` (a lower tier) here as it is stored there, metadata and
        signature too, once its digests check: its payload file first, then its record,
        create-only (an entry here stands). A ``Cacheable`` directory is not copied. True if
        copied; False, and nothing left half-copied to be loaded, otherwise. From a store
        others may write, only for ``signed`` use (its readers check every signature)."""
        if self.read_only or (not signed and source.untrusted() is not None):
            return False  # (an entry others may have written is not loaded there either)
        try:
            data = bytes(source.backend.peek(name, key))
            header, _ = unpack(data, fromhex(key))
            if writes_directory(header.serializer):
                return False
            if header.detached:
                payload = bytes(source.backend.peek(name, key, None, header.part))
                check_payload(data, header, payload)
                part = Outgoing(None, (payload, header.fingerprint), header.part)
                self._publish(name, key, part, True)
            self._publish(name, key, Outgoing(None, (data, header.fingerprint)), False)
        except FileExistsError:
            return False
        except (OSError, StoreError, DamagedEntryError) as exc:
            logger.debug("not copied up: %s-%s (%s)", name, key[:12], exc)
            return False
        return True

    def refuse_if_read_only(self, what: str) -> None:
        """``ReadOnlyError`` if this store is read-only, saying it cannot ``what``."""
        if self.read_only:
            raise ReadOnlyError(
                f"cannot {what}: the store {self.root} is read-only here (opened with "
                "read_only=True); open it without read_only to change it"
            )
