"""The canonical, type-tagged encoding of Python values into bytes, and its hashing.

Every value becomes bytes that start with a one-byte type tag and are length-prefixed wherever
a length is needed, so the encoding is injective: ``1``, ``1.0``, ``True``, ``"1"``, ``[1]`` and
``(1,)`` never collide. Dicts and sets are sorted by the encodings of their items, so neither
insertion order nor the hash seed can change a key. Large buffers are streamed into the hasher
without being copied. Rules for richer types live in ``_types``; user rules in ``registry``.
"""

from __future__ import annotations

import collections
import math
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import xxhash

__all__ = [
    "UnencodableError",
    "add_plugin",
    "add_rules",
    "atom_default",
    "atoms_encoder",
    "encode",
    "ignored",
    "registry",
    "reset_rules",
    "stream_digest",
    "value_digest",
    "written_out",
]

Handler = Callable[[Any, bytearray, "Context"], None]


MAX_DEPTH = 200
# Buffers at least this large are fed to the hasher directly instead of being copied.
_SPILL = 1 << 16

pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<q").pack  # = int.to_bytes(8, "little", signed=True), at half the cost
_pack_d = struct.Struct("<d").pack
_NAN = b"f" + _pack_d(math.nan)
# A type tag and the value's 8 bytes in one call (the atoms of stream_digest, on every call).
_tag_q = struct.Struct("<cQ").pack
_tag_i = struct.Struct("<cq").pack
_tag_d = struct.Struct("<cd").pack


class UnencodableError(Exception):
    """Internal: a value no rule covers; ``path`` says where it sits inside the argument."""

    def __init__(self, value_type: type, reason: str = "") -> None:
        super().__init__(value_type, reason)
        self.value_type = value_type
        self.reason = reason
        self.path: list[str] = []
        self.index = -1

    def where(self) -> str:
        """The location inside the argument, such as ``['model'][2]``, or ``''`` at the top."""
        return "".join(reversed(self.path))


class Context:
    """Per-encoding state: containers being encoded (cycle guard), depth, optional hasher."""

    __slots__ = ("active", "depth", "hasher", "stream")

    def __init__(self, stream: bool = False) -> None:
        self.active: set[int] | None = None  # made at the first container: atoms need none
        self.depth = 0
        self.stream = stream
        self.hasher: Any = None

    def feed(self, out: bytearray, buffer: Any) -> None:
        """Append a (possibly huge) buffer, streaming it into the hasher when hashing."""
        if not self.stream:
            out += buffer
            return
        if self.hasher is None:
            self.hasher = xxhash.xxh3_128()
        self.hasher.update(out)
        out.clear()
        self.hasher.update(buffer)


def qualified(tp: type | Callable[..., Any]) -> bytes:
    name = f"{getattr(tp, '__module__', '?')}:{getattr(tp, '__qualname__', repr(tp))}"
    data = name.encode("utf-8", "surrogatepass")
    return pack_q(len(data)) + data


def text(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return pack_q(len(data)) + data


# --- atoms -------------------------------------------------------------------------------------


def _none(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"N"


def _bool(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"T" if obj else b"F"


def _int(obj: Any, out: bytearray, ctx: Context) -> None:
    if -(1 << 63) <= obj < (1 << 63):
        out += b"i"
        out += _pack_i(obj)
    else:
        data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        out += b"j"
        out += pack_q(len(data))
        out += data


def _float(obj: Any, out: bytearray, ctx: Context) -> None:
    # All NaNs are one value here; -0.0 keeps its sign since 1/x tells them apart.
    out += _NAN if obj != obj else b"f" + _pack_d(obj)


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

_resolved: dict[type, Handler] = {}
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


def _subclass(base_handler: Handler, tp: type) -> Handler:
    marker = b"X" + qualified(tp)

    def handler(obj: Any, out: bytearray, ctx: Context) -> None:
        out += marker
        base_handler(obj, out, ctx)

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
            return _subclass(handler, tp)
    if object in ignored:
        return _ignored(object)
    return _unencodable


def add_plugin(plugin: Callable[[type], Handler | None]) -> None:
    """Let another memo module (File, Lazy, numpy, ...) supply rules for its own types."""
    with _resolve_lock:
        _plugins.append(plugin)
        _resolved.clear()


def add_rules(exact: dict[type, Handler], by_base: list[tuple[type, Handler]]) -> None:
    """Add rules by exact type and by base class (checked in order, before subclass rules)."""
    with _resolve_lock:
        _EXACT.update(exact)
        _BY_BASE.extend(by_base)
        _resolved.clear()


def reset_rules() -> None:
    """Forget resolved rules (after the user registry changed)."""
    _resolved.clear()


def resolve_lock() -> threading.Lock:
    """The lock guarding rule tables, held while the user registry changes."""
    return _resolve_lock


def encode_into(obj: Any, out: bytearray, ctx: Context) -> None:
    tp = type(obj)
    handler = _resolved.get(tp)
    if handler is None:
        with _resolve_lock:
            handler = _resolved[tp] = _resolve(tp)
    handler(obj, out, ctx)


def encode(obj: Any) -> bytes:
    """The canonical encoding of ``obj`` (raises ``UnencodableError``)."""
    out = bytearray()
    encode_into(obj, out, Context())
    return bytes(out)


def stream_digest(prefix: bytes, labels: Sequence[bytes], values: Sequence[Any]) -> str:
    """xxh3_128 hex digest of ``prefix`` then, for each label, the label and its encoded value.

    Large buffers are streamed into the hasher rather than copied; labels are already-encoded
    bytes. Raises ``UnencodableError`` with the failing value's position in ``index``.
    """
    out = bytearray(prefix)
    ctx: Context | None = None  # made by the first value that needs more than an atom
    resolved = _resolved
    index = 0
    try:
        for label in labels:
            out += label
            value = values[index]
            # The hit path: the common atoms inline, everything else through the table.
            tp = type(value)
            if tp is str:
                data = value.encode("utf-8", "surrogatepass")
                out += _tag_q(b"s", len(data))
                out += data
            elif tp is int and -(1 << 63) <= value < (1 << 63):
                out += _tag_i(b"i", value)
            elif tp is float:
                out += _NAN if value != value else _tag_d(b"f", value)
            else:
                handler = resolved.get(tp)
                if handler is None:
                    with _resolve_lock:
                        handler = resolved[tp] = _resolve(tp)
                if ctx is None:
                    ctx = Context(stream=True)
                handler(value, out, ctx)
            index += 1
    except UnencodableError as exc:
        exc.index = index
        raise
    if ctx is None or ctx.hasher is None:
        return xxhash.xxh3_128_hexdigest(out)
    ctx.hasher.update(out)
    return str(ctx.hasher.hexdigest())


# For code written out per kind of call: the source testing that value ``v{i}`` is of a kind
# that stream_digest encodes inline, and the parts of its encoding there (a string's bytes are
# named as they are made, so the length before them can use them).
_ATOM_SOURCE = {
    int: (f"type(v{{i}}) is int and -{1 << 63} <= v{{i}} < {1 << 63}", ("_tag_i(b'i', v{i})",)),
    float: ("type(v{i}) is float and v{i} == v{i}", ("_tag_d(b'f', v{i})",)),
    str: (
        "type(v{i}) is str",
        ("_tag_q(b's', len(d{i} := v{i}.encode('utf-8', 'surrogatepass')))", "d{i}"),
    ),
}
_ATOM_NAMESPACE: dict[str, Any] = {"_tag_i": _tag_i, "_tag_d": _tag_d, "_tag_q": _tag_q}


def atoms_encoder(
    labels: Sequence[bytes], kinds: Sequence[type], defaults: Sequence[Any] = ()
) -> Callable[[bytes, Sequence[Any]], bytes | None] | None:
    """For calls whose values are ints (of 64 bits), floats (not NaN) and strings of ``kinds``,
    in order: a function giving exactly what ``stream_digest`` hashes (``prefix``, then each
    label and encoded value), or None when the values are not of those kinds. None if a kind
    is not one of those. Written out for the kinds: a typical call's key then takes a few
    operations instead of ``stream_digest``'s loop.

    ``defaults`` (by position; ``atom_default`` says which can be used) are encoded once: a
    value that is the default object itself (binding filled it in) takes its encoding as is.
    """
    guards = _atom_guards(kinds)
    if guards is None:
        return None
    parts = ["prefix"]
    namespace = dict(_ATOM_NAMESPACE)
    namespace.update((f"L{i}", label) for i, label in enumerate(labels))
    for i, kind in enumerate(kinds):
        source = [part.format(i=i) for part in _ATOM_SOURCE[kind][1]]
        if i < len(defaults) and atom_default(kind, defaults[i]):
            namespace[f"D{i}"], namespace[f"E{i}"] = defaults[i], _atom_bytes(kind, defaults[i])
            guards[i] = f"(v{i} is D{i} or {guards[i]})"
            # The first part makes what later ones use (a string's bytes): all test the same.
            source = [f"(E{i} if v{i} is D{i} else {source[0]})"] + [
                f"(b'' if v{i} is D{i} else {part})" for part in source[1:]
            ]
        parts += [f"L{i}", *source]
    body = [f"return b''.join(({', '.join(parts)},))"]
    encoder: Callable[[bytes, Sequence[Any]], bytes | None] = written_out(
        "prefix, values", len(kinds), guards, body, namespace
    )
    return encoder


def atom_default(kind: type, default: Any) -> bool:
    """Whether a parameter's default is of ``kind`` and encoded inline (an int of 64 bits, a
    float not NaN, a string), so code written out for ``kind`` can encode it once."""
    source = _ATOM_SOURCE.get(kind)
    if source is None:
        return False
    test = written_out("values", 1, [source[0].format(i=0)], ["return True"], {})
    return test([default]) is True


def _atom_bytes(kind: type, value: Any) -> bytes:
    """The inline encoding of one value of ``kind``, by the same source the encoder runs."""
    parts = ", ".join(part.format(i=0) for part in _ATOM_SOURCE[kind][1])
    encode = written_out("values", 1, [], [f"return b''.join(({parts},))"], dict(_ATOM_NAMESPACE))
    encoded: bytes = encode([value])
    return encoded


def _atom_guards(kinds: Sequence[type]) -> list[str] | None:
    """The source of each value's test that it is of its kind in ``kinds`` and encoded by
    ``stream_digest``'s inline cases (an int of 64 bits, a float not NaN, a string). None if a
    kind is not int, float or str, or none given."""
    if not kinds or any(kind not in _ATOM_SOURCE for kind in kinds):
        return None
    return [_ATOM_SOURCE[kind][0].format(i=i) for i, kind in enumerate(kinds)]


def written_out(
    params: str, count: int, guards: Sequence[str], body: Sequence[str], namespace: dict[str, Any]
) -> Any:
    """A function of ``params``, whose last, ``values``, is unpacked into ``v0`` ...
    ``v{count-1}``: it returns None unless every guard holds (if any), else it runs ``body``.

    For code on every call, written out once per kind of call (as ``dataclasses`` writes
    ``__init__``). Its source is made from positions and kinds only: anything else (labels,
    names) reaches it through ``namespace``, never as text.
    """
    test = [f"    if not ({' and '.join(guards)}):", "        return None"] if guards else []
    source = "\n".join(
        [
            f"def written({params}):",
            f"    {', '.join(f'v{i}' for i in range(count))}, = values",
            *test,
            *(f"    {line}" for line in body),
        ]
    )
    exec(source, namespace)
    return namespace["written"]


def value_digest(value: Any) -> str:
    """xxh3_128 hex digest of one value's encoding: ``stream_digest(b"", (b"",), (value,))``.

    The atoms are encoded inline, as in ``stream_digest``: every stored entry records one
    digest per argument, so this is on the path of every miss.
    """
    tp = type(value)
    if tp is str:
        data = value.encode("utf-8", "surrogatepass")
        return xxhash.xxh3_128_hexdigest(b"s" + pack_q(len(data)) + data)
    if tp is int and -(1 << 63) <= value < (1 << 63):
        return xxhash.xxh3_128_hexdigest(b"i" + _pack_i(value))
    if tp is float:
        return xxhash.xxh3_128_hexdigest(_NAN if value != value else b"f" + _pack_d(value))
    return stream_digest(b"", (b"",), (value,))
