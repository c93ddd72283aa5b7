"""Looking at entries without loading them: checked headers, where a value is for other
tools, whether a load would accept an entry, its metadata, and what ``memo verify`` finds
wrong. ``EntryStore`` is built on this; nothing here counts as a use of an entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._backend import SUFFIX, Backend, StoreError
from ._cacheable import check_directory
from ._entry_file import checked_header, entry_age, fromhex
from ._format import (
    MAX_METADATA,
    DamagedEntryError,
    Header,
    check_payload,
    parse_metadata,
    unpack,
)
from ._serializers import writes_directory

__all__ = ["EntryChecks"]


class EntryChecks:
    """The read-only side of ``EntryStore``: headers, paths, checks, metadata."""

    backend: Backend
    _read: Any  # the backend's read, bound once

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
            if got is None or (not secret_keys and self.backend.untrusted() is not None):
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
