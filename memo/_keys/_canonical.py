"""The canonical, type-tagged encoding of Python values into bytes.

Every value becomes bytes that start with a one-byte type tag and are length-prefixed wherever
a length is needed, so the encoding is injective: ``1``, ``1.0``, ``True``, ``"1"``, ``[1]`` and
``(1,)`` never collide. Dicts and sets are sorted by the encodings of their items, so neither
insertion order nor the hash seed can change a key. Large buffers are streamed into the hasher
without being copied (``_digest`` hashes). Rules for richer types live in ``_types``; user rules
in ``registry``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import EncodingError
from ._bytes import (
    NAN,
    Context,
    UnencodableError,
    pack_d,
    pack_i,
    pack_q,
    qualified,
    text,
)

__all__ = [
    "add_plugin",
    "add_rules",
    "encode",
    "encoding_error",
    "handler_for",
    "ignored",
    "registry",
    "reset_rules",
    "resolved",
]

Handler = Callable[[Any, bytearray, "Context"], None]


MAX_DEPTH = 200
# Buffers at least this large are fed to the hasher directly instead of being copied.
_SPILL = 1 << 16

# --- atoms -------------------------------------------------------------------------------------


def _none(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"N"


def _bool(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"T" if obj else b"F"


def _int(obj: Any, out: bytearray, ctx: Context) -> None:
    if -(1 << 63) <= obj < (1 << 63):
        out += b"i"
        out += pack_i(obj)
    else:
        data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        out += b"j"
        out += pack_q(len(data))
        out += data


def _float(obj: Any, out: bytearray, ctx: Context) -> None:
    # All NaNs are one value here; -0.0 keeps its sign since 1/x tells them apart.
    out += NAN if obj != obj else b"f" + pack_d(obj)


def _complex(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"c"
    _float(obj.real, out, ctx)
    _float(obj.imag, out, ctx)


def _str(obj: Any, out: bytearray, ctx: Context) -> None:
    data = obj.encode("utf-8", "surrogatepass")
    out += b"s"
    out += pack_q(len(data))
    out += data


def _bytes(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"b" if type(obj) is bytes else b"y"
    out += pack_q(len(obj))
    if len(obj) >= _SPILL:
        ctx.feed(out, obj)
    else:
        out += obj


def _memoryview(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"v"
    out += text(obj.format)
    _tuple(obj.shape, out, ctx)
    data = obj if obj.c_contiguous else obj.tobytes()
    view = memoryview(data).cast("B")
    out += pack_q(view.nbytes)
    ctx.feed(out, view)


def _ellipsis(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"z"


# --- containers --------------------------------------------------------------------------------


def enter(obj: Any, ctx: Context) -> int:
    ident = id(obj)
    active = ctx.active
    if active is None:
        active = ctx.active = set()
    elif ident in active:
        raise UnencodableError(type(obj), "it contains itself (a cycle)")
    if ctx.depth >= MAX_DEPTH:
        raise UnencodableError(type(obj), f"it is nested deeper than {MAX_DEPTH} levels")
    active.add(ident)
    ctx.depth += 1
    return ident


def leave(ident: int, ctx: Context) -> None:
    if ctx.active is not None:
        ctx.active.discard(ident)
    ctx.depth -= 1


def _sequence(tag: bytes) -> Handler:
    def handler(obj: Any, out: bytearray, ctx: Context) -> None:
        ident = enter(obj, ctx)
        out += tag
        out += pack_q(len(obj))
        for index, item in enumerate(obj):
            try:
                encode_into(item, out, ctx)
            except UnencodableError as exc:
                exc.path.append(f"[{index}]")
                raise
        leave(ident, ctx)

    return handler


_list = _sequence(b"l")
_tuple = _sequence(b"t")


def _to_bytes(obj: Any, ctx: Context) -> bytes:
    sub = bytearray()
    saved = ctx.stream
    ctx.stream = False
    try:
        encode_into(obj, sub, ctx)
    finally:
        ctx.stream = saved
    return bytes(sub)


def _dict(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"d"
    out += pack_q(len(obj))
    pairs = []
    for key, value in obj.items():
        try:
            pairs.append((_to_bytes(key, ctx), key, value))
        except UnencodableError as exc:
            exc.path.append(f" (a key {key!r:.40})")
            raise
    pairs.sort(key=_first)
    if any(pairs[i][0] == pairs[i - 1][0] for i in range(1, len(pairs))):
        # Distinct keys with equal encodings (ignored types): order whole items instead.
        for item in sorted(encoded + _to_bytes(value, ctx) for encoded, _, value in pairs):
            out += item
    else:
        for encoded, key, value in pairs:
            out += encoded
            try:
                encode_into(value, out, ctx)
            except UnencodableError as exc:
                exc.path.append(f"[{key!r:.40}]")
                raise
    leave(ident, ctx)


def _first(pair: tuple[bytes, Any, Any]) -> bytes:
    return pair[0]


def _ordered_dict(obj: Any, out: bytearray, ctx: Context) -> None:
    # OrderedDict equality depends on order, so its key does too.
    ident = enter(obj, ctx)
    out += b"o"
    out += pack_q(len(obj))
    for key, value in obj.items():
        try:
            encode_into(key, out, ctx)
            encode_into(value, out, ctx)
        except UnencodableError as exc:
            exc.path.append(f"[{key!r:.40}]")
            raise
    leave(ident, ctx)


def _set(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"S" if isinstance(obj, set) else b"Z"
    out += pack_q(len(obj))
    try:
        items = sorted(_to_bytes(item, ctx) for item in obj)
    except UnencodableError as exc:
        exc.path.append(" (an element)")
        raise
    for item in items:
        out += item
    leave(ident, ctx)


# --- dispatch ----------------------------------------------------------------------------------

_EXACT: dict[type, Handler] = {
    type(None): _none,
    bool: _bool,
    int: _int,
    float: _float,
    complex: _complex,
    str: _str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _memoryview,
    list: _list,
    tuple: _tuple,
    dict: _dict,
    collections.OrderedDict: _ordered_dict,
    set: _set,
    frozenset: _set,
    type(...): _ellipsis,
}
# isinstance rules, most specific first, for subclasses and types without an exact entry.
_BY_BASE: list[tuple[type, Handler]] = [(bool, _bool), (collections.OrderedDict, _ordered_dict)]
# Rules for types that need a test rather than a base class (dataclasses, numpy, ...).
_plugins: list[Callable[[type], Handler | None]] = []
registry: dict[type, Callable[[Any], Any]] = {}
ignored: set[type] = set()
_SUBCLASSABLE: list[tuple[type, Handler]] = [
    (int, _int),
    (float, _float),
    (complex, _complex),
    (str, _str),
    (bytes, _bytes),
    (bytearray, _bytes),
    (list, _list),
    (tuple, _tuple),
    (dict, _dict),
    (set, _set),
    (frozenset, _set),
]

resolved: dict[type, Handler] = {}
_resolve_lock = threading.Lock()


def _registered(convert: Callable[[Any], Any], tp: type) -> Handler:
    name = qualified(tp)

    def handler(obj: Any, out: bytearray, ctx: Context) -> None:
        out += b"R"
        out += name
        ident = enter(obj, ctx)
        try:
            encode_into(convert(obj), out, ctx)
        except UnencodableError as exc:
            exc.path.append(f" (as encoded by {getattr(convert, '__qualname__', convert)})")
            raise
        leave(ident, ctx)

    return handler


def _ignored(tp: type) -> Handler:
    marker = b"G" + qualified(tp)

    def handler(obj: Any, out: bytearray, ctx: Context) -> None:
        out += marker

    return handler


def _own_slots(tp: type, base: type) -> list[str]:
    """Slots the classes between ``tp`` and ``base`` add (state the base's rule cannot see)."""
    names: list[str] = []
    for cls in tp.__mro__:
        if cls is base:
            break
        slots = cls.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return [name for name in names if name not in ("__dict__", "__weakref__")]


def _subclass(base_handler: Handler, tp: type, base: type) -> Handler:
    # The subclass's state must not be dropped: an attribute or slot of its own (a unit, a
    # label) would otherwise let two different values share a key. Such values are refused.
    marker = b"X" + qualified(tp)
    if _own_slots(tp, base):
        return _refused(f"its class adds slots to {base.__qualname__}, which memo cannot see")

    def handler(obj: Any, out: bytearray, ctx: Context) -> None:
        if getattr(obj, "__dict__", None):
            raise UnencodableError(
                type(obj), f"it has attributes besides its {base.__qualname__} value"
            )
        out += marker
        out += _class_code[0](tp)  # its methods (a dict's __missing__) change behaviour
        base_handler(obj, out, ctx)

    return handler


def _no_code(tp: type) -> bytes:
    return b""


# How a class's code enters the key of a subclass's value: set by ``_types``, which knows code
# fingerprints (this module sits below them).
_class_code: list[Callable[[type], bytes]] = [_no_code]


def set_class_code(code_of: Callable[[type], bytes]) -> None:
    """Let the code fingerprint of a builtin's subclass count in its values' keys."""
    _class_code[0] = code_of
    reset_rules()


def _refused(reason: str) -> Handler:
    def handler(obj: Any, out: bytearray, ctx: Context) -> None:
        raise UnencodableError(type(obj), reason)

    return handler


def _unencodable(obj: Any, out: bytearray, ctx: Context) -> None:
    raise UnencodableError(type(obj))


def _resolve(tp: type) -> Handler:
    """Find the rule for a type once; the answer is cached until the registry changes."""
    for base in tp.__mro__:
        if base in registry:
            return _registered(registry[base], base)
        if base in ignored and base is not object:
            return _ignored(base)
    if tp in _EXACT:
        return _EXACT[tp]
    for base, handler in _BY_BASE:
        if issubclass(tp, base):
            return handler
    for plugin in _plugins:
        found = plugin(tp)
        if found is not None:
            return found
    for base, handler in _SUBCLASSABLE:
        if issubclass(tp, base):
            return handler if tp is base else _subclass(handler, tp, base)
    if object in ignored:
        return _ignored(object)
    return _unencodable


def add_plugin(plugin: Callable[[type], Handler | None]) -> None:
    """Let another memo module (File, Lazy, numpy, ...) supply rules for its own types."""
    with _resolve_lock:
        _plugins.append(plugin)
        resolved.clear()


def add_rules(
    exact: dict[type, Handler],
    by_base: list[tuple[type, Handler]],
    subclassable: Sequence[tuple[type, Handler]] = (),
) -> None:
    """Add rules by exact type and by base class (checked in order, before the plugins), and
    rules for subclasses (checked after the plugins, the value tagged with its type)."""
    with _resolve_lock:
        _EXACT.update(exact)
        _BY_BASE.extend(by_base)
        _SUBCLASSABLE[:0] = subclassable
        resolved.clear()


def reset_rules() -> None:
    """Forget resolved rules (after the user registry changed)."""
    resolved.clear()


def resolve_lock() -> threading.Lock:
    """The lock guarding rule tables, held while the user registry changes."""
    return _resolve_lock


def handler_for(tp: type) -> Handler:
    """The rule for ``tp``, found once and kept in ``resolved`` (which the hot paths ask
    first) until the rules change."""
    with _resolve_lock:
        handler = resolved[tp] = _resolve(tp)
    return handler


def encode_into(obj: Any, out: bytearray, ctx: Context) -> None:
    """Append the encoding of ``obj`` to ``out``."""
    tp = type(obj)
    handler = resolved.get(tp)
    if handler is None:
        handler = handler_for(tp)
    handler(obj, out, ctx)


def encode(obj: Any) -> bytes:
    """The canonical encoding of ``obj`` (raises ``UnencodableError``)."""
    out = bytearray()
    encode_into(obj, out, Context())
    return bytes(out)


def encoding_error(
    exc: UnencodableError, where: str, parameter: str | None = None
) -> EncodingError:
    """Turn an internal failure into the user-facing error that names the fixes."""
    tp = exc.value_type
    name = f"{tp.__module__}.{tp.__qualname__}"
    subject = f"argument {parameter!r}" if parameter else "a value"
    inside = f" at {parameter or ''}{exc.where()}" if exc.where() else ""
    if exc.reason:
        return EncodingError(
            f"{where}: cannot encode {subject}{inside} for the cache key: {exc.reason}. "
            "Pass another value, or leave the argument out of the key with "
            f"ignore=[{parameter or '<name>'!r}]."
        )
    hint = ""
    if parameter == "self":
        hint = (
            " For a method, make the instance encodable (a dataclass, or Encoder.register for "
            "its class) or, if results do not depend on the instance's state, "
            "pass ignore=['self']."
        )
    return EncodingError(
        f"{where}: cannot encode {subject}{inside} of type {name} for the cache key. "
        f"Fix it with @memo.Encoder.register on a function taking a {tp.__qualname__} and "
        "returning encodable data (e.g. a tuple of its defining fields), or leave the "
        f"argument out of the key with ignore=[{parameter or '<name>'!r}].{hint}"
    )
