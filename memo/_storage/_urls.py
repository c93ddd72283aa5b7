"""Store URLs (``s3://bucket/prefix``, ``memory://name``): telling them from paths, checking
that fsspec and the backend's package are installed, and the storage options to open them
with, and ``location``: the one reading of a cache location (a URL or a directory). Cheap to
import: fsspec is imported only when a URL is checked or opened.

Storage options given (``MEMO_STORAGE_OPTIONS``, resolved by ``_config``) are merged into
the defaults, nested objects too. For ``s3://`` the defaults are
``config_kwargs={"connect_timeout": 5, "read_timeout": 30, "retries": {"total_max_attempts": 2,
"mode": "standard"}}`` (two attempts per request) and ``use_listings_cache=False`` (another
machine's writes must be seen). The endpoint, credentials and region come from the usual AWS
settings (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``~/.aws/config``, ...), in child
processes too.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError

__all__ = [
    "HINT",
    "MissingPackageError",
    "check_url",
    "import_fsspec",
    "is_remote",
    "normalize",
    "scheme_of",
    "storage_options",
]

HINT = 'pip install "memo-cache[remote]"'
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"total_max_attempts": 2, "mode": "standard"},
    },
    "use_listings_cache": False,
}
_DEFAULTS: dict[str, dict[str, Any]] = {"s3": _S3_DEFAULTS, "s3a": _S3_DEFAULTS}


class MissingPackageError(ConfigError, ImportError):
    """fsspec, or the package of a URL's backend (s3fs for S3), is not installed."""


def scheme_of(path: object) -> str | None:
    """The lower-case scheme of a URL string (``s3``), or None for anything else."""
    if not isinstance(path, str):
        return None
    match = _SCHEME.match(path.strip())
    return match.group(1).lower() if match else None


def is_remote(path: object) -> bool:
    """Whether ``path`` is a URL with a scheme other than ``file://`` (cheap: no import)."""
    scheme = scheme_of(path)
    return scheme is not None and scheme != "file"


def normalize(url: str) -> str:
    """A URL as stores are known by: lower-case scheme, no trailing slash."""
    url = url.strip()
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def import_fsspec() -> Any:
    """The fsspec module, or ``MissingPackageError`` with the install hint."""
    try:
        return importlib.import_module("fsspec")
    except ImportError:
        raise MissingPackageError(
            f"remote cache paths need fsspec (and s3fs for S3): {HINT}"
        ) from None


def check_url(url: str) -> str:
    """The normalized URL, if fsspec knows its scheme and its backend package is installed.

    Raises ``MissingPackageError`` (a ``ConfigError`` and an ``ImportError``) with the install
    hint, or ``ConfigError`` for an unknown scheme.
    """
    scheme = scheme_of(url)
    if scheme is None:
        raise ConfigError(f"cache_path={url!r} is not a URL")
    fsspec = import_fsspec()
    if scheme not in fsspec.available_protocols():
        raise ConfigError(
            f"cache_path={url!r}: fsspec knows no {scheme}:// filesystem (see "
            "fsspec.available_protocols())"
        )
    known = importlib.import_module("fsspec.registry").known_implementations.get(scheme)
    if known is not None:
        module = str(known.get("class", "")).partition(".")[0]
        if module and importlib.util.find_spec(module) is None:
            why = known.get("err") or f"install {module}"
            raise MissingPackageError(f"cache_path={url!r}: {why} ({HINT} for S3)")
    return normalize(url)


def location(path: str | os.PathLike[str]) -> str | Path:
    """A cache location as memo uses it: an fsspec URL, checked and normalized (``check_url``),
    or a local directory's ``Path`` (``~`` expanded; from a ``file://`` URL, its unquoted
    path, which must be local). ``ConfigError`` for a URL memo cannot open."""
    text = os.fspath(path)
    if is_remote(text):
        return check_url(text)
    if "://" in text:
        from urllib.parse import unquote, urlparse  # (file:// URLs only)

        url = urlparse(text)
        if url.scheme.lower() != "file" or url.netloc not in ("", "localhost"):
            raise ConfigError(f"{text!r}: a file:// URL must name a local directory")
        text = unquote(url.path)
    return Path(text).expanduser()


def storage_options(scheme: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """memo's defaults for a protocol, with the ``given`` options merged over them."""
    return _merge(copy.deepcopy(_DEFAULTS.get(scheme, {})), given)


def _merge(base: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in given.items():
        if isinstance(value, Mapping) and isinstance(base.get(name), dict):
            base[name] = _merge(base[name], value)
        else:
            base[name] = value
    return base
