"""Code fingerprints: what a function does, independent of where it sits in its file.

A fingerprint covers the instruction stream (opcodes with their constants and names, so every
constant type and nested functions count, while line numbers, comments and docstrings do not),
default values, closure values, the values of globals the code reads, and, recursively with a
cycle guard, the functions and classes it uses from the user's own modules. Code from the
standard library contributes its name; code from installed packages its name and version.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import importlib.util
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

from .._exceptions import EncodingError
from ._bytecode import counted, imports
from ._bytes import UnencodableError
from ._canonical import encode
from ._digest import large_digest
from ._modules import module_kind, package_version, path_kind

__all__ = [
    "Bindings",
    "class_fingerprint",
    "code_details",
    "forget_fingerprint",
    "function_fingerprint",
    "hash_code",
    "rebound",
    "watched_fingerprint",
]

# What a fingerprint was made from, each checked at every call: (where, name, the object it
# was bound to). ``where`` is a module's or function's globals (a rebound global: a notebook's
# `SCALE = 3`, an importlib.reload), or a function itself (its ``__code__`` replaced in
# place, as IPython's autoreload does).
Bindings = tuple[tuple[Any, str, Any], ...]

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


def watched_fingerprint(func: Callable[..., Any]) -> tuple[str, Bindings]:
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


def rebound(bindings: Bindings) -> bool:
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
        self.bindings: list[tuple[Any, str, Any]] = []

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
        if isinstance(obj, functools.cached_property | functools.singledispatchmethod):
            yield type(obj).__name__.encode()
            yield self.reference(getattr(obj, "dispatcher", None) or obj.func)
        elif not isinstance(obj, types.FunctionType) and _wrapped(obj) is not None:
            # functools.lru_cache / cache, or a library's decorator: what it wraps counts.
            yield b"wraps " + _name(type(obj)).encode()
            yield self.reference(_wrapped(obj))
        elif isinstance(obj, type):
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
        # Seen replaced in place (autoreload), as a rebound global is.
        self.bindings.append((_Attributes(func), "__code__", code))
        global_names: set[str] = set()
        attr_names: set[str] = set()
        imported: list[tuple[str, int]] = []
        yield from self._code_parts(code, global_names, attr_names, imported)
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
        for name, level in sorted(set(imported)):
            yield b"import:%s %d" % (name.encode(), level)
            yield self._imported(name, level, namespace, attr_names)
        owner = _owner(func)
        if owner is not None:
            # A method counts with its class: what it reaches through self (self.helper())
            # is code of that class, as surely as a name it loads. The class is found by
            # name, so that name is watched as a global is (a class defined again).
            top = func.__qualname__.partition(".")[0]
            self.bindings.append((namespace, top, namespace.get(top, UNBOUND)))
            yield b"owner"
            yield self.reference(owner)
        registry = getattr(func, "registry", None)
        if registry is not None and hasattr(func, "dispatch"):
            # functools.singledispatch: each registered implementation counts.
            for cls, impl in sorted(registry.items(), key=lambda pair: _name(pair[0])):
                yield b"register:" + _name(cls).encode()
                yield self.reference(impl)
        wrapped = _wrapped(func)
        if wrapped is not None:
            yield b"wraps"
            yield self.reference(wrapped)

    def _imported(
        self, name: str, level: int, namespace: dict[str, Any], attr_names: set[str]
    ) -> bytes:
        """A module the code imports where it runs (``from .helpers import scale`` inside the
        function): the names the code takes from it count, as for a global module. A module
        of the user's not imported yet is imported now (the call would import it); a library
        is not (its name and version are enough)."""
        try:
            absolute = (
                importlib.util.resolve_name("." * level + name, namespace.get("__package__"))
                if level
                else name
            )
        except (ImportError, ValueError):
            return b"<unresolved>"
        top = absolute.partition(".")[0]
        if absolute not in sys.modules:
            kind = module_kind(top) if top in sys.modules else _kind_unimported(top)
            if kind != "user":
                version = package_version(top) if kind == "package" else ""
                return f"module {absolute} {kind} {version}".encode()
            try:
                importlib.import_module(absolute)
            except Exception:  # (its import fails when the call runs, too)
                return b"<not importable>"
        parts = [self._module(sys.modules[absolute], attr_names)]
        if top != absolute and top in sys.modules:  # `import pkg.sub` binds pkg
            parts.append(self._module(sys.modules[top], attr_names))
        return b"\0".join(parts)

    def _code_parts(
        self,
        code: types.CodeType,
        global_names: set[str],
        attr_names: set[str],
        imported: list[tuple[str, int]] | None = None,
    ) -> Iterator[bytes]:
        yield b"code"
        yield code.co_name.encode()
        yield b"%d %d %d %d" % (
            code.co_argcount,
            code.co_posonlyargcount,
            code.co_kwonlyargcount,
            code.co_flags,
        )
        ops = counted(code)
        if imported is not None:
            imported.extend(imports(ops))
        for op in ops:
            if op.name in _GLOBAL_OPS:
                global_names.add(op.value)
            elif op.name in _ATTR_OPS and isinstance(op.value, str):
                attr_names.add(op.value)
            if isinstance(op.value, types.CodeType):
                yield op.name.encode()
                yield from self._code_parts(op.value, global_names, attr_names, imported)
            else:
                yield op.name.encode() + b" " + self.value(op.value)

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
        if isinstance(
            value,
            type
            | types.MethodType
            | functools.partial
            | functools.cached_property
            | functools.singledispatchmethod,
        ):
            return self.fingerprint(value)
        if not isinstance(value, types.FunctionType) and _wrapped(value) is not None:
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
        ident = id(module)
        if ident in self.active:
            return head + b" cycle"
        # A user module used as `helpers.scale(x)` or `pkg.sub.deep.scale(x)`: the attributes
        # the code names count, in submodules too; each is watched, as a global is (reload).
        self.active.add(ident)
        try:
            parts = [head]
            namespace = vars(module)
            for attr in sorted(attr_names):
                if attr in namespace:
                    value = namespace[attr]
                    self.bindings.append((namespace, attr, value))
                    if isinstance(value, types.ModuleType):
                        parts.append(attr.encode() + b"=" + self._module(value, attr_names))
                    else:
                        parts.append(attr.encode() + b"=" + self.reference(value))
        finally:
            self.active.discard(ident)
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
        if isinstance(value, type | types.ModuleType) or (
            module_kind(getattr(type(value), "__module__", None) or "") != "user"
        ):
            return None
        attributes = _attributes(value)
        if attributes is None:
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


class _Attributes:
    """A function's attributes seen as a namespace (``get``), for ``rebound``."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def get(self, name: str, default: Any) -> Any:
        return getattr(self.obj, name, default)


def _wrapped(value: Any) -> Any:
    """What a decorator made with ``functools.wraps`` (or ``lru_cache``) wraps, or None."""
    if isinstance(value, type) or not callable(value):
        return None
    try:
        wrapped = getattr(value, "__wrapped__", None)
    except Exception:  # (an object whose __getattr__ fails: it wraps nothing we can see)
        return None
    return wrapped if callable(wrapped) and wrapped is not value else None


def _attributes(value: Any) -> dict[str, Any] | None:
    """An instance's attributes: its ``__dict__`` and its slots (those set), or None."""
    own = getattr(value, "__dict__", None)
    found: dict[str, Any] | None = dict(own) if isinstance(own, dict) else None
    for cls in type(value).__mro__:
        slots = vars(cls).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            attr = f"_{cls.__name__.lstrip('_')}{slot}" if slot.startswith("__") else slot
            try:
                item = getattr(value, attr)
            except AttributeError:
                continue  # a slot not set
            found = {} if found is None else found
            found.setdefault(slot, item)
    return found


def _owner(func: types.FunctionType) -> type | None:
    """The class a function was defined in (found by its qualified name), or None."""
    path = func.__qualname__.split(".")[:-1]
    if not path or "<locals>" in path:
        return None
    owner: Any = sys.modules.get(func.__module__)
    if getattr(owner, "__dict__", None) is not func.__globals__:
        return None  # (a function sent by value to another process: its class is not there)
    for name in path:
        owner = getattr(owner, name, None)
    return owner if isinstance(owner, type) else None


def _kind_unimported(top: str) -> str:
    """``module_kind`` of a top-level module not imported yet, from where it would load."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return "user"
    origin = getattr(spec, "origin", None)
    if not origin or origin in ("built-in", "frozen"):
        return "stdlib" if origin else "user"
    return path_kind(origin)


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
