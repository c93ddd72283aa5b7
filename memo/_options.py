"""Decorator options: validated once, at decoration time, with errors that say what to do."""

from __future__ import annotations

import dataclasses
import inspect
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._config import (
    lock_timeout_from_env,
    parse_duration,
    parse_size,
    remote_settings_from_env,
)
from ._exceptions import ConfigError
from ._storage._serializers import DEFAULT, Serializer, Serializers, builtin
from ._storage._urls import location

__all__ = ["Options", "parse_options"]

DEFAULT_LOCK_TIMEOUT = 3600.0
_KNOWN = (
    "version",
    "ignore",
    "key",
    "serializer",
    "validate",
    "store_if",
    "max_age",
    "max_size",
    "lazy",
    "secret_key",
    "lock_timeout",
    "write",
)


@dataclasses.dataclass(frozen=True)
class Options:
    """The validated options of one memoized function."""

    cache_path: str | Path | None = None  # a checked URL, or a directory (``location``)
    cache_skip: bool = False
    version: Any = None
    ignore: tuple[str, ...] = ()
    key: Callable[[inspect.BoundArguments], Any] | None = None
    # Resolved once: by result type (one serializer for everything is given for `object`).
    serializers: Serializers = DEFAULT
    validate: Callable[[Any], bool] | None = None
    store_if: Callable[[Any], bool] | None = None
    max_age: float | None = None
    max_size: int | None = None
    lazy: bool = False
    secret_keys: tuple[bytes, ...] = ()
    lock_timeout: float | None = None
    read_only: bool = False  # the store is read from, never written (memo.Store(read_only=True))
    signed_only: bool = False  # others write there: only signed entries (memo.Store(signed_only=))
    # Tiers after the first: each location, whether it is read-only, whether signed only.
    lower: tuple[tuple[str | Path, bool, bool], ...] = ()
    write_all: bool = False  # write="all": every writable tier is written, not the first only

    def effective_lock_timeout(self) -> float:
        """This function's lock timeout, else ``MEMO_LOCK_TIMEOUT``, else one hour."""
        if self.lock_timeout is not None:
            return self.lock_timeout
        from_env = lock_timeout_from_env()
        return from_env if from_env is not None else DEFAULT_LOCK_TIMEOUT


def _serializer(value: object) -> Serializer:
    if isinstance(value, str):
        known = builtin(value)
        if known is None:
            raise ConfigError(
                f"unknown serializer {value!r}; available: 'pickle', 'json', 'npy', 'parquet', "
                "or an object with name, dumps and loads"
            )
        return known.serializer
    if isinstance(value, Serializer) and isinstance(getattr(value, "name", None), str):
        return value
    raise ConfigError(
        "serializer must be a name ('pickle', 'json', 'npy', 'parquet'), an object with name, "
        f"dumps and loads, or a dict from result types to those, not {value!r}"
    )


def _serializers(value: object) -> Serializers:
    if value is None:
        return DEFAULT
    chosen = {}
    if isinstance(value, Mapping):
        for tp, each in value.items():
            if not isinstance(tp, type):
                raise ConfigError(f"serializer mapping keys must be types, not {tp!r}")
            chosen[tp] = _serializer(each)
    else:
        chosen[object] = _serializer(value)
    try:
        return Serializers(chosen)
    except ValueError as exc:  # a name or suffix an entry cannot record
        raise ConfigError(str(exc)) from None


def _secret_keys(value: object) -> tuple[bytes, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str | bytes) else value
    if not isinstance(items, Sequence) or not items:
        raise ConfigError("secret_key must be a str, bytes, or a list of them (first signs)")
    keys = []
    for item in items:
        if isinstance(item, str):
            item = item.encode()
        if not isinstance(item, bytes) or len(item) < 16:
            raise ConfigError("each secret key must be a str or bytes of at least 16 characters")
        keys.append(item)
    return tuple(keys)


def _check_simple(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(_KNOWN))
    if unknown:
        raise ConfigError(
            f"unknown memo option(s) {', '.join(map(repr, unknown))}; "
            f"the options are cache_path, cache_skip, {', '.join(_KNOWN)}"
        )
    ignore = options.get("ignore", ())
    if isinstance(ignore, str) or not isinstance(ignore, Sequence | set | frozenset):
        raise ConfigError(
            f"ignore must be a list of argument names, e.g. ignore=['verbose'], not {ignore!r}"
        )
    if not all(isinstance(name, str) for name in ignore):
        raise ConfigError(f"ignore must contain argument names (str), got {list(ignore)!r}")
    for name in ("key", "validate", "store_if"):
        if options.get(name) is not None and not callable(options[name]):
            raise ConfigError(f"{name} must be a callable, not {type(options[name]).__name__}")
    if not isinstance(options.get("lazy", False), bool):
        raise ConfigError(f"lazy must be True or False, not {options['lazy']!r}")


def _cache_path(cache_path: object) -> str | Path | None:
    if cache_path is None:
        return None
    if not isinstance(cache_path, str | os.PathLike):
        raise ConfigError(
            f"cache_path must be a str, os.PathLike or memo.Store, not {type(cache_path).__name__}"
        )
    # A URL is checked now, so a missing package, an unknown scheme or bad
    # MEMO_STORAGE_OPTIONS is a ConfigError at decoration, not at the first call.
    where = location(cache_path)
    if isinstance(where, str):
        remote_settings_from_env()
    else:
        _refuse_a_file(where)
    return where


def _refuse_a_file(path: Path) -> None:
    """A local cache_path must be a directory, or not exist yet (it is made at the first
    write): with a file there, every call would compute and store nothing, and nothing would
    say so. (A path inside a file fails at the first write, with a warning.)"""
    try:
        mode = path.stat().st_mode
    except OSError:  # missing (made when needed) or not ours to look at: the call says
        return
    if not stat.S_ISDIR(mode):
        what = "a file" if stat.S_ISREG(mode) else "not a directory"
        raise ConfigError(
            f"cache_path {str(path)!r} is {what}; memo keeps its entries in a directory: give "
            "a directory's path (it is made if missing), e.g. cache_path='cache/'"
        )


def parse_options(
    tiers: list[tuple[object, bool, bool]], cache_skip: object, options: dict[str, Any]
) -> Options:
    """Check every option; raise ``ConfigError`` (TypeError and ValueError) at the first bad one.
    ``tiers``: each location given as ``cache_path`` (one, or None for the default), whether
    it is read-only and whether only signed entries are used there."""
    _check_simple(options)
    places = [(_cache_path(where), read_only, signed) for where, read_only, signed in tiers]
    if len({str(where) for where, _, _ in places}) < len(places):
        raise ConfigError("cache_path lists one location twice: give each tier once")
    if all(read_only for _, read_only, _ in places) and options.get("max_size") is not None:
        raise ConfigError(
            "max_size keeps a store under a budget by evicting entries, and a read-only store "
            "is never written: leave out max_size, or open the store without read_only"
        )
    write = options.get("write", "first")
    if write not in ("first", "all"):
        raise ConfigError(f"write must be 'first' or 'all', not {write!r}")
    if not isinstance(cache_skip, bool):
        raise ConfigError(f"cache_skip must be True or False, not {cache_skip!r}")
    max_age = options.get("max_age")
    max_size = options.get("max_size")
    lock_timeout = options.get("lock_timeout")
    if lock_timeout is not None and lock_timeout != float("inf"):
        lock_timeout = parse_duration(lock_timeout, what="lock_timeout")
    (cache_path, read_only, signed_only), *lower = places
    return Options(
        cache_path=cache_path,
        cache_skip=cache_skip,
        version=options.get("version"),
        ignore=tuple(sorted(options.get("ignore", ()))),
        key=options.get("key"),
        serializers=_serializers(options.get("serializer")),
        validate=options.get("validate"),
        store_if=options.get("store_if"),
        max_age=None if max_age is None else parse_duration(max_age, what="max_age"),
        max_size=None if max_size is None else parse_size(max_size, what="max_size"),
        lazy=options.get("lazy", False),
        secret_keys=_secret_keys(options.get("secret_key")),
        lock_timeout=lock_timeout,
        read_only=read_only,
        signed_only=signed_only,
        lower=tuple((where, ro, signed) for where, ro, signed in lower if where is not None),
        write_all=write == "all",
    )
