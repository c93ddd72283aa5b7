"""``BoundMemoized``: a memoized method looked up on an instance."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["BoundMemoized"]


class BoundMemoized:
    """A memoized method looked up on an instance: the instance is the first argument."""

    __slots__ = ("_instance", "_memoized")

    def __init__(self, memoized: Any, instance: Any) -> None:
        self._memoized = memoized
        self._instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._memoized(self._instance, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._memoized, name)
        if name in {"key", "is_cached", "invalidate", "refresh", "lazy", "path", "explain", "put"}:
            return functools.partial(attribute, self._instance)
        return attribute
