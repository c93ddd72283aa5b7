"""Serializers: how a result becomes bytes in an entry and back."""

from __future__ import annotations

import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = ["PickleSerializer", "Serializer", "get_serializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns results into buffers and back. ``name`` is recorded in each entry."""

    name: str

    def dumps(self, value: Any) -> list[Any]:
        """The value as a list of bytes-like buffers, written one after another."""
        ...

    def loads(self, data: memoryview) -> Any:
        """The value back from the concatenated buffers."""
        ...


class PickleSerializer:
    """Pickle (protocol 5); falls back to cloudpickle for lambdas, closures and local classes."""

    name = "pickle"

    def dumps(self, value: Any) -> list[Any]:
        """Pickle ``value``; the fast C pickler first, cloudpickle when it cannot."""
        try:
            return [pickle.dumps(value, protocol=5)]
        except (pickle.PicklingError, TypeError, AttributeError):
            import cloudpickle

            return [cloudpickle.dumps(value, protocol=5)]

    def loads(self, data: memoryview) -> Any:
        """Unpickle a payload that has already passed the integrity check."""
        return pickle.loads(data)


_BUILTIN: dict[str, Serializer] = {"pickle": PickleSerializer()}


def get_serializer(name: str) -> Serializer:
    """The serializer registered under ``name``; raises ``KeyError`` for an unknown one."""
    return _BUILTIN[name]
