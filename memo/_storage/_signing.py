"""HMAC-SHA256 of entries, keyed once per secret: signed entries are checked on every hit."""

from __future__ import annotations

from typing import Any

__all__ = ["hmac_sha256"]

_BLOCK = 64  # SHA-256's block size, for HMAC

_pads: dict[bytes, tuple[Any, Any]] = {}


def hmac_sha256(secret: bytes, *parts: Any) -> bytes:
    """HMAC-SHA256 (RFC 2104) of the concatenated ``parts``, equal to
    ``hmac.digest(secret, b"".join(parts), "sha256")``.

    The hashes of the key's inner and outer pads are kept per secret and copied, as RFC 2104
    suggests: keying anew per call (what hmac.digest does) cost more than the rest of a
    signed hit.
    """
    pads = _pads.get(secret)
    if pads is None:
        import hashlib  # (once per secret: signing is off unless a key is set)

        block = secret if len(secret) <= _BLOCK else hashlib.sha256(secret).digest()
        block = block.ljust(_BLOCK, b"\0")
        inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))
        pads = _pads[secret] = (inner, outer)
    inner = pads[0].copy()
    for part in parts:
        inner.update(part)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()
