"""Settings and parsers for human-friendly durations and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from memo._config import default_cache_dir, lock_timeout_from_env, parse_duration, parse_size


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
