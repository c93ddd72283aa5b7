"""Settings read from the environment, and parsers for human-friendly option values.

Every ``MEMO_*`` variable is read here and nowhere else, when a memoized function is first
called (or a ``memo.Store`` is made, or a command of the ``memo`` CLI runs); what is read is
passed down as plain values, so ``_storage`` knows no environment.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import ConfigError
from ._storage._urls import location

if TYPE_CHECKING:
    from ._storage._fsspec import RemoteSettings
    from ._storage._leases import LeaseSettings

__all__ = [
    "cache_skip_from_env",
    "default_cache_dir",
    "default_location",
    "disabled_from_env",
    "lease_settings_from_env",
    "lock_timeout_from_env",
    "max_size_from_env",
    "parse_duration",
    "parse_size",
    "remote_settings_from_env",
    "secret_keys_from_env",
    "set_default_location",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def disabled_from_env() -> bool:
    """Whether ``MEMO_DISABLE`` turns caching off entirely (functions run as if undecorated)."""
    return _env_flag("MEMO_DISABLE")


def cache_skip_from_env() -> bool:
    """Whether ``MEMO_CACHE_SKIP`` asks every memoized function to recompute and overwrite."""
    return _env_flag("MEMO_CACHE_SKIP")


def lock_timeout_from_env() -> float | None:
    """``MEMO_LOCK_TIMEOUT`` (a duration, or ``none`` to wait as long as the holder lives)."""
    raw = os.environ.get("MEMO_LOCK_TIMEOUT", "").strip()
    if not raw:
        return None
    if raw.lower() in {"none", "inf", "forever"}:
        return float("inf")
    return parse_duration(raw, what="MEMO_LOCK_TIMEOUT")


def max_size_from_env() -> int | None:
    """``MEMO_MAX_SIZE`` (e.g. ``10GB``): the size budget of every store, if set."""
    raw = os.environ.get("MEMO_MAX_SIZE", "").strip()
    return parse_size(raw, what="MEMO_MAX_SIZE") if raw else None


def secret_keys_from_env() -> list[bytes]:
    """``MEMO_SECRET_KEY``: the signing key, then (comma-separated) older keys still accepted."""
    raw = os.environ.get("MEMO_SECRET_KEY", "")
    return [part.strip().encode() for part in raw.split(",") if part.strip()]


def default_location() -> str | Path:
    """Where stores are by default: ``MEMO_CACHE_DIR`` (a directory or a URL, as
    ``location`` reads it), else the platform's user cache directory joined with ``memo``."""
    configured = os.environ.get("MEMO_CACHE_DIR", "").strip()
    return location(configured) if configured else default_cache_dir()


def set_default_location(where: str) -> None:
    """Make ``where`` the default store of this process, as ``MEMO_CACHE_DIR`` does (set for
    the code ``memo plan`` and ``memo bless`` run, and the processes it starts)."""
    os.environ["MEMO_CACHE_DIR"] = where


def remote_settings_from_env() -> RemoteSettings:
    """What remote stores are opened with: ``MEMO_STORAGE_OPTIONS`` (a JSON object of fsspec
    storage options), ``MEMO_REMOTE_TIMEOUT`` (a limit on each operation; unset or 0: none),
    ``MEMO_LEASE``, ``MEMO_LEASE_HEARTBEAT`` and ``MEMO_LEASE_POLL``."""
    from ._storage._fsspec import RemoteSettings  # (fsspec itself is not imported)

    raw = os.environ.get("MEMO_STORAGE_OPTIONS", "").strip()
    try:
        options = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ConfigError(f"MEMO_STORAGE_OPTIONS is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigError("MEMO_STORAGE_OPTIONS must be a JSON object of storage options")
    timeout = _duration_from_env("MEMO_REMOTE_TIMEOUT") or None  # 0 means no limit
    return RemoteSettings(options, timeout, lease_settings_from_env())


def lease_settings_from_env() -> LeaseSettings:
    """``MEMO_LEASE``, ``MEMO_LEASE_HEARTBEAT`` and ``MEMO_LEASE_POLL``, with the defaults."""
    from ._storage._leases import LeaseSettings  # (remote stores only: it imports socket)

    default = LeaseSettings()
    seconds = _duration_from_env("MEMO_LEASE") or default.seconds
    heartbeat = _duration_from_env("MEMO_LEASE_HEARTBEAT") or seconds / 4
    poll = _duration_from_env("MEMO_LEASE_POLL") or min(default.poll, seconds / 4)
    if heartbeat >= seconds:
        raise ConfigError(
            f"MEMO_LEASE_HEARTBEAT ({heartbeat:g}s) must be shorter than MEMO_LEASE "
            f"({seconds:g}s), or every lease would expire between two renewals"
        )
    return LeaseSettings(seconds, heartbeat, poll)


def _duration_from_env(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    return parse_duration(raw, what=name) if raw else None


def default_cache_dir() -> Path:
    """``MEMO_CACHE_DIR`` if set, else the platform's user cache directory joined with ``memo``."""
    configured = os.environ.get("MEMO_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":  # pragma: no cover - not exercised on the CI platform
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "memo" / "Cache"
    if sys.platform == "darwin":  # pragma: no cover - not exercised on the CI platform
        return Path.home() / "Library" / "Caches" / "memo"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base_dir / "memo"


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be seconds or a string like '30m' or '7d', not a bool")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or (unit and unit not in _DURATION_UNITS):
            raise ConfigError(
                f"{what}={value!r} is not a duration; use seconds or a number with one of the "
                f"units {', '.join(_DURATION_UNITS)} (e.g. '30m', '7d')"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[unit or "s"]
    else:
        raise ConfigError(
            f"{what} must be seconds or a string like '30m', not {type(value).__name__}"
        )
    if not seconds >= 0:
        raise ConfigError(f"{what} must not be negative, got {value!r}")
    return seconds


def parse_size(value: object, *, what: str = "size") -> int:
    """Bytes from a number or a string such as ``"500MB"``, ``"10GB"``, ``"2GiB"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be bytes or a string like '10GB', not a bool")
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _SIZE_UNITS:
            raise ConfigError(
                f"{what}={value!r} is not a size; use bytes or a number with a unit such as "
                "KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB (powers of 1024)"
            )
        size = float(match.group(1)) * _SIZE_UNITS[unit]
    else:
        raise ConfigError(
            f"{what} must be bytes or a string like '10GB', not {type(value).__name__}"
        )
    if not size >= 0:
        raise ConfigError(f"{what} must not be negative, got {value!r}")
    return int(size)
