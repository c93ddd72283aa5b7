"""The call path over tiers: ``cache_path=[local, remote]`` reads in order, copies a lower hit
up, and writes to the first writable tier (or every writable one with ``write="all"``).

The tiers here are a local directory above a real S3 API server (moto, on 127.0.0.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memo


def area(w: int, h: int = 2) -> int:
    return w * h


def _keys(location: str | Path) -> set[str]:
    return {entry.key for entry in memo.Store(location).entries()}


def test_a_hit_in_a_lower_tier_is_copied_up(tmp_path: Path, s3_url: str) -> None:
    """CI fills the S3 tier; a developer's function over ``[local, s3]`` hits it without
    running the body, copies the entry into the local tier (metadata and all), and hits
    the local copy from then on, even once the S3 entry is gone."""
    ci = memo.decorate(area, cache_path=s3_url)
    assert ci(3) == 6
    local = tmp_path / "local"
    mine = memo.decorate(area, cache_path=[local, s3_url])
    assert mine(3) == 6
    assert mine.cache_info().misses == 0
    assert _keys(local) == {mine.key(3)}
    (copied,) = memo.Store(local).entries()
    assert copied.metadata() == memo.Store(s3_url).find(mine.key(3)).metadata()
    assert ci.invalidate(3)  # (only the S3 tier: the local copy stays)
    assert mine(3) == 6
    assert mine.cache_info() == (2, 0, 0, 0)
    assert memo.Store(local).verify() == []


def test_a_miss_is_stored_in_the_first_writable_tier_only(tmp_path: Path, s3_url: str) -> None:
    """A miss in every tier is computed once and stored in the first writable tier; the
    tiers below are not written (nor leased), unless ``write="all"``."""
    local = tmp_path / "local"
    mine = memo.decorate(area, cache_path=[local, s3_url])
    assert mine(4) == 8
    assert mine(4) == 8
    assert mine.cache_info().misses == 1
    assert _keys(local) == {mine.key(4)}
    assert memo.Store(s3_url).entries() == []
    both = memo.decorate(area, cache_path=[tmp_path / "both", s3_url], write="all")
    assert both(5) == 10
    assert _keys(tmp_path / "both") == _keys(s3_url) == {both.key(5)}


def test_a_read_only_tier_is_read_and_never_written(tmp_path: Path, s3_url: str) -> None:
    """Below a local tier, ``memo.Store(s3, read_only=True)`` is read (its hits copied up)
    but never written, even with ``write="all"``; a function over read-only tiers only stores
    nothing."""
    memo.decorate(area, cache_path=s3_url)(1)
    team = memo.Store(s3_url, read_only=True)
    before = _keys(s3_url)
    mine = memo.decorate(area, cache_path=[tmp_path / "l", team], write="all")
    assert [mine(1), mine(2), mine(2)] == [2, 4, 4]
    assert mine.cache_info().misses == 1
    assert _keys(s3_url) == before
    assert _keys(tmp_path / "l") == {mine.key(1), mine.key(2)}
    assert "read-only" in mine.explain(2)
    assert mine.invalidate(2)  # (from the local tier: the read-only one is left alone)
    reader = memo.decorate(area, cache_path=[team])
    assert reader(7) == 14
    assert not reader.is_cached(7)
    with pytest.raises(memo.ReadOnlyError):
        reader.invalidate(1)


def test_an_npy_entry_and_a_signed_entry_are_copied_up_whole(
    tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``npy`` entry's payload file is copied up with its record (checked by digest), and
    a signed entry keeps its signature, so it loads in the upper tier with the key."""

    def ramp(n: int) -> Any:
        return np.arange(n, dtype=np.float32)

    memo.decorate(ramp, cache_path=s3_url, serializer="npy")(1000)
    local = tmp_path / "arrays"
    mine = memo.decorate(ramp, cache_path=[local, s3_url], serializer="npy")
    assert np.array_equal(mine(1000), np.arange(1000, dtype=np.float32))
    (entry,) = memo.Store(local).entries()
    assert entry.payload is not None
    assert entry.payload.suffix == ".npy"
    assert np.array_equal(np.load(entry.payload), np.arange(1000, dtype=np.float32))
    assert memo.Store(local).verify() == []

    secret = "a team secret of enough length"
    memo.decorate(area, cache_path=s3_url, secret_key=secret)(9)
    signed = memo.decorate(area, cache_path=[tmp_path / "signed", s3_url], secret_key=secret)
    assert signed(9) == 18
    upper_only = memo.decorate(area, cache_path=tmp_path / "signed", secret_key=secret)
    assert upper_only.is_cached(9)


def test_a_signed_only_tier_uses_only_signed_entries(tmp_path: Path, s3_url: str) -> None:
    """``memo.Store(s3, read_only=True, signed_only=True)``: without a key its entries (here
    one anyone could have planted) are not used, with one warning saying which key to set;
    with the key a signed entry hits and is copied up, and an unsigned one is still refused."""
    secret = "a team secret of enough length"
    memo.decorate(area, cache_path=s3_url)(1)  # (unsigned: as anyone could write it)
    memo.decorate(area, cache_path=s3_url, secret_key=secret)(2)  # (signed, by CI)
    team = memo.Store(s3_url, read_only=True, signed_only=True)
    assert team.signed_only
    assert "signed_only=True" in repr(team)
    keyless = memo.decorate(area, cache_path=[tmp_path / "keyless", team])
    with pytest.warns(memo.MemoWarning, match="signed_only=True.*MEMO_SECRET_KEY"):
        assert keyless(1) == 2
    assert keyless(2) == 4
    assert keyless.cache_info().misses == 2
    assert "signed_only" in keyless.explain(2)
    signed = memo.decorate(area, cache_path=[tmp_path / "signed", team], secret_key=secret)
    assert signed(2) == 4
    assert signed.cache_info().misses == 0
    assert _keys(tmp_path / "signed") == {signed.key(2)}  # (copied up, signature and all)
    with pytest.warns(memo.MemoWarning, match="not signed"):
        assert signed(1) == 2
    assert signed.cache_info().misses == 1  # the unsigned entry is not used
    with pytest.raises(memo.ConfigError, match="signed_only must be True or False"):
        memo.Store(s3_url, signed_only="yes")  # type: ignore[arg-type]


def test_pull_from_a_signed_only_store_needs_the_key(
    tmp_path: Path, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Store.pull`` copies nothing from a signed_only store unless MEMO_SECRET_KEY is set
    (then every load checks the signatures)."""
    secret = "a team secret of enough length"
    memo.decorate(area, cache_path=s3_url, secret_key=secret)(3)
    local = tmp_path / "laptop"
    local.mkdir()
    team = memo.Store(s3_url, signed_only=True)
    assert memo.Store(local).pull(team, progress=False) == []
    monkeypatch.setenv("MEMO_SECRET_KEY", secret)
    assert len(memo.Store(local).pull(team, progress=False)) == 1


def test_bad_tiers_are_refused_at_decoration(tmp_path: Path) -> None:
    """An empty list, a location given twice, None among tiers and an unknown ``write`` are
    ConfigErrors when decorating."""
    cases: list[tuple[Any, dict[str, Any]]] = [
        ([], {}),
        ([tmp_path, tmp_path], {}),
        ([tmp_path, None], {}),
        ([tmp_path], {"write": "sometimes"}),
    ]
    for cache_path, extra in cases:
        with pytest.raises(memo.ConfigError):
            memo.decorate(area, cache_path=cache_path, **extra)
