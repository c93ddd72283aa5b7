"""Blessings: a recorded statement that a function's current code fingerprint answers for an
earlier one, so entries the earlier code stored hit again after a harmless edit (a rename, a
refactor) instead of being computed anew.

A blessing is never implicit: it exists only once ``f.bless()`` (or ``memo bless``) wrote its
record. The record is an entry of its own beside the function's, named ``memo_bless.<name>``
and keyed by the function and the blessed fingerprint, so ``memo ls`` and ``memo show`` list it
with who wrote it, when, and which fingerprints it answers for (earlier blessings carried on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import xxhash

from ._storage._backend import MISS
from ._storage._entries import EntryStore
from ._storage._serializers import DEFAULT, PICKLE

__all__ = ["read_blessing", "write_blessing"]

PREFIX = "memo_bless."


def _key(qualname: str, code: str) -> str:
    return str(xxhash.xxh3_128_hexdigest(f"memo-bless\0{qualname}\0{code}".encode()))


def read_blessing(
    tiers: Sequence[EntryStore], name: str, qualname: str, code: str, secret_keys: Sequence[bytes]
) -> dict[str, Any] | None:
    """The blessing of ``qualname``'s fingerprint ``code`` in the first tier holding one, or
    None: ``{"function", "to", "from": [fingerprints], "who", "when"}``."""
    key = _key(qualname, code)
    for tier in tiers:
        try:
            # (Asked first: the usual answer, no blessing, then costs no read that could warn.)
            if not tier.exists(PREFIX + name, key):
                continue
        except Exception:  # a store that cannot say has no blessing to give
            continue
        record = tier.load(PREFIX + name, key, DEFAULT, tuple(secret_keys))
        if record is not MISS and isinstance(record, dict) and record.get("to") == code:
            return record
    return None


def write_blessing(
    store: EntryStore,
    name: str,
    qualname: str,
    code: str,
    previous: Sequence[str],
    secret: bytes | None,
) -> dict[str, Any]:
    """Record that ``code`` answers for the fingerprints ``previous`` (it replaces an earlier
    blessing of ``code``); returns the record."""
    import getpass
    import socket  # (not imported with memo: only a blessing needs them)

    try:
        user = getpass.getuser()
    except Exception:  # (no user name in some containers)
        user = "unknown"
    record = {
        "function": qualname,
        "to": code,
        "from": list(dict.fromkeys(previous)),
        "who": f"{user}@{socket.gethostname()}",
        "when": time.time(),
    }
    shown = json.dumps({"function": "memo.bless", "name": PREFIX + name, "blessing": record})
    metadata = shown[1:-1]  # (members, without the braces)
    store.save(PREFIX + name, _key(qualname, code), record, metadata, PICKLE, "", secret)
    return record
