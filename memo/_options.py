"""Decorator options: validated once, at decoration time, with errors that say what to do."""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

from ._config import lock_timeout_from_env, parse_duration
from ._exceptions import ConfigError
from ._storage._serializers import Serializer, get_serializer

__all__ = ["Options", "parse_options"]

DEFAULT_LOCK_TIMEOUT = 3600.0
_KNOWN = ("version", "ignore", "key", "serializer", "validate", "max_age", "lock_timeout")


@dataclasses.dataclass(frozen=True)
class Options:
    """The validated options of one memoized function."""

    cache_path: str | os.PathLike[str] | None = None
    cache_skip: bool = False
    version: Any = None
    ignore: tuple[str, ...] = ()
    key: Callable[[inspect.BoundArguments], Any] | None = None
    serializer: Serializer | None = None
    validate: Callable[[Any], bool] | None = None
    max_age: float | None = None
    lock_timeout: float | None = None

    def effective_lock_timeout(self) -> float:
        """This function's lock timeout, else ``MEMO_LOCK_TIMEOUT``, else one hour."""
        if self.lock_timeout is not None:
            return self.lock_timeout
        from_env = lock_timeout_from_env()
        return from_env if from_env is not None else DEFAULT_LOCK_TIMEOUT


def parse_options(cache_path: object, cache_skip: object, options: dict[str, Any]) -> Options:
    """Check every option; raise ``ConfigError`` (TypeError and ValueError) at the first bad one."""
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise ConfigError(
            f"unknown memo option(s) {', '.join(map(repr, unknown))}; "
            f"the options are cache_path, cache_skip, {', '.join(_KNOWN)}"
        )
    if cache_path is not None and not isinstance(cache_path, str | os.PathLike):
        raise ConfigError(
            f"cache_path must be a str or os.PathLike, not {type(cache_path).__name__}"
        )
    if isinstance(cache_path, str) and "://" in cache_path and not cache_path.startswith("file://"):
        raise ConfigError(
            f"cache_path={cache_path!r}: remote (fsspec) stores are not available in this "
            "version of memo; use a local directory"
        )
    if not isinstance(cache_skip, bool):
        raise ConfigError(f"cache_skip must be True or False, not {cache_skip!r}")
    ignore = options.get("ignore", ())
    if isinstance(ignore, str) or not isinstance(ignore, Sequence | set | frozenset):
        raise ConfigError(
            f"ignore must be a list of argument names, e.g. ignore=['verbose'], not {ignore!r}"
        )
    if not all(isinstance(name, str) for name in ignore):
        raise ConfigError(f"ignore must contain argument names (str), got {list(ignore)!r}")
    for name in ("key", "validate"):
        if options.get(name) is not None and not callable(options[name]):
            raise ConfigError(f"{name} must be a callable, not {type(options[name]).__name__}")
    serializer = options.get("serializer")
    if isinstance(serializer, str):
        try:
            serializer = get_serializer(serializer)
        except KeyError:
            raise ConfigError(f"unknown serializer {serializer!r}; available: 'pickle'") from None
    elif serializer is not None and not isinstance(serializer, Serializer):
        raise ConfigError(
            "serializer must be a name such as 'pickle' or an object with name, dumps and loads"
        )
    max_age = options.get("max_age")
    lock_timeout = options.get("lock_timeout")
    return Options(
        cache_path=cache_path[len("file://") :]
        if isinstance(cache_path, str) and cache_path.startswith("file://")
        else cache_path,
        cache_skip=cache_skip,
        version=options.get("version"),
        ignore=tuple(sorted(ignore)),
        key=options.get("key"),
        serializer=serializer,
        validate=options.get("validate"),
        max_age=None if max_age is None else parse_duration(max_age, what="max_age"),
        lock_timeout=None
        if lock_timeout is None
        else parse_duration(lock_timeout, what="lock_timeout")
        if lock_timeout != float("inf")
        else float("inf"),
    )
