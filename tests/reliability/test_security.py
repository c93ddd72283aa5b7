"""Hostile caches: forged and tampered entries, planted links, hostile names, sparse giants,
and directories other users can write to. Nothing planted is ever unpickled or followed."""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import memo
from memo._exceptions import reset_warnings
from memo._storage import _format
from memo._storage._backend import sanitize
from memo._storage._open import forget_stores
from tests.stores import disk, entry_store

from ._support import FaultyOS, faulty_os, figure

SECRET = "correct horse battery staple"


class Planted:
    """Unpickling this creates the sentinel file: proof that a planted payload ran."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.sentinel, "w"))


def square(x: int) -> int:
    """The function whose entries are attacked."""
    return x * x


def blob(x: int) -> bytes:
    """A 2 MiB result, so its entry is read through the large-entry path."""
    return bytes([x % 256]) * (2 * 2**20)


def _entry(func: memo.Memoized[..., Any], *args: Any) -> Path:
    return Path(entry_store(func).path(sanitize(func.__qualname__), func.key(*args)))


def _memo_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    assert all(issubclass(w.category, memo.MemoWarning) for w in caught), caught
    return [str(w.message) for w in caught]


@pytest.fixture
def record() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised in the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _forge(original: bytes, key: bytes, payload: bytes, secret: bytes | None) -> bytes:
    """An entry with ``original``'s metadata line holding ``payload``, signed with ``secret``."""
    metadata = original[: original.index(b"\n")]
    chunks, _ = _format.pack(metadata, key, "pickle", [payload], secret)
    return b"".join(bytes(chunk) for chunk in chunks)


# --- signing --------------------------------------------------------------------------------

VARIANTS = ("unsigned", "forged", "tampered", "swapped", "flipped signature")


@pytest.mark.parametrize("how", ["option", "environment"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_signed_store_never_unpickles_a_planted_entry(
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: list[warnings.WarningMessage],
    variant: str,
    how: str,
) -> None:
    """Unsigned, forged, tampered or swapped entries are recomputed, their payload never run."""
    if how == "environment":
        monkeypatch.setenv("MEMO_SECRET_KEY", SECRET)
        func = memo.decorate(square, cache_path=cache_dir)
    else:
        func = memo.decorate(square, cache_path=cache_dir, secret_key=SECRET)
    assert func(7) == 49
    assert func(8) == 64
    path, other = _entry(func, 7), _entry(func, 8)
    original, key = path.read_bytes(), bytes.fromhex(func.key(7))
    sentinel = tmp_path / "pwned"
    evil = pickle.dumps(Planted(str(sentinel)))
    real = SECRET.encode()
    if variant == "unsigned":
        planted = _forge(original, key, evil, None)
    elif variant == "forged":
        planted = _forge(original, key, evil, b"a guessed key")
    elif variant == "tampered":  # the evil payload under the original entry's signature
        planted = _forge(original, key, evil, real)[:-32] + original[-32:]
    elif variant == "swapped":  # a genuine signed entry, of another key
        planted = other.read_bytes()
    else:
        planted = original[:-1] + bytes([original[-1] ^ 1])
    path.write_bytes(planted)
    record.clear()

    assert func(7) == 49
    assert not sentinel.exists(), "a planted payload was unpickled"
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "damaged" in messages[0], messages
    assert func.misses == 3
    assert func(7) == 49
    assert func.hits == 1, "the recomputed entry replaced the planted one"


def test_signing_rejects_entries_written_without_it(cache_dir: Path, tmp_path: Path) -> None:
    """An entry stored unsigned (a valid one) is not trusted once signing is on."""
    sentinel = tmp_path / "pwned"
    plain = memo.decorate(square, cache_path=cache_dir)
    assert plain(3) == 9
    path = _entry(plain, 3)
    evil = pickle.dumps(Planted(str(sentinel)))
    path.write_bytes(_forge(path.read_bytes(), bytes.fromhex(plain.key(3)), evil, None))
    forget_stores()
    signed = memo.decorate(square, cache_path=cache_dir, secret_key=SECRET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert signed(3) == 9
    assert not sentinel.exists()
    assert len(_memo_warnings(caught)) == 1
    assert signed.misses == 1


# --- symbolic links -------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("planted", [".tmp", ".lock"])
@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temp files"])
def test_planted_links_in_the_cache_are_never_followed(
    cache_dir: Path,
    tmp_path: Path,
    record: list[warnings.WarningMessage],
    planted: str,
    unnamed: bool,
) -> None:
    """A link at ``.tmp`` or ``.lock`` pointing outside is not written or read through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    if planted == ".tmp":
        target.mkdir()
    else:
        target.write_text("do not touch")
    cache_dir.mkdir(mode=0o700)
    (cache_dir / planted).symlink_to(target)
    before = _tree(outside)
    func = memo.decorate(square, cache_path=cache_dir)
    disk(entry_store(func))._tmpfile = unnamed and disk(entry_store(func))._tmpfile
    time.sleep(0.01)  # so a write through the link would change a modification time

    for _ in range(2):
        assert func(5) == 25
        assert func.refresh(5) == 25
    assert _tree(outside) == before, "something outside the cache was written"
    assert target.is_dir() if planted == ".tmp" else target.read_text() == "do not touch"
    assert (cache_dir / planted).is_symlink(), "memo does not remove what it does not own"
    assert len(_memo_warnings(record)) <= 2


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_sanitized_names_are_plain_short_file_names(name: str) -> None:
    """Any qualname becomes 1-80 safe characters: no separator, no '..', no leading dot."""
    clean = sanitize(name)
    assert 1 <= len(clean) <= 80
    assert set(clean) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
    assert not clean.startswith(".")
    assert clean not in (".", "..")


HOSTILE = [
    "../../../escaped",
    "/etc/passwd",
    "a/b\\c",
    "..",
    ".",
    "",
    "é" * 300,
    "x" * 10_000,
    "nul\x00byte",
    "outer.<locals>.../../up",
    "\u202eevil\u202d",
    "spaces and\nnewlines",
]


@pytest.mark.parametrize("qualname", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_function_names_stay_inside_the_cache(tmp_path: Path, qualname: str) -> None:
    """Whatever a function's qualname, its files are inside the cache with short names."""
    cache_dir = tmp_path / "deep" / "cache"

    def body(x: int) -> int:
        return x + 1

    body.__qualname__ = qualname
    outside = set(tmp_path.rglob("*"))
    func = memo.decorate(body, cache_path=cache_dir)
    assert func(1) == 2
    assert func(1) == 2
    assert func.hits == 1
    created = set(tmp_path.rglob("*")) - outside
    for path in created:
        assert path == cache_dir.parent or cache_dir in (path, *path.parents), path
        assert len(path.name.encode()) <= 255
    assert len(list(cache_dir.glob("*.memo"))) == 1


# --- sparse giants --------------------------------------------------------------------------

GIANT = 10 * 2**30


def _giant_header(original: bytes, key: bytes, secret: bool) -> bytes:
    """The head of an entry claiming a payload that makes the file 10 GiB, with a valid check."""
    metadata = original[: original.index(b"\n")]
    name = b"pickle"
    flags = _format.SIGNED if secret else 0
    start = len(metadata) + 1
    offset = start + _format.HEADER + len(name)
    offset += -offset % 64
    trailer = _format.CHECK + (_format.SIGNATURE if secret else 0)
    length = GIANT - offset - trailer
    head = metadata + b"\n"
    head += struct.pack(
        "<4sBBHQ16s16sq", b"MEMO", 2, flags, len(name), length, key, b"\0" * 16, time.time_ns()
    )
    head += name
    head += b"\0" * (offset - len(head))
    return head


@pytest.mark.parametrize("kind", ["extended copy", "valid-looking header", "signed header"])
def test_sparse_ten_gigabyte_entry_is_rejected_without_reading_it(
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: list[warnings.WarningMessage],
    kind: str,
) -> None:
    """A planted 10 GiB sparse entry is refused after a few small reads, not 10 GiB of them."""
    secret = SECRET if kind == "signed header" else None
    func = memo.decorate(blob, cache_path=cache_dir, secret_key=secret)
    assert func(1) == blob(1)
    path = _entry(func, 1)
    original = path.read_bytes()
    if kind == "extended copy":
        with open(path, "r+b") as file:
            file.truncate(GIANT)
    else:
        head = _giant_header(original, bytes.fromhex(func.key(1)), secret is not None)
        with open(path, "wb") as file:
            file.write(head)
            file.truncate(GIANT - _format.CHECK - (_format.SIGNATURE if secret else 0))
            file.seek(0, os.SEEK_END)
            file.write(xxhash.xxh3_128_digest(head) + b"\0" * (_format.SIGNATURE if secret else 0))
    st_ = path.stat()
    assert st_.st_size == GIANT
    assert st_.st_blocks * 512 < 2**24, "the file must be sparse"
    record.clear()

    fake = FaultyOS()
    started = time.monotonic()
    with faulty_os(monkeypatch, fake):
        assert not func.is_cached(1)
        assert func(1) == blob(1)
    elapsed = time.monotonic() - started
    assert fake.bytes_read < 2**20, f"{fake.bytes_read} bytes read from a planted giant"
    assert elapsed < 10
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "damaged" in messages[0], messages
    assert path.stat().st_size < 2**22, "the giant was replaced"
    assert func(1) == blob(1)
    assert func.hits == 1
    figure(f"sparse giant rejected after reading ({kind}), bytes", fake.bytes_read)


# --- directories others can write to --------------------------------------------------------


def test_world_writable_cache_is_not_used_unsigned(
    cache_dir: Path, tmp_path: Path, record: list[warnings.WarningMessage]
) -> None:
    """A mode-777 cache is neither read nor written without signing, with one warning."""
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777)
    func = memo.decorate(square, cache_path=cache_dir)
    sentinel = tmp_path / "pwned"
    path = _entry(func, 4)
    valid = memo.decorate(square, cache_path=tmp_path / "private")
    assert valid(4) == 16
    source = _entry(valid, 4)
    evil = pickle.dumps(Planted(str(sentinel)))
    path.write_bytes(_forge(source.read_bytes(), bytes.fromhex(func.key(4)), evil, None))
    record.clear()

    for _ in range(3):
        assert func(4) == 16
        assert func(5) == 25
    assert not sentinel.exists(), "an entry in a world-writable cache was unpickled"
    assert func.misses == 6
    assert func.hits == 0
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "writable by every user" in messages[0]
    assert "secret_key" in messages[0]
    assert sorted(p.name for p in cache_dir.glob("*.memo")) == [path.name], "nothing stored"


def test_world_writable_cache_is_used_with_signing(
    cache_dir: Path, tmp_path: Path, record: list[warnings.WarningMessage]
) -> None:
    """With signing on, a shared writable cache works normally and quietly."""
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777)
    func = memo.decorate(square, cache_path=cache_dir, secret_key=SECRET)
    assert func(4) == 16
    assert func(4) == 16
    assert (func.misses, func.hits) == (1, 1)
    assert record == []


def test_group_writable_cache_of_ones_own_is_used(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A cache made with umask 002 (group-writable, owned by this user) is used as usual."""
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o775)
    func = memo.decorate(square, cache_path=cache_dir)
    assert func(4) == 16
    assert func(4) == 16
    assert (func.misses, func.hits) == (1, 1)
    assert record == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_cache_owned_by_another_user_is_not_read_unsigned(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A cache directory belonging to someone else is not trusted without signing."""
    func = memo.decorate(square, cache_path=cache_dir)
    assert func(4) == 16
    forget_stores()
    reset_warnings()
    os.chown(cache_dir, 65534, 65534)
    try:
        other = memo.decorate(square, cache_path=cache_dir)
        record.clear()
        assert other(4) == 16
        assert other.misses == 1
        messages = _memo_warnings(record)
        assert len(messages) == 1
        assert "belongs to another user" in messages[0]
    finally:
        os.chown(cache_dir, 0, 0)
        shutil.rmtree(cache_dir, ignore_errors=True)
