"""The public ``Encoder`` (a ``json.JSONEncoder`` whose registry drives memo's keys) and
``hash_args``."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import pathlib
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, overload

import xxhash

from .._exceptions import ConfigError
from . import _frames as _frames  # registers the polars and xarray rules
from . import _pydata as _pydata  # registers the pandas, pyarrow, numpy and scipy rules
from . import _types  # noqa: F401  (registers the standard-library rules)
from ._bytes import UnencodableError
from ._canonical import encoding_error, ignored, registry, reset_rules, resolve_lock
from ._digest import stream_digest, value_digest

__all__ = ["Encoder", "hash_args"]

_T = TypeVar("_T")


def hash_args(*args: Any, **kwargs: Any) -> str:
    """Return the xxh3_128 hex digest of the canonical encoding of ``args`` and ``kwargs``.

    Stable across processes, machines and ``PYTHONHASHSEED``; keyword order does not matter.
    Raises ``EncodingError`` for a value no rule covers.
    """
    try:
        return stream_digest(b"memo-args-1", (b"", b""), (args, kwargs))
    except UnencodableError as exc:
        raise encoding_error(exc, "hash_args") from None


class Encoder(json.JSONEncoder):
    """JSON encoder that turns arguments into canonical data for hashing.

    Its class-level registry also drives memo's keys: ``Encoder.register`` adds a rule for a
    type and ``Encoder.ignore`` makes values of some types not affect keys. ``Encoder().encode``
    gives a readable JSON view of an argument (used for argument summaries); the keys
    themselves use a stricter type-tagged binary form of the same data.
    """

    _registry: ClassVar[dict[type, Callable[[Any], Any]]] = registry
    _ignored: ClassVar[set[type]] = ignored

    @classmethod
    def register(cls, func: Callable[[_T], Any]) -> Callable[[_T], Any]:
        """Register ``func`` to encode the type named by the annotation of its first parameter.

        ``func`` returns encodable data (e.g. a tuple or dict of the fields that define the
        value). A union annotation registers every member. Returns ``func``, so it works as a
        decorator:

            @memo.Encoder.register
            def _(point: Point) -> tuple[float, float]:
                return (point.x, point.y)
        """
        # Postponed annotations may name classes local to the caller's scope.
        targets = _annotated_types(func, sys._getframe(1).f_locals)
        with resolve_lock():
            for target in targets:
                cls._registry[target] = func
                cls._ignored.discard(target)
            reset_rules()
        return func

    @overload
    @classmethod
    def ignore(cls, tp: type[_T], /) -> type[_T]: ...

    @overload
    @classmethod
    def ignore(cls, *types: type) -> None: ...

    @classmethod
    def ignore(cls, *types: type) -> type | None:
        """Make values of ``types`` not affect keys (every value of such a type encodes alike).

        ``Encoder.ignore(object)`` ignores every type no other rule covers. With one type it
        returns that type, so it also works as a class decorator.
        """
        for tp in types:
            if not isinstance(tp, type):
                raise ConfigError(f"Encoder.ignore takes types, got {tp!r}")
        with resolve_lock():
            for tp in types:
                cls._ignored.add(tp)
                cls._registry.pop(tp, None)
            reset_rules()
        return types[0] if len(types) == 1 else None

    def default(self, o: Any) -> Any:
        """Return JSON-serializable data for ``o`` (a readable view, not the key itself)."""
        tp = type(o)
        for base in tp.__mro__:
            if base in self._registry:
                return self._registry[base](o)
            if base in self._ignored and base is not object:
                return ()
        if isinstance(o, pathlib.PurePath):
            return str(o)
        if isinstance(o, set | frozenset):
            return sorted(self.encode(item) for item in o)
        if isinstance(o, bytes | bytearray):
            return {"bytes": len(o), "xxh3_128": xxhash.xxh3_128_hexdigest(o)}
        if isinstance(o, enum.Enum):
            return f"{tp.__qualname__}.{o.name}"
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
        if isinstance(o, types.FunctionType | type):
            return f"{o.__module__}.{o.__qualname__}"
        try:
            digest = value_digest(o)
        except UnencodableError:
            if object in self._ignored:
                return ()
            return super().default(o)
        return {"type": f"{tp.__module__}.{tp.__qualname__}", "xxh3_128": digest}


def _annotated_types(func: Callable[..., Any], local_names: dict[str, Any]) -> list[type]:
    if not callable(func):
        raise ConfigError(f"Encoder.register takes a function, got {func!r}")
    try:
        params = list(inspect.signature(func).parameters.values())
        hints = typing.get_type_hints(func, localns=local_names)
    except (TypeError, ValueError, NameError) as exc:
        raise ConfigError(
            f"Encoder.register could not read the annotations of {func!r}: {exc}"
        ) from None
    if not params or params[0].name not in hints:
        raise ConfigError(
            "Encoder.register needs the first parameter annotated with the type to encode, "
            "e.g. `def _(value: MyType): return (value.a, value.b)`"
        )
    hint = hints[params[0].name]
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if typing.get_origin(hint) is typing.Union:
        members = typing.get_args(hint)
    found = [member for member in members if isinstance(member, type)]
    if not found or len(found) != len(members):
        raise ConfigError(
            f"Encoder.register: the annotation {hint!r} is not a class or a union of them"
        )
    return found
