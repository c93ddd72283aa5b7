"""The local store, in-process and on real files: layout, damage recovery, failures, management."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import pickle
import platform
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import memo
from memo._exceptions import reset_warnings
from memo._storage import _disk, _files
from memo._storage._backend import MISS, sanitize
from memo._storage._format import CHECK, HEADER
from memo._storage._open import forget_stores
from memo._storage._serializers import PICKLE
from tests.stores import LocalStore, disk, entry_store

# The autouse fixture in conftest only sets environment variables and clears warnings, which is
# harmless to share between examples; every example makes its own directory and resets warnings.
_HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_REGIONS = ("metadata", "header", "payload", "digest")
_SECRET = "a secret key of the store tests"


def square(x: int) -> int:
    """A module-level function, so its entry files are named plainly ``square-<key>.memo``."""
    return x * x


def _value(x: int) -> dict[str, Any]:
    """A result whose payload is a few KiB, so offsets inside the payload are plentiful."""
    return {"x": x, "data": bytes(range(256)) * 8, "text": "memo" * 50}


def _make(cache_path: Path) -> tuple[memo.Memoized[[int], dict[str, Any]], list[int]]:
    """A memoized function in ``cache_path`` and the list of arguments its body ran with."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_path)
    def compute(x: int) -> dict[str, Any]:
        calls.append(x)
        return _value(x)

    return compute, calls


def _entry(func: memo.Memoized[..., Any], *args: Any) -> Path:
    """The path of the entry file for ``func(*args)``."""
    return Path(entry_store(func).path(sanitize(func.__qualname__), func.key(*args)))


def _memo_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.memo"))


def _temp_files(directory: Path) -> list[str]:
    tmp = directory / ".tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def _memo_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, memo.MemoWarning)]


@pytest.fixture
def record() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised in the test, none filtered out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _regions(data: bytes) -> dict[str, tuple[int, int]]:
    """The [start, end) byte ranges of an entry's metadata line, header, payload and digest."""
    start = data.index(b"\n") + 1
    magic, _fmt, _flags, name_len, length = struct.unpack_from("<4sBBHQ", data, start)
    assert magic == b"MEMO"
    name_end = start + HEADER + name_len
    offset = name_end + (-name_end % 64)
    end = offset + length
    assert end + CHECK == len(data)
    return {
        "metadata": (0, start),
        "header": (start, offset),
        "payload": (offset, end),
        "digest": (end, len(data)),
    }


def _damage_is_recovered(mutate: Callable[[bytes, Path], bytes]) -> None:
    """Store an entry, damage it with ``mutate``, and check it is warned, recomputed, replaced."""
    reset_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        func, calls = _make(Path(tmp) / "cache")
        expected = _value(7)
        assert func(7) == expected
        path = _entry(func, 7)
        original = path.read_bytes()
        damaged = mutate(original, Path(tmp))
        assert damaged != original, "the mutation must change the file"
        path.write_bytes(damaged)
        assert not func.is_cached(7)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert func(7) == expected
        assert calls == [7, 7], "a damaged entry must be recomputed"
        assert len(_memo_warnings(caught)) == 1, [str(w.message) for w in caught]
        assert len(caught) == 1

        assert func.is_cached(7)
        assert path.read_bytes() != damaged
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert func(7) == expected
        assert calls == [7, 7], "the replaced entry must be a hit"
        assert caught == []
        assert _temp_files(Path(tmp) / "cache") == []


# --- layout ---------------------------------------------------------------------------------


def test_entry_file_name_and_metadata_line(cache_dir: Path) -> None:
    """An entry is ``<funcname>-<key>.memo`` and starts with a JSON line describing the call."""
    func = memo.decorate(square, cache_path=cache_dir)
    assert func(12) == 144
    key = func.key(12)
    assert len(key) == 32
    assert int(key, 16) >= 0
    files = _memo_files(cache_dir)
    assert [p.name for p in files] == [f"square-{key}.memo"]
    assert entry_store(func).path("square", key) == str(files[0])

    first_line = files[0].read_bytes().split(b"\n", 1)[0]
    meta = json.loads(first_line)
    assert meta["function"].endswith("square")
    assert meta["key"] == key
    assert isinstance(meta["created"], float)
    assert abs(meta["created"] - time.time()) < 60
    assert isinstance(meta["compute_seconds"], float)
    assert meta["compute_seconds"] >= 0
    assert meta["python"] == platform.python_version()
    assert meta["memo"] == memo.__version__
    assert meta["serializer"] == "pickle"
    assert meta["arguments"] == {"x": "12"}


def test_directories_are_private(cache_dir: Path) -> None:
    """The cache directory and its ``.tmp`` folder are created with mode 0o700."""
    old = os.umask(0)  # the modes must come from memo, not from a restrictive umask
    try:
        func = memo.decorate(square, cache_path=cache_dir)
        assert func(3) == 9
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache_dir / ".tmp").stat().st_mode) == 0o700
    assert stat.S_IMODE(_memo_files(cache_dir)[0].stat().st_mode) == 0o600


def test_a_new_cache_directory_is_ignored_by_git(tmp_path: Path) -> None:
    """A cache directory memo makes inside a git repository holds a .gitignore of '*':
    git sees nothing of it (neither entries nor the .gitignore itself)."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is needed for this test (install git)")
    repo = tmp_path / "project"
    repo.mkdir()
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    func = memo.decorate(square, cache_path=repo / "results" / "cache")
    assert func(3) == 9
    assert (repo / "results" / "cache" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(
        [git, "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    assert status.stdout == ""


def test_an_existing_directory_gets_no_gitignore(tmp_path: Path) -> None:
    """A cache_path that was already a directory (perhaps a project's own) is left without
    a .gitignore: memo would otherwise hide the project from git."""
    project = tmp_path / "project"
    project.mkdir()
    func = memo.decorate(square, cache_path=project)
    assert func(3) == 9
    assert not (project / ".gitignore").exists()


# --- damaged entries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "mutate"),
    [
        ("empty", lambda data, tmp: b""),
        ("metadata line only", lambda data, tmp: data[: data.index(b"\n") + 1]),
        ("inside the header", lambda data, tmp: data[: _regions(data)["header"][0] + 10]),
        ("inside the payload", lambda data, tmp: data[: sum(_regions(data)["payload"]) // 2]),
        ("digest removed", lambda data, tmp: data[:-CHECK]),
        ("last byte removed", lambda data, tmp: data[:-1]),
        ("zero-filled tail", lambda data, tmp: data[:-100] + bytes(100)),
        ("zero-filled digest", lambda data, tmp: data[:-CHECK] + bytes(CHECK)),
        ("trailing garbage", lambda data, tmp: data + b"garbage"),
        ("one trailing zero", lambda data, tmp: data + b"\0"),
        ("all zeros", lambda data, tmp: bytes(len(data))),
    ],
)
def test_damaged_entry_is_recomputed(case: str, mutate: Callable[[bytes, Path], bytes]) -> None:
    """A truncated, zero-filled or extended entry is a miss: warned once, recomputed, replaced."""
    _damage_is_recovered(mutate)


@pytest.mark.parametrize("region", _REGIONS)
def test_bit_flip_in_each_region_is_recomputed(region: str) -> None:
    """A single flipped bit in any region of an entry is detected and the entry is replaced."""

    def flip(data: bytes, tmp: Path) -> bytes:
        start, end = _regions(data)[region]
        position = (start + end) // 2
        out = bytearray(data)
        out[position] ^= 0x10
        return bytes(out)

    _damage_is_recovered(flip)


def test_entry_copied_from_another_key_is_recomputed() -> None:
    """Another key's (valid) entry copied onto this key's path is detected and replaced."""

    def other_entry(data: bytes, tmp: Path) -> bytes:
        func, _ = _make(tmp / "other")
        func(8)
        return _entry(func, 8).read_bytes()

    _damage_is_recovered(other_entry)


@_HYPOTHESIS
@given(cut=st.integers(min_value=0, max_value=2**32))
@example(cut=0)
def test_truncation_at_any_offset_is_recomputed(cut: int) -> None:
    """An entry truncated at any offset is warned once, recomputed and replaced."""
    _damage_is_recovered(lambda data, tmp: data[: cut % len(data)])


@_HYPOTHESIS
@given(count=st.integers(min_value=1, max_value=4096))
def test_zero_filled_tail_of_any_length_is_recomputed(count: int) -> None:
    """An entry whose last bytes were zeroed (as after a crash) is detected and replaced."""

    def zero_tail(data: bytes, tmp: Path) -> bytes:
        n = min(count, len(data))
        if data[-n:] == bytes(n):  # already zeros: zero one more byte so the file changes
            n = len(data) - len(data[:-n].rstrip(b"\0")) + 1
        return data[:-n] + bytes(n)

    _damage_is_recovered(zero_tail)


@_HYPOTHESIS
@given(
    region=st.sampled_from(_REGIONS),
    position=st.integers(min_value=0, max_value=2**32),
    bit=st.integers(min_value=0, max_value=7),
)
@example(region="metadata", position=0, bit=0)
@example(region="header", position=0, bit=0)
@example(region="payload", position=0, bit=7)
@example(region="digest", position=15, bit=3)
def test_bit_flip_anywhere_is_recomputed(region: str, position: int, bit: int) -> None:
    """Any single flipped bit, in any region, is detected, warned once and replaced."""

    def flip(data: bytes, tmp: Path) -> bytes:
        start, end = _regions(data)[region]
        out = bytearray(data)
        out[start + position % (end - start)] ^= 1 << bit
        return bytes(out)

    _damage_is_recovered(flip)


@_HYPOTHESIS
@given(garbage=st.binary(min_size=1, max_size=200))
def test_trailing_garbage_is_recomputed(garbage: bytes) -> None:
    """Any bytes appended to an entry make it a miss that is warned once and replaced."""
    _damage_is_recovered(lambda data, tmp: data + garbage)


# --- failures to cache ----------------------------------------------------------------------


def _numbers() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    "make",
    [_numbers, lambda: {"lock": threading.Lock(), "x": 1}],
    ids=["generator", "lock-inside"],
)
def test_unpicklable_result_is_returned_not_stored(
    cache_dir: Path, make: Callable[[], Any], record: list[warnings.WarningMessage]
) -> None:
    """An unpicklable result is returned with one warning; no entry or temp file is left."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def produce(x: int) -> Any:
        calls.append(x)
        return made[-1]

    made: list[Any] = []
    made.append(make())
    assert produce(1) is made[-1]
    made.append(make())
    assert produce(1) is made[-1]
    assert calls == [1, 1]
    assert len(_memo_warnings(record)) == 1
    assert len(record) == 1
    assert "could not cache" in str(record[0].message)
    assert _memo_files(cache_dir) == []
    assert _temp_files(cache_dir) == []
    assert produce.errors == 2
    assert produce.stores == 0


def _flood(func: memo.Memoized[[int], int], calls: list[int]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(200):
            assert func(6) == 36
    assert len(calls) == 200, "nothing can be cached, so every call computes"
    return caught


def test_uncreatable_cache_path_warns_once(tmp_path: Path) -> None:
    """A cache path under a regular file: values are returned and 200 calls warn once in all."""
    (tmp_path / "afile").write_text("not a directory")
    calls: list[int] = []

    @memo.cache(cache_path=tmp_path / "afile" / "cache")
    def times6(x: int) -> int:
        calls.append(x)
        return x * 6

    caught = _flood(times6, calls)
    assert len(_memo_warnings(caught)) == 1, [str(w.message) for w in caught]
    assert len(caught) == 1
    assert (tmp_path / "afile").read_text() == "not a directory"


def _read_only_flood(cache_dir: Path) -> dict[str, Any]:
    """200 calls (and 3 async ones) on a read-only cache dir; what happened, as JSON data."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def times6(x: int) -> int:
        calls.append(x)
        return x * 6

    @memo.cache(cache_path=cache_dir, lock_timeout=30)
    async def async_times6(x: int) -> int:
        calls.append(x)
        return x * 6

    async def three_async_calls() -> list[int]:
        return [await async_times6(6) for _ in range(3)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = {times6(6) for _ in range(200)}
        started = time.monotonic()
        async_values = asyncio.run(three_async_calls())
        async_seconds = time.monotonic() - started
    return {
        "values": sorted(values),
        "async_values": async_values,
        "async_seconds": async_seconds,
        "runs": len(calls),
        "messages": [f"{w.category.__name__}: {w.message}" for w in caught],
        "entries": [str(p) for p in _memo_files(cache_dir)],
        "temps": _temp_files(cache_dir),
    }


def _check_read_only_flood(report: dict[str, Any]) -> None:
    assert report["values"] == [36]
    assert report["async_values"] == [36, 36, 36]
    assert report["async_seconds"] < 5, "an async call must not wait for an unusable lock"
    assert report["runs"] == 203, "nothing can be cached, so every call computes"
    messages = report["messages"]
    # One warning for each of the two functions, however many calls.
    assert len(messages) == 2, messages
    assert all(m.startswith("MemoWarning: memo: could not cache") for m in messages)
    assert report["entries"] == []
    assert report["temps"] == []


def _make_read_only(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    (cache_dir / ".tmp").mkdir(mode=0o700)  # as left by earlier runs: only the root is locked
    cache_dir.chmod(0o500)


def test_read_only_cache_directory_warns_once(cache_dir: Path) -> None:
    """A read-only cache directory: values are returned and 200 calls warn once in all."""
    _make_read_only(cache_dir)
    try:
        if os.access(cache_dir, os.W_OK):
            pytest.skip("running as root: chmod cannot make a directory read-only")
        _check_read_only_flood(_read_only_flood(cache_dir))
    finally:
        cache_dir.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="the test above covers unprivileged users")
def test_read_only_cache_directory_warns_once_as_unprivileged_child() -> None:
    """As root, the read-only case runs in a forked child that drops to uid ``nobody``."""
    nobody = 65534
    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o711)  # the child may traverse, not list or write
        cache_dir = base / "cache"
        _make_read_only(cache_dir)
        for path in (cache_dir, cache_dir / ".tmp"):
            os.chown(path, nobody, nobody)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 1
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(nobody)
                os.setuid(nobody)
                assert not os.access(cache_dir, os.W_OK)
                reset_warnings()
                os.write(write, json.dumps(_read_only_flood(cache_dir)).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            ready, _, _ = select.select([pipe], [], [], 60)
            raw = pipe.read() if ready else b""
        if not ready:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert ready, "the child hung (it was killed after 60 s)"
        assert os.waitstatus_to_exitcode(status) == 0
        report = json.loads(raw)
        _check_read_only_flood(report)
    finally:
        shutil.rmtree(base)


# --- the user's exceptions and falsy results -----------------------------------------------


class BoomError(Exception):
    """The user's own exception."""


def test_user_exception_propagates_unchanged(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """The body's exception propagates as the same object, is not cached, and is raised again."""
    calls: list[int] = []
    error = BoomError("no result")

    @memo.cache(cache_path=cache_dir)
    def fails(x: int) -> int:
        calls.append(x)
        raise error

    with pytest.raises(BoomError) as info:
        fails(1)
    assert info.value is error
    assert _memo_files(cache_dir) == []
    assert not fails.is_cached(1)
    with pytest.raises(BoomError) as info:
        fails(1)
    assert info.value is error
    assert calls == [1, 1]
    assert _memo_files(cache_dir) == []
    assert _temp_files(cache_dir) == []
    assert record == []


@pytest.mark.parametrize("result", [None, 0, "", [], False, 0.0, b"", {}, ()])
def test_falsy_results_are_cached(cache_dir: Path, result: Any) -> None:
    """None, 0, "", [], False and other falsy results are stored and reused."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def falsy(x: int) -> Any:
        calls.append(x)
        return result

    first = falsy(1)
    second = falsy(1)
    assert calls == [1]
    for value in (first, second):
        assert value == result
        assert type(value) is type(result)
    assert falsy.is_cached(1)
    assert (falsy.hits, falsy.misses, falsy.stores) == (1, 1, 1)


# --- symbolic links -------------------------------------------------------------------------


@pytest.mark.parametrize("target_kind", ["valid entry", "other file"])
def test_symlink_at_entry_path_is_not_followed(
    tmp_path: Path, cache_dir: Path, target_kind: str, record: list[warnings.WarningMessage]
) -> None:
    """A symlink planted at an entry's path is never followed: a miss, one warning, right value."""
    func = memo.decorate(square, cache_path=cache_dir)
    path = _entry(func, 9)
    if target_kind == "valid entry":
        # A valid entry for this very key: following the link would make the call a hit.
        elsewhere = memo.decorate(square, cache_path=tmp_path / "elsewhere")
        assert elsewhere(9) == 81
        target = _entry(elsewhere, 9)
    else:
        target = tmp_path / "secret.txt"
        target.write_text("not a cache entry")
    before = target.read_bytes()
    cache_dir.mkdir(mode=0o700)
    path.symlink_to(target)
    assert not func.is_cached(9)

    assert func(9) == 81
    assert func.misses == 1, "the body must run: the link is not read"
    assert len(_memo_warnings(record)) == 1, [str(w.message) for w in record]
    assert "symbolic link" in str(record[0].message)
    assert not path.is_symlink()
    assert target.read_bytes() == before, "the link's target must not be written through"
    assert func(9) == 81
    assert func.hits == 1
    assert len(record) == 1


# --- managing entries -----------------------------------------------------------------------


def test_is_cached_and_invalidate(cache_dir: Path) -> None:
    """``is_cached`` reports stored calls; ``invalidate`` deletes one and says if it existed."""
    func, calls = _make(cache_dir)
    assert not func.is_cached(1)
    assert func.invalidate(1) is False
    func(1)
    func(2)
    assert func.is_cached(1)
    assert func.is_cached(2)
    assert func.invalidate(1) is True
    assert not func.is_cached(1)
    assert func.is_cached(2)
    assert not _entry(func, 1).exists()
    assert func.invalidate(1) is False
    assert func(1) == _value(1)
    assert calls == [1, 2, 1]


def test_is_cached_checks_the_signature_as_a_call_would(cache_dir: Path) -> None:
    """With a secret key, an entry with a damaged or missing signature is not cached."""
    calls: list[int] = []

    def body(x: int) -> int:
        calls.append(x)
        return x

    signed = memo.decorate(body, cache_path=cache_dir, secret_key=_SECRET)
    signed(1)
    assert signed.is_cached(1)
    path = _entry(signed, 1)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))  # the signature's last byte
    assert not signed.is_cached(1)

    path.unlink()
    unsigned = memo.decorate(body, cache_path=cache_dir)
    unsigned(1)
    assert unsigned.is_cached(1)
    assert not signed.is_cached(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memo.MemoWarning)
        assert signed(1) == 1
    assert calls == [1, 1, 1], "the call rejects what is_cached rejected"
    assert signed.is_cached(1)


def test_refresh_recomputes_and_overwrites(cache_dir: Path) -> None:
    """``refresh`` runs the body even when cached and overwrites the stored entry."""
    counter = [0]

    @memo.cache(cache_path=cache_dir)
    def stamped(x: int) -> tuple[int, int]:
        counter[0] += 1
        return x, counter[0]

    assert stamped(5) == (5, 1)
    assert stamped(5) == (5, 1)
    assert stamped.refresh(5) == (5, 2)
    assert stamped(5) == (5, 2), "the refreshed value must replace the stored one"
    assert counter == [2]
    assert stamped.refresh(6) == (6, 3), "refresh of an uncached call computes and stores it"
    assert stamped(6) == (6, 3)
    assert len(_memo_files(cache_dir)) == 2
    assert _temp_files(cache_dir) == []


def test_clear_removes_only_this_functions_entries(cache_dir: Path) -> None:
    """``clear`` deletes all of a function's entries and none of another's in the same dir."""
    first, first_calls = _make(cache_dir)

    @memo.cache(cache_path=cache_dir)
    def other(x: int) -> int:
        return -x

    for x in range(3):
        first(x)
        other(x)
    assert len(_memo_files(cache_dir)) == 6
    assert first.clear() == 3
    assert not any(first.is_cached(x) for x in range(3))
    assert all(other.is_cached(x) for x in range(3))
    assert len(_memo_files(cache_dir)) == 3
    assert first.clear() == 0
    first(0)
    assert first_calls == [0, 1, 2, 0]
    assert other.clear() == 3
    assert first.is_cached(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_metadata_names_the_process_that_wrote_the_entry(cache_dir: Path) -> None:
    """Each entry records the pid of its writer, also when a forked child writes it."""
    func = memo.decorate(square, cache_path=cache_dir)
    func(1)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            func(2)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    pids = {entry["arguments"]["x"]: entry["pid"] for entry in func.entries()}
    assert pids == {"1": os.getpid(), "2": child}


def test_entries_lists_metadata_newest_first(cache_dir: Path) -> None:
    """``entries`` returns each stored call's metadata and path, newest first, only its own."""
    func, _ = _make(cache_dir)
    other = memo.decorate(square, cache_path=cache_dir)
    assert func.entries() == []
    for x in (1, 2, 3):
        func(x)
    other(4)
    found = func.entries()
    assert [e["key"] for e in found] == [func.key(3), func.key(2), func.key(1)]
    assert [e["arguments"] for e in found] == [{"x": "3"}, {"x": "2"}, {"x": "1"}]
    assert [e["path"] for e in found] == [str(_entry(func, x)) for x in (3, 2, 1)]
    created = [e["created"] for e in found]
    assert created == sorted(created, reverse=True)
    assert [e["key"] for e in other.entries()] == [other.key(4)]
    func.invalidate(2)
    assert [e["key"] for e in func.entries()] == [func.key(3), func.key(1)]


# --- temp files of dead writers -------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_temp_files_of_dead_writers_are_swept(cache_dir: Path) -> None:
    """A later store's first write removes temp files whose writer pid is dead, not others."""
    func = memo.decorate(square, cache_path=cache_dir)
    func(2)
    key = func.key(3)
    dead = _dead_pid()
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    tmp = cache_dir / ".tmp"
    stale = tmp / f"square-{key}.{dead}.abcd1234.tmp"
    stale.write_bytes(b"half an entry")
    live = tmp / f"square-{key}.1.abcd5678.tmp"  # pid 1 is always alive
    live.write_bytes(b"a live writer's entry")

    forget_stores()  # as in a new process: a new store object
    later = memo.decorate(square, cache_path=cache_dir)
    assert later(2) == 4
    assert stale.exists(), "a hit does not write, so it does not sweep"
    assert later(3) == 9
    assert not stale.exists()
    assert live.exists()
    assert _temp_files(cache_dir) == [live.name]
    assert later(3) == 9


def test_named_temp_files_where_unnamed_ones_are_unavailable(cache_dir: Path) -> None:
    """Without O_TMPFILE, entries go through named temp files and nothing is left behind."""
    store = LocalStore(cache_dir)
    disk(store)._tmpfile = False  # as on a filesystem that refuses O_TMPFILE
    serializer = PICKLE
    key = "0123456789abcdef" * 2
    store.save("f", key, {"a": 1}, f'"key":"{key}"', serializer)
    assert store.load("f", key) == {"a": 1}
    store.save("f", key, {"a": 2}, f'"key":"{key}"', serializer)  # replaces the entry
    assert store.load("f", key) == {"a": 2}
    assert os.listdir(cache_dir / ".tmp") == []
    assert store.metadata("f", key) == {
        "key": key,
        "serializer": "pickle",
        "payload_bytes": len(pickle.dumps({"a": 2}, protocol=5)),
    }


def test_a_process_that_cannot_open_the_link_anchor_uses_named_temp_files(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If "/" cannot be opened (needed to link an unnamed file), the store still stores,
    through named temp files, instead of failing the call."""

    def refused() -> int:
        raise PermissionError(13, "Permission denied", "/")

    monkeypatch.setattr(_files, "anchor", refused)
    store = LocalStore(cache_dir)
    assert disk(store)._tmpfile is False
    key = "0123456789abcdef" * 2
    store.save("f", key, [1, 2], f'"key":"{key}"', PICKLE, '"fixed":1')
    assert store.load("f", key) == [1, 2]
    assert os.listdir(cache_dir / ".tmp") == []


def test_a_key_lock_makes_the_store_directory_before_any_write(tmp_path: Path) -> None:
    """Locking a key of a store that has never written makes its directory (0o700, parents
    too) with its .gitignore and its lock file, then locks; nothing else is created."""
    root = tmp_path / "not" / "yet"
    store = LocalStore(root)
    claim, held = store.locks.acquire("0123456789abcdef" * 2, 1.0)
    try:
        assert held
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert sorted(os.listdir(root)) == [".gitignore", ".lock"]
    finally:
        store.locks.release("0123456789abcdef" * 2, claim, held)


class _FailingClose(types.ModuleType):
    """Stands in for ``os``: ``close`` closes, then reports an error (as NFS may)."""

    def __init__(self) -> None:
        super().__init__("os")
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def close(self, fd: int) -> None:
        os.close(fd)
        self.failed += 1
        raise OSError(errno.EIO, "injected close error")


def test_close_error_after_linking_is_not_a_failed_store(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unnamed entry already linked into place is stored even if closing it then fails."""
    func, calls = _make(cache_dir)
    func(0)  # creates the directory and its lock file, outside the fault
    if not disk(entry_store(func))._tmpfile:
        pytest.skip("the filesystem has no unnamed temp files")
    failing = _FailingClose()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with monkeypatch.context() as patch:
            patch.setattr(_disk, "os", failing)
            assert func(7) == _value(7)
    assert failing.failed == 1
    assert [str(w.message) for w in caught] == []
    assert func.cache_info().errors == 0
    assert func.is_cached(7)
    assert func(7) == _value(7)
    assert calls == [0, 7]


def test_cache_directory_removed_while_running_is_recreated(cache_dir: Path) -> None:
    """Deleting the cache directory under a live store does not lose later results."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1)
    shutil.rmtree(cache_dir)
    assert f(2) == 2
    assert f.is_cached(2)
    assert f(2) == 2
    assert calls == [1, 2]


@pytest.mark.parametrize("offset", [0, 16, 4096, 5000])
@pytest.mark.parametrize("numpy_loaded", [True, False])
def test_large_reads_return_the_file_exactly(
    tmp_path: Path, offset: int, numpy_loaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large file read whole (with or without numpy) is its bytes exactly, from any offset."""
    from memo._storage import _files

    if not numpy_loaded:
        monkeypatch.delitem(sys.modules, "numpy", raising=False)
    content = bytes(range(256)) * (3 * _files.SMALL // 256 + 7)
    path = tmp_path / "big"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        data = _files.read_all(fd, len(content) - offset)
    finally:
        os.close(fd)
    assert bytes(data) == content[offset:]
    assert not memoryview(data).readonly


def test_large_array_results_load_aligned_and_writable(cache_dir: Path) -> None:
    """A large array comes back equal, aligned and writable from pickle and npy entries."""
    np = pytest.importorskip("numpy")
    array = np.arange(3_000_000, dtype=np.float64)
    for serializer in ("pickle", "npy"):
        f = memo.decorate(lambda: array, cache_path=cache_dir / serializer, serializer=serializer)
        f()
        forget_stores()
        f = memo.decorate(lambda: array, cache_path=cache_dir / serializer, serializer=serializer)
        loaded = f()
        assert f.hits == 1
        assert np.array_equal(loaded, array)
        assert loaded.flags.aligned
        assert loaded.flags.writeable
        assert loaded.ctypes.data % 64 == 0


@pytest.mark.parametrize(
    "sizes", [[10, 3_000_000], [20 << 20, 14 << 20, 5]], ids=["inline", "thread"]
)
def test_written_payloads_hash_as_they_are_written(tmp_path: Path, sizes: list[int]) -> None:
    """write_hashed puts the chunks at the offset and returns their length and xxh3 digest."""
    import xxhash

    from memo._storage import _files

    chunks = [os.urandom(64) * (size // 64) + os.urandom(size % 64) for size in sizes]
    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        length, digest = _files.write_hashed(fd, chunks, 100)
    finally:
        os.close(fd)
    whole = b"".join(chunks)
    assert length == len(whole)
    assert digest == xxhash.xxh3_128_digest(whole)
    assert path.read_bytes()[100:] == whole


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_read_hashes_exactly_its_range_while_reading(data: st.DataObject) -> None:
    """read_hashing returns the whole file and the digest of exactly [start, end), whichever
    read pieces the range starts, ends or lies in."""
    import xxhash

    from memo._storage import _files

    content = data.draw(st.binary(min_size=1, max_size=5000))
    start = data.draw(st.integers(min_value=0, max_value=len(content)))
    end = data.draw(st.integers(min_value=start, max_value=len(content)))
    piece = data.draw(st.sampled_from([1, 7, 64, 4096, 1 << 20]))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "entry")
        with open(path, "wb") as file:
            file.write(content)
        fd = os.open(path, os.O_RDONLY)
        original = _files._READ_PIECE
        _files._READ_PIECE = piece
        try:
            whole, digest = _files.read_hashing(fd, len(content), start, end)
        finally:
            _files._READ_PIECE = original
            os.close(fd)
    assert bytes(whole) == content
    assert digest == xxhash.xxh3_128_digest(content[start:end])


def test_large_entries_hashed_while_read_load_and_reject_damage(cache_dir: Path) -> None:
    """An entry large enough to be hashed while it is read loads; with one payload bit flipped
    it is rejected with one warning and recomputed."""
    import numpy as np

    from memo._storage import _files

    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def big(n: int) -> Any:
        calls.append(n)
        return np.arange(n, dtype=np.float64)

    n = (_files.PARALLEL // 8) + 1000
    assert np.array_equal(big(n), np.arange(n, dtype=np.float64))
    assert np.array_equal(big(n), np.arange(n, dtype=np.float64))
    assert calls == [n]
    (path,) = _memo_files(cache_dir)
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size - 4096)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 1]))
    with pytest.warns(memo.MemoWarning, match="damaged"):
        assert np.array_equal(big(n), np.arange(n, dtype=np.float64))
    assert calls == [n, n]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fallocate(2) is Linux's")
def test_large_payloads_are_written_into_reserved_blocks(tmp_path: Path) -> None:
    """A large payload's blocks are reserved before it is written (as np.save does), the file
    keeps the size written; reserving on what cannot (a pipe) is skipped without an error."""
    from memo._storage import _files

    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _files.preallocate(fd, 4096, 8 << 20)
        reserved = os.fstat(fd)
        assert reserved.st_size == 0  # the size is kept: only blocks are reserved
        assert reserved.st_blocks * 512 >= 8 << 20
        _files.write_hashed(fd, [bytes(3 << 20)], 4096)
    finally:
        os.close(fd)
    assert path.stat().st_size == 4096 + (3 << 20)
    read_end, write_end = os.pipe()
    try:
        _files.preallocate(write_end, 0, 8 << 20)  # ESPIPE, ignored
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_failed_write_while_hashing_raises_and_leaves_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error writing a large payload propagates after the hashing thread has finished."""
    from memo._storage import _files

    def failing(fd: int, data: Any, position: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(os, "pwrite", failing)  # the os module _files writes through
    before = threading.active_count()
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="injected"):
            _files.write_hashed(fd, [bytes(40 << 20)], 0)
    finally:
        os.close(fd)
    assert threading.active_count() == before


def test_after_a_run_of_misses_entries_written_by_others_are_still_found(tmp_path: Path) -> None:
    """A store that has found nothing many times in a row (and so checks for a file before
    opening it) still loads an entry another process stored, and a symbolic link placed as an
    entry is still refused with a warning."""
    reader, writer = LocalStore(tmp_path), LocalStore(tmp_path)
    pickler = PICKLE
    keys = [f"{n:032x}" for n in range(20)]
    assert all(reader.load("f", key) is MISS for key in keys)
    writer.save("f", keys[3], "three", '"k":1', pickler)
    assert reader.load("f", keys[3]) == "three"
    assert all(reader.load("f", key) is MISS for key in keys[4:])
    target = tmp_path / "elsewhere"
    target.write_bytes(Path(writer.path("f", keys[3])).read_bytes())
    os.symlink(target, writer.path("f", keys[5]))
    with pytest.warns(UserWarning, match="symbolic link"):
        assert reader.load("f", keys[5]) is MISS
