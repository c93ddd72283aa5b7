"""``Lazy``: a handle to a stored result, identified by the fingerprint of its stored bytes.

``f.lazy(x)`` returns one without reading ``f``'s value (only the entry's header). Passed into
another memoized function it is keyed by its fingerprint, so ``g(f.lazy(x))`` that hits in
``g`` never loads ``f``'s result: Rasa's two-level cache (call key -> output fingerprint ->
result) and curifactory's lazy objects are this one mechanism.
"""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._keys._bytes import Context, text
from ._keys._canonical import Handler, add_plugin
from ._storage._backend import StoreError
from ._storage._serializers import PickleSerializer

__all__ = [
    "Lazy",
    "add_metadata",
    "collecting",
    "metadata_json",
    "stop_collecting",
    "stored_fingerprint",
    "value_fingerprint",
]

T = TypeVar("T")


def stored_fingerprint(serializer: str, digest: bytes) -> str:
    """A handle's fingerprint: the digest of the stored bytes and the serializer that wrote
    them (equal bytes written by two serializers can be two values)."""
    import xxhash

    return str(xxhash.xxh3_128(serializer.encode() + b"\0" + digest).hexdigest())


class Lazy(Generic[T]):
    """A stored result that is read only when ``load()`` is called.

    ``fingerprint`` identifies the stored value (xxh3-128 of its serialized bytes and the
    serializer's name: two calls that produced identical values share it) and is known
    without loading. A ``Lazy`` passed to a memoized function is part of that call's key
    through its fingerprint alone.
    """

    __slots__ = ("_call", "_fingerprint", "_value")

    def __init__(
        self,
        fingerprint: str,
        call: tuple[Callable[..., T], tuple[Any, ...], dict[str, Any]],
        value: tuple[T] | None = None,
    ) -> None:
        self._fingerprint = fingerprint
        self._call = call
        self._value = value

    @property
    def fingerprint(self) -> str:
        """The hex fingerprint of the stored value (no load needed)."""
        return self._fingerprint

    @property
    def path(self) -> str | None:
        """Where the stored value is, for other tools (``Memoized.path``), or None."""
        function, args, kwargs = self._call
        where = getattr(function, "path", None)
        return None if where is None else where(*args, **kwargs)

    def load(self) -> T:
        """Read the value from the store (recomputing it if the entry has gone since)."""
        if self._value is not None:
            return self._value[0]
        function, args, kwargs = self._call
        # The memoized function called eagerly, even if it was decorated with lazy=True.
        value: T = function._handle_value(args, kwargs)  # type: ignore[attr-defined]
        return value

    async def aload(self) -> T:
        """``load()`` for async code: a handle of an ``async def`` recomputes by awaiting."""
        if self._value is not None:
            return self._value[0]
        function, args, kwargs = self._call
        loader = getattr(function, "_ahandle_value", None)
        if loader is None:
            value: T = function._handle_value(args, kwargs)  # type: ignore[attr-defined]
            return value
        awaited: T = await loader(args, kwargs)
        return awaited

    def __repr__(self) -> str:
        function = getattr(self._call[0], "__qualname__", self._call[0])
        return f"memo.Lazy({function}, fingerprint={self._fingerprint[:12]}...)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lazy) and other._fingerprint == self._fingerprint

    def __hash__(self) -> int:
        return hash(("memo.Lazy", self._fingerprint))

    def __reduce__(self) -> tuple[Any, ...]:
        # The value held for an uncacheable result is not sent along; it is recomputed. The
        # call goes by value where pickle would refuse it (a function of a script's __main__,
        # a local one), so a handle reaches a worker process whatever made it.
        import cloudpickle

        return (_restore, (self._fingerprint, cloudpickle.dumps(self._call)))


def _restore(fingerprint: str, call: bytes) -> Lazy[Any]:
    import pickle

    return Lazy(fingerprint, pickle.loads(call))


def _encode_lazy(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"&"
    out += text(obj.fingerprint)


def _lazy_rule(tp: type) -> Handler | None:
    return _encode_lazy if issubclass(tp, Lazy) else None


add_plugin(_lazy_rule)

_collected: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "memo_metadata", default=None
)


def add_metadata(**items: Any) -> bool:
    """Attach ``items`` to the metadata of the entry the running memoized function will store.

    Call it from inside a memoized function (or code it calls): the items appear under
    ``"user"`` in the entry's metadata (``f.entries()``, the entry's JSON line). Values must be
    JSON-serializable (others are stored as their ``str``). Returns False, and does nothing,
    when no memoized function is computing in this thread or task.
    """
    collected = _collected.get()
    if collected is None:
        return False
    collected.update(items)
    return True


# A computation collects ``add_metadata`` items into a dict: ``token = collecting(items)``
# before it runs, ``stop_collecting(token)`` after (the ContextVar's own methods: no Python
# call around them on every miss).
collecting = _collected.set
stop_collecting = _collected.reset

# Anything JSON cannot encode is shown as its str().
_METADATA_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def metadata_json(items: dict[str, Any]) -> str:
    """The values given to ``memo.add_metadata`` as JSON text (what JSON cannot encode is shown
    by its ``str``); ``StoreError`` (a failure to cache) if they cannot be encoded at all."""
    try:
        return _METADATA_JSON.encode(items)
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a dict that holds itself
        raise StoreError(
            f"the values given to memo.add_metadata cannot be written as JSON ({exc}); "
            "pass plain numbers, strings, lists and dicts"
        ) from exc


def value_fingerprint(value: Any) -> str:
    """The fingerprint a value would have if pickle stored it; for a value pickle cannot
    write, one used once (a call keyed on it never hits, rather than hit another's)."""
    import xxhash

    pickle = PickleSerializer()
    try:
        chunks = pickle.dumps(value)
    except Exception:
        return f"unstored-{uuid.uuid4().hex}"
    hasher = xxhash.xxh3_128()
    for chunk in chunks:
        hasher.update(chunk)
    return stored_fingerprint(pickle.name, hasher.digest())
