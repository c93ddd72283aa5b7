"""Code fingerprints: what a function does, independent of where it sits in its file.

A fingerprint covers the instruction stream (opcodes with their constants and names, so every
constant type and nested functions count, while line numbers, comments and docstrings do not),
default values, closure values, the values of globals the code reads, and, recursively with a
cycle guard, the functions and classes it uses from the user's own modules. Code from the
standard library contributes its name; code from installed packages its name and version.
"""

from __future__ import annotations

import builtins
import dis
import functools
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

from .._exceptions import EncodingError
from ._bytes import UnencodableError
from ._canonical import encode
from ._digest import large_digest
from ._modules import module_kind, package_version

__all__ = [
    "class_fingerprint",
    "code_details",
    "forget_fingerprint",
    "function_fingerprint",
    "hash_code",
    "rebound",
    "watched_fingerprint",
]

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "IMPORT_FROM", "LOAD_SUPER_ATTR"})
# Attributes that never change behaviour or are covered another way.
_CLASS_SKIP = frozenset(
    {"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__firstlineno__",
     "__static_attributes__", "__annotations__", "__dataclass_fields__", "__dataclass_params__",
     "__match_args__", "__parameters__", "__orig_bases__", "__slots__", "__abstractmethods__",
     "_abc_impl", "__annotate__", "__annotate_func__", "__annotations_cache__",
     # An enum's lookup cache: a Flag adds each combined member the process makes to it.
     "_value2member_map_"}
)  # fmt: skip

_BUILTINS = frozenset(vars(builtins))
_STATE_DEPTH = 64  # objects nested deeper than this (with functions being walked) count by type
_cache: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_cache_lock = threading.RLock()
_watched: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # the bindings


def hash_code(func: Callable[..., Any]) -> str:
    """Return the xxh3_128 hex digest of what ``func`` does (its code fingerprint).

    It changes when the bytecode, a constant, a default, a closure value, a global value read
    by the code, or a helper function or class from the user's own modules changes; it does not
    change for comments, docstrings, blank lines or moving the function within its file.
    """
    if isinstance(func, type):
        return class_fingerprint(func)
    return function_fingerprint(func)


def function_fingerprint(func: Callable[..., Any]) -> str:
    """The code fingerprint of a function (cached per function object for the process)."""
    return _fingerprint(_unwrap(func))


def watched_fingerprint(
    func: Callable[..., Any],
) -> tuple[str, tuple[tuple[dict[str, Any], str, Any], ...]]:
    """A function's code fingerprint and the globals it read, each with what it was bound to
    (``UNBOUND``: nothing). Once one is bound to another object, the fingerprint is stale:
    ``forget_fingerprint``, then ask again (unchanged large values are not hashed again)."""
    target = _unwrap(func)
    while True:
        digest = _fingerprint(target)
        with _cache_lock:
            bindings = _watched.get(target, ())
        if not rebound(bindings):
            return digest, bindings
        forget_fingerprint(target)  # kept from before a rebinding: take it anew


def rebound(bindings: tuple[tuple[dict[str, Any], str, Any], ...]) -> bool:
    """Whether a global of ``watched_fingerprint``'s bindings is now bound to another object."""
    return any(namespace.get(name, UNBOUND) is not bound for namespace, name, bound in bindings)


def forget_fingerprint(func: Callable[..., Any]) -> None:
    """Drop a function's kept fingerprint (a global it read was rebound)."""
    target = _unwrap(func)
    with _cache_lock:
        _watched.pop(target, None)
        _cache.pop(target, None)


def class_fingerprint(cls: type) -> str:
    """The fingerprint of a class: its methods' code for user classes, else name and version."""
    return _fingerprint(cls)


_local = threading.local()
UNBOUND: Any = object()  # what a global that is not (yet) defined is bound to


def _fingerprint(target: Any) -> str:
    try:
        with _cache_lock:
            cached = _cache.get(target)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None:
        return cached
    walker: _Fingerprinter | None = getattr(_local, "walker", None)
    if walker is not None:
        # Reached again from inside a walk (e.g. a function stored in a global list): share the
        # walk's cycle guard, and leave caching to the outermost call, whose result is complete.
        return walker.fingerprint(target).hex()
    walker = _local.walker = _Fingerprinter()
    try:
        digest = walker.fingerprint(target).hex()
    finally:
        _local.walker = None
    try:
        with _cache_lock:
            _cache[target] = digest
            _watched[target] = tuple(walker.bindings)
    except TypeError:
        pass
    return digest


def code_details(func: Callable[..., Any]) -> dict[str, Any]:
    """What a function's fingerprint is made of, for explaining a miss later.

    ``own`` covers the function's own instructions, constants and names only; ``user_code``
    maps each function and class of the user's modules reached from it (itself included) to a
    short digest of its full fingerprint. Computed with a fresh walk; call it rarely.
    """
    target = _unwrap(func)
    walker = _Fingerprinter()
    previous = getattr(_local, "walker", None)
    _local.walker = walker
    try:
        walker.fingerprint(target)
        own = xxhash.xxh3_128()
        if isinstance(target, types.FunctionType):
            for chunk in walker._code_parts(target.__code__, set(), set()):
                own.update(len(chunk).to_bytes(8, "little"))
                own.update(chunk)
    finally:
        _local.walker = previous
    return {"own": own.hexdigest()[:16], "user_code": dict(sorted(walker.user_code.items()))}


def _unwrap(func: Any) -> Any:
    # A memoized helper is fingerprinted by the function it wraps.
    inner = getattr(func, "__memo_wrapped__", None)
    return inner if inner is not None else func


class _Fingerprinter:
    """One traversal: sub-results are shared within it, and cycles end in a named reference."""

    def __init__(self) -> None:
        self.done: dict[int, bytes] = {}
        self.active: set[int] = set()
        self.keep: list[Any] = []  # keeps ids in `done` from being reused during the walk
        self.user_code: dict[str, str] = {}  # what explain() reports: user code seen, by name
        # (namespace, name, what it was bound to) of every global read: a later rebinding
        # (a notebook's `SCALE = 3`) makes the fingerprint stale, which callers watch for.
        self.bindings: list[tuple[dict[str, Any], str, Any]] = []

    def fingerprint(self, obj: Any) -> bytes:
        ident = id(obj)
        if ident in self.done:
            return self.done[ident]
        if ident in self.active:
            return b"cycle:" + _local_name(obj).encode()
        self.active.add(ident)
        try:
            hasher = xxhash.xxh3_128()
            for chunk in self._parts(obj):
                hasher.update(len(chunk).to_bytes(8, "little"))
                hasher.update(chunk)
            digest = hasher.digest()
        finally:
            self.active.discard(ident)
        self.done[ident] = digest
        self.keep.append(obj)
        if (
            isinstance(obj, types.FunctionType | type)
            and module_kind(getattr(obj, "__module__", "") or "") == "user"
        ):
            self.user_code[f"{obj.__module__}:{obj.__qualname__}"] = digest.hex()[:16]
        return digest

    def _parts(self, obj: Any) -> Iterator[bytes]:
        if isinstance(obj, type):
            yield from self._class_parts(obj)
        elif isinstance(obj, types.FunctionType):
            yield from self._function_parts(obj)
        elif isinstance(obj, types.MethodType):
            yield b"method"
            yield self.reference(obj.__func__)
            # The object it is bound to: A(2).f and A(5).f must not share results.
            yield self.reference(obj.__self__)
        elif isinstance(obj, functools.partial):
            yield b"partial"
            yield self.reference(obj.func)
            yield self.value(obj.args)
            yield self.value(obj.keywords)
        else:
            yield b"callable"
            yield _name(obj).encode()
            yield self.reference(type(obj))

    def _function_parts(self, func: types.FunctionType) -> Iterator[bytes]:
        yield b"function"
        yield _local_name(func).encode()
        code = func.__code__
        global_names: set[str] = set()
        attr_names: set[str] = set()
        yield from self._code_parts(code, global_names, attr_names)
        yield self.value(func.__defaults__)
        yield self.value(func.__kwdefaults__)
        for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
            yield b"free:" + name.encode()
            try:
                contents = cell.cell_contents
            except ValueError:
                yield b"<empty cell>"
                continue
            yield self.reference(contents)
        namespace = func.__globals__
        for name in sorted(global_names):
            self.bindings.append((namespace, name, namespace.get(name, UNBOUND)))
            yield b"global:" + name.encode()
            if name in namespace:
                yield self.reference(namespace[name], attr_names)
            elif name in _BUILTINS:
                # Checked against the builtins module itself: a function's __builtins__ is a
                # module in __main__, a dict elsewhere, and absent after cloudpickle.
                yield b"builtin"
            else:
                yield b"<undefined>"

    def _code_parts(
        self, code: types.CodeType, global_names: set[str], attr_names: set[str]
    ) -> Iterator[bytes]:
        yield b"code"
        yield code.co_name.encode()
        yield b"%d %d %d %d" % (
            code.co_argcount,
            code.co_posonlyargcount,
            code.co_kwonlyargcount,
            code.co_flags,
        )
        for instruction in dis.get_instructions(code):
            opname = instruction.opname
            if opname in {"CACHE", "NOP", "EXTENDED_ARG"}:
                continue
            argval = instruction.argval
            if opname in _GLOBAL_OPS:
                global_names.add(argval)
            elif opname in _ATTR_OPS and isinstance(argval, str):
                attr_names.add(argval)
            if isinstance(argval, types.CodeType):
                yield opname.encode()
                yield from self._code_parts(argval, global_names, attr_names)
            else:
                yield opname.encode() + b" " + self.value(argval)

    def _class_parts(self, cls: type) -> Iterator[bytes]:
        yield b"class"
        kind = module_kind(cls.__module__)
        if kind != "user":
            yield _name(cls).encode()
            yield kind.encode()
            if kind == "package":
                yield package_version(cls.__module__).encode()
            return
        yield _local_name(cls).encode()
        for base in cls.__bases__:
            yield self.reference(base)
        for name in sorted(vars(cls)):
            if name in _CLASS_SKIP:
                continue
            yield b"attr:" + name.encode()
            yield self.reference(_underlying(vars(cls)[name]))

    def reference(self, value: Any, attr_names: set[str] | None = None) -> bytes:
        """How a value the code refers to (global, closure cell, attribute) enters the print."""
        value = _unwrap(value)
        if isinstance(value, types.ModuleType):
            return self._module(value, attr_names)
        if isinstance(value, type | types.MethodType | functools.partial):
            return self.fingerprint(value)
        if isinstance(value, property):
            return b"property " + b"\0".join(
                self.reference(part) for part in (value.fget, value.fset, value.fdel)
            )
        if isinstance(value, types.FunctionType) or _is_code_like(value):
            module = getattr(value, "__module__", None) or ""
            kind = module_kind(module)
            if kind == "user" and isinstance(value, types.FunctionType):
                return self.fingerprint(value)
            version = b" " + package_version(module).encode() if kind == "package" else b""
            return f"{kind} {_name(value)}".encode() + version
        return self.value(value)

    def _module(self, module: types.ModuleType, attr_names: set[str] | None) -> bytes:
        kind = module_kind(module.__name__)
        head = f"module {module.__name__} {kind}".encode()
        if kind == "package":
            return head + b" " + package_version(module.__name__).encode()
        if kind == "stdlib" or not attr_names:
            return head
        # A user module used as `helpers.scale(x)`: the attributes the code names count.
        parts = [head]
        namespace = vars(module)
        for attr in sorted(attr_names):
            if attr in namespace:
                parts.append(attr.encode() + b"=" + self.reference(namespace[attr]))
        return b"\0".join(parts)

    def value(self, value: Any) -> bytes:
        """A constant or data value: its canonical encoding (a large buffer's digest), or,
        when none exists, its type and (for an instance of the user's own class) the values
        of its attributes."""
        digest = large_digest(value)
        if digest is not None:
            return b"digest " + digest
        try:
            return encode(value)
        except (UnencodableError, EncodingError):
            pass
        head = b"opaque " + self.reference(type(value))
        state = self._state(value)
        return head if state is None else head + b" state " + state

    def _state(self, value: Any) -> bytes | None:
        # Two closures (or globals) over Model(2) and Model(3) must not share results, so an
        # instance of the user's own class counts by its attributes, recursively. Instances of
        # packages' and the standard library's classes count by type only: their attributes
        # hold run-time state (caches, locks, handles) that would change the key every run.
        attributes = getattr(value, "__dict__", None)
        if (
            not isinstance(attributes, dict)
            or isinstance(value, type | types.ModuleType)
            or module_kind(getattr(type(value), "__module__", None) or "") != "user"
        ):
            return None
        ident = id(value)
        if ident in self.active or len(self.active) > _STATE_DEPTH:
            return b"cycle"
        self.active.add(ident)
        try:
            parts = [
                str(name).encode("utf-8", "surrogatepass") + b"=" + self.reference(item)
                for name, item in sorted(attributes.items(), key=lambda pair: str(pair[0]))
            ]
        finally:
            self.active.discard(ident)
        return b"{" + b"\0".join(parts) + b"}"


def _is_code_like(value: Any) -> bool:
    return isinstance(
        value,
        types.FunctionType
        | types.BuiltinFunctionType
        | types.MethodType
        | functools.partial
        | types.MethodWrapperType
        | types.WrapperDescriptorType,
    )


def _underlying(attribute: Any) -> Any:
    if isinstance(attribute, staticmethod | classmethod):
        return attribute.__func__
    return attribute


def _local_name(obj: Any) -> str:
    # User code is identified by what it is called, not by which file it sits in: the key
    # names the decorated function's module separately.
    return str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?"))


def _name(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{module}:{qualname}" if qualname else f"<{type(obj).__qualname__}>"
