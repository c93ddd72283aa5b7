"""Settings and parsers for human-friendly durations and sizes."""

from __future__ import annotations

import re
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._config import default_cache_dir, lock_timeout_from_env, parse_duration, parse_size
from tests.stores import entry_store


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), (2.5, 2.5), ("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0), ("7d", 604800.0),
     ("1w", 604800.0), ("250ms", 0.25), ("3", 3.0)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    """Numbers are seconds; strings take s, m, h, d, w and ms."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["7 fortnights", "", "-1s", -3, True, None, "1y"])
def test_bad_durations(bad: object) -> None:
    """Malformed durations raise a ValueError that shows an example."""
    with pytest.raises(ValueError, match=r"duration|negative|seconds"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [(100, 100), ("10GB", 10 * 1000**3), ("2GiB", 2 * 1024**3), ("1.5kb", 1500), ("7", 7)],
)
def test_sizes(text: object, size: int) -> None:
    """Sizes accept decimal and binary units."""
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["10 parsecs", "-1GB", False, [1]])
def test_bad_sizes(bad: object) -> None:
    """Malformed sizes raise a ValueError naming the units."""
    with pytest.raises(ValueError, match=r"size|negative|bytes"):
        parse_size(bad)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MEMO_CACHE_DIR wins, then XDG_CACHE_HOME/memo, then ~/.cache/memo."""
    monkeypatch.setenv("MEMO_CACHE_DIR", "~/somewhere")
    assert default_cache_dir() == Path.home() / "somewhere"
    monkeypatch.delenv("MEMO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "memo"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    assert default_cache_dir() == Path.home() / ".cache" / "memo"


def test_lock_timeout_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMO_LOCK_TIMEOUT takes durations or 'none' for no limit."""
    monkeypatch.delenv("MEMO_LOCK_TIMEOUT", raising=False)
    assert lock_timeout_from_env() is None
    monkeypatch.setenv("MEMO_LOCK_TIMEOUT", "10m")
    assert lock_timeout_from_env() == 600.0
    monkeypatch.setenv("MEMO_LOCK_TIMEOUT", "none")
    assert lock_timeout_from_env() == float("inf")


_SETTINGS = (
    "MEMO_CACHE_DIR",
    "MEMO_CACHE_SKIP",
    "MEMO_DISABLE",
    "MEMO_LOCK_TIMEOUT",
    "MEMO_MAX_SIZE",
    "MEMO_SECRET_KEY",
    "MEMO_STORAGE_OPTIONS",
    "MEMO_REMOTE_TIMEOUT",
    "MEMO_LEASE",
    "MEMO_LEASE_HEARTBEAT",
    "MEMO_LEASE_POLL",
)


def test_every_setting_is_documented_here() -> None:
    """The README's table of settings is the list the next test sets after decoration."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert set(re.findall(r"^\| `(MEMO_[A-Z_]+)` \|", readme, re.MULTILINE)) == set(_SETTINGS)


@pytest.mark.parametrize("name", _SETTINGS)
def test_settings_set_after_decoration_apply_at_the_first_call(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each MEMO_* variable set after decoration and before the first call takes effect."""
    for each in _SETTINGS[1:]:
        monkeypatch.delenv(each, raising=False)
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        if threading.current_thread().name == "holder":
            started.set()
            release.wait(5)
        return x

    started, release = threading.Event(), threading.Event()
    local = tmp_path / "local"
    remote = f"memory://memo-settings-{uuid.uuid4().hex[:8]}"
    url = name in ("MEMO_STORAGE_OPTIONS", "MEMO_REMOTE_TIMEOUT") or "LEASE" in name
    f = memo.decorate(
        body, cache_path=None if name == "MEMO_CACHE_DIR" else remote if url else local
    )
    value = {
        "MEMO_CACHE_DIR": str(tmp_path / "from-env"),
        "MEMO_CACHE_SKIP": "1",
        "MEMO_DISABLE": "1",
        "MEMO_LOCK_TIMEOUT": "0.2s",
        "MEMO_MAX_SIZE": "1KB",
        "MEMO_SECRET_KEY": "a secret key of some length",
        "MEMO_STORAGE_OPTIONS": '{"memo_probe": 7}',
        "MEMO_REMOTE_TIMEOUT": "42s",
        "MEMO_LEASE": "40s",
        "MEMO_LEASE_HEARTBEAT": "3s",
        "MEMO_LEASE_POLL": "0.5s",
    }[name]
    monkeypatch.setenv(name, value)
    if name == "MEMO_LOCK_TIMEOUT":
        # The holder computes key 1 (under its lock) until released; a second caller waits
        # for the lock only MEMO_LOCK_TIMEOUT, then computes anyway.
        holder = threading.Thread(target=f, args=(1,), name="holder")
        holder.start()
        assert started.wait(5)
        began = time.monotonic()
        assert f(1) == 1
        waited = time.monotonic() - began
        release.set()
        holder.join()
        assert waited < 2.5
        return
    assert f(1) == 1
    assert f(1) == 1
    store = entry_store(f)
    backend: Any = store.backend  # (a remote store's settings are kept by its backend)
    if name == "MEMO_CACHE_DIR":
        assert Path(store.root) == tmp_path / "from-env"
        assert memo.Store(tmp_path / "from-env").entries()
    elif name in ("MEMO_CACHE_SKIP", "MEMO_DISABLE"):
        assert calls == [1, 1]
        assert f.is_cached(1) == (name == "MEMO_CACHE_SKIP")
    elif name == "MEMO_MAX_SIZE":
        assert store.max_size == 1000
    elif name == "MEMO_SECRET_KEY":
        monkeypatch.delenv(name)
        signed = memo.decorate(body, cache_path=local, secret_key=value)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")  # (an unsigned entry is refused with a warning)
            assert signed(1) == 1
        assert calls == [1]  # stored signed with the key from the environment
    elif name == "MEMO_STORAGE_OPTIONS":
        assert backend._filesystem().storage_options["memo_probe"] == 7
    elif name == "MEMO_REMOTE_TIMEOUT":
        assert backend._timeout == 42.0
    else:
        settings = backend.locks.settings
        field = {"MEMO_LEASE": "seconds", "MEMO_LEASE_HEARTBEAT": "heartbeat"}.get(name, "poll")
        assert getattr(settings, field) == parse_duration(value)


def test_one_location_parser_for_paths_and_urls(tmp_path: Path) -> None:
    """A cache location is a Path (``~`` expanded, a local file:// URL's unquoted path) or a
    checked URL; a file:// URL naming another host is a ConfigError."""
    from memo._storage._urls import location

    assert location("~/cache") == Path.home() / "cache"
    assert location(tmp_path) == tmp_path
    assert location(f"file://{tmp_path}/a%20b") == tmp_path / "a b"
    assert location(f"file://localhost{tmp_path}") == tmp_path
    assert location("memory://somewhere/cache") == "memory://somewhere/cache"
    with pytest.raises(memo.ConfigError, match="local directory"):
        location("file://elsewhere/cache")
