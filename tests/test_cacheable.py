"""``Cacheable`` results: stored in their own ``<name>-<key>.d/`` directory, checked file by
file against the entry's manifest, and never trusted through a symbolic link."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._storage._backend import sanitize
from memo._storage._open import forget_stores
from tests.stores import entry_store


class _Calls:
    """How often the Cacheable hooks ran (an object, not a dict: it does not enter keys)."""

    def __init__(self) -> None:
        self.to_cache = 0
        self.from_cache = 0


CALLS = _Calls()


class Model:
    """A Cacheable result: named files, some in a subdirectory, written by ``to_cache``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def to_cache(self, directory: Path) -> None:
        """Write every file (creating subdirectories)."""
        CALLS.to_cache += 1
        for name, content in self.files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    @classmethod
    def from_cache(cls, directory: Path) -> Model:
        """Read every file back."""
        CALLS.from_cache += 1
        files = {
            path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        }
        return cls(files)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.files == self.files

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.files)))

    def __repr__(self) -> str:
        return f"Model({sorted(self.files)})"


class Exploding(Model):
    """A Cacheable whose ``to_cache`` writes a file, then fails."""

    def to_cache(self, directory: Path) -> None:
        """Write part of the files, then raise."""
        CALLS.to_cache += 1
        (directory / "partial.bin").write_bytes(b"half")
        (directory / "sub").mkdir()
        raise RuntimeError("disk says no")


def _model(tag: str = "v1") -> Model:
    return Model(
        {
            "weights.bin": bytes(range(256)) * 40 + tag.encode(),
            "meta/config.json": b'{"layers": 3, "tag": "' + tag.encode() + b'"}',
        }
    )


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.to_cache = CALLS.from_cache = 0


@pytest.fixture
def record() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised in the test, none filtered out."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _memo_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, memo.MemoWarning)]


def _build(
    cache_dir: Path, make: Callable[[str], Model] = _model
) -> tuple[memo.Memoized[[str], Model], list[str]]:
    """A memoized function ``build(tag)`` returning ``make(tag)``, and the list of its runs."""
    calls: list[str] = []

    @memo.cache(cache_path=cache_dir)
    def build(tag: str) -> Model:
        calls.append(tag)
        return make(tag)

    return build, calls


def _directory(func: memo.Memoized[..., Any], *args: Any) -> Path:
    return entry_store(func).directory(sanitize(func.__qualname__), func.key(*args))


def _entry(func: memo.Memoized[..., Any], *args: Any) -> Path:
    return Path(entry_store(func).path(sanitize(func.__qualname__), func.key(*args)))


def _listing(directory: Path) -> list[str]:
    return sorted(
        path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()
    )


def _tmp(cache_dir: Path) -> list[str]:
    return sorted(os.listdir(cache_dir / ".tmp"))


# --- round trip -----------------------------------------------------------------------------


def test_cacheable_round_trips_through_its_own_directory(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A Cacheable result is written once by ``to_cache`` into ``<name>-<key>.d/`` next to its
    entry, and a hit rebuilds it with ``from_cache``."""
    build, calls = _build(cache_dir)
    first = build("v1")
    assert first == _model("v1")
    assert (CALLS.to_cache, CALLS.from_cache) == (1, 0)

    key = build.key("v1")
    directory = cache_dir / f"build-{key}.d"
    assert _directory(build, "v1") == directory
    assert directory.is_dir()
    assert _listing(directory) == ["meta/config.json", "weights.bin"]
    assert (directory / "meta" / "config.json").read_bytes() == _model("v1").files[
        "meta/config.json"
    ]
    assert (cache_dir / f"build-{key}.memo").is_file()
    assert build.entries()[0]["serializer"] == "cacheable"
    assert build.is_cached("v1")

    hit = build("v1")
    assert hit is not first
    assert hit == _model("v1")
    assert calls == ["v1"]
    assert (CALLS.to_cache, CALLS.from_cache) == (1, 1)
    assert build("v1") == _model("v1")
    assert (CALLS.to_cache, CALLS.from_cache) == (1, 2)
    assert _tmp(cache_dir) == []
    assert record == []


def test_two_keys_have_two_directories(cache_dir: Path) -> None:
    """Each call's result has its own directory; neither disturbs the other."""
    build, calls = _build(cache_dir)
    build("a")
    build("b")
    assert sorted(path.name for path in cache_dir.glob("*.d")) == sorted(
        [_directory(build, "a").name, _directory(build, "b").name]
    )
    assert build("a") == _model("a")
    assert build("b") == _model("b")
    assert calls == ["a", "b"]


def test_explicit_serializer_bypasses_the_directory(cache_dir: Path) -> None:
    """With an explicit serializer a Cacheable result is serialized like any other value."""

    @memo.cache(cache_path=cache_dir, serializer="pickle")
    def build(tag: str) -> Model:
        return _model(tag)

    build("v1")
    assert build("v1") == _model("v1")
    assert list(cache_dir.glob("*.d")) == []
    assert build.entries()[0]["serializer"] == "pickle"
    assert (CALLS.to_cache, CALLS.from_cache) == (0, 0)


# --- a changed directory is a miss ----------------------------------------------------------


def _flip_byte(directory: Path) -> None:
    path = directory / "weights.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01  # same size: only the digest can tell
    path.write_bytes(bytes(data))


_CHANGES: dict[str, Callable[[Path], object]] = {
    "byte flipped": _flip_byte,
    "truncated": lambda d: (d / "meta" / "config.json").write_bytes(b"{}"),
    "emptied": lambda d: (d / "weights.bin").write_bytes(b""),
    "file deleted": lambda d: (d / "weights.bin").unlink(),
    "subdirectory deleted": lambda d: shutil.rmtree(d / "meta"),
    "file added": lambda d: (d / "extra.txt").write_text("surprise"),
    "file added in subdirectory": lambda d: (d / "meta" / "extra.json").write_text("{}"),
    "file renamed": lambda d: (d / "weights.bin").rename(d / "weights.old"),
    "directory deleted": shutil.rmtree,
}


@pytest.mark.parametrize("change", list(_CHANGES))
def test_changed_directory_is_a_miss_then_valid_again(
    cache_dir: Path, change: str, record: list[warnings.WarningMessage]
) -> None:
    """A modified, deleted or added file makes the entry a miss: one warning, recomputed,
    rewritten, and the next call is a clean hit."""
    build, calls = _build(cache_dir)
    build("v1")
    directory = _directory(build, "v1")
    _CHANGES[change](directory)

    assert build("v1") == _model("v1")
    assert calls == ["v1", "v1"]
    assert CALLS.from_cache == 0, "from_cache must not see a changed directory"
    assert CALLS.to_cache == 2
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "damaged" in messages[0]

    assert build.is_cached("v1")
    assert _listing(directory) == ["meta/config.json", "weights.bin"]
    assert build("v1") == _model("v1")
    assert calls == ["v1", "v1"]
    assert CALLS.from_cache == 1
    assert len(record) == 1
    assert _tmp(cache_dir) == []


def test_is_cached_checks_the_directory_as_a_call_would(tmp_path: Path) -> None:
    """A changed directory makes ``is_cached`` False, as the call that recomputes it."""
    for n, change in enumerate(_CHANGES.values()):
        build, calls = _build(tmp_path / str(n))
        build("v1")
        assert build.is_cached("v1")
        change(_directory(build, "v1"))
        assert not build.is_cached("v1"), n
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", memo.MemoWarning)
            build("v1")
        assert calls == ["v1", "v1"]
        assert build.is_cached("v1")


# --- managing -------------------------------------------------------------------------------


def test_refresh_replaces_the_directory(cache_dir: Path) -> None:
    """``refresh`` writes a new directory in place of the old one: no stale file survives."""
    versions = [
        Model({"old.bin": b"old", "sub/old.txt": b"old"}),
        Model({"new.bin": b"new", "other/deep/new.txt": b"new"}),
    ]
    runs: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def build(tag: str) -> Model:
        runs.append(1)
        return versions[len(runs) - 1]

    build("x")
    directory = _directory(build, "x")
    assert _listing(directory) == ["old.bin", "sub/old.txt"]
    assert build.refresh("x") == versions[1]
    assert _listing(directory) == ["new.bin", "other/deep/new.txt"]
    assert not (directory / "sub").exists()
    assert build("x") == versions[1]
    assert len(runs) == 2
    assert sorted(path.name for path in cache_dir.glob("*.d")) == [directory.name]
    assert _tmp(cache_dir) == []


def test_invalidate_removes_the_directory(cache_dir: Path) -> None:
    """``invalidate`` deletes the entry file and its directory."""
    build, calls = _build(cache_dir)
    build("a")
    build("b")
    assert build.invalidate("a") is True
    assert not _entry(build, "a").exists()
    assert not _directory(build, "a").exists()
    assert _directory(build, "b").is_dir()
    assert build.invalidate("a") is False
    assert build("a") == _model("a")
    assert calls == ["a", "b", "a"]


def test_clear_removes_every_directory(cache_dir: Path) -> None:
    """``clear`` deletes all of the function's entry files and directories."""
    build, _ = _build(cache_dir)
    for tag in ("a", "b", "c"):
        build(tag)
    assert len(list(cache_dir.glob("*.d"))) == 3
    assert build.clear() == 3
    assert list(cache_dir.glob("*.d")) == []
    assert list(cache_dir.glob("*.memo")) == []


# --- failures -------------------------------------------------------------------------------


def test_failing_to_cache_returns_the_value_and_leaves_nothing(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A ``to_cache`` that raises: the value is returned, one warning, and no entry, directory
    or temporary file is left behind."""
    value = Exploding({"a": b"1"})
    calls: list[str] = []

    @memo.cache(cache_path=cache_dir)
    def build(tag: str) -> Model:
        calls.append(tag)
        return value

    assert build("x") is value
    assert build("x") is value
    assert calls == ["x", "x"]
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "disk says no" in messages[0]
    assert len(record) == 1
    assert not build.is_cached("x")
    assert [name for name in os.listdir(cache_dir) if not name.startswith(".")] == []
    assert list(cache_dir.glob("*.d")) == []
    assert list(cache_dir.glob("*.memo")) == []
    assert _tmp(cache_dir) == []


def test_failed_refresh_keeps_the_previous_entry(
    cache_dir: Path, record: list[warnings.WarningMessage]
) -> None:
    """A refresh whose ``to_cache`` raises leaves the previous entry and directory valid."""
    results: list[Model] = [_model("v1"), Exploding({"a": b"1"})]

    @memo.cache(cache_path=cache_dir)
    def build(tag: str) -> Model:
        return results.pop(0)

    build("x")
    refreshed = build.refresh("x")
    assert isinstance(refreshed, Exploding)
    assert len(_memo_warnings(record)) == 1
    assert build.is_cached("x")
    assert build("x") == _model("v1")
    assert CALLS.from_cache == 1
    assert _tmp(cache_dir) == []


# --- symbolic links -------------------------------------------------------------------------


def _file_to_link(directory: Path, outside: Path) -> Path:
    """Replace weights.bin by a link to an identical copy (same size and digest) outside."""
    target = outside / "weights.bin"
    shutil.copyfile(directory / "weights.bin", target)
    (directory / "weights.bin").unlink()
    (directory / "weights.bin").symlink_to(target)
    return target


def _subdirectory_to_link(directory: Path, outside: Path) -> Path:
    """Replace meta/ by a link to an identical copy outside."""
    target = outside / "meta"
    shutil.copytree(directory / "meta", target)
    shutil.rmtree(directory / "meta")
    (directory / "meta").symlink_to(target, target_is_directory=True)
    return target / "config.json"


def _extra_link(directory: Path, outside: Path) -> Path:
    """Add a link to a file outside (say, a secret the loader should never read)."""
    target = outside / "secret.txt"
    target.write_text("do not read")
    (directory / "meta" / "secret.txt").symlink_to(target)
    return target


def _dangling_link(directory: Path, outside: Path) -> Path:
    """Add a link pointing nowhere."""
    target = outside / "missing"
    (directory / "gone").symlink_to(target)
    return outside


@pytest.mark.parametrize(
    "plant",
    [_file_to_link, _subdirectory_to_link, _extra_link, _dangling_link],
    ids=["file-replaced", "subdirectory-replaced", "extra-link", "dangling-link"],
)
def test_symlink_inside_the_directory_is_damage(
    cache_dir: Path,
    tmp_path: Path,
    plant: Callable[[Path, Path], Path],
    record: list[warnings.WarningMessage],
) -> None:
    """A symbolic link planted in an entry's directory makes it damaged, even when the link
    leads to identical bytes: never followed, the target is left untouched, recomputed."""
    build, calls = _build(cache_dir)
    build("v1")
    directory = _directory(build, "v1")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = plant(directory, outside)
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}

    assert build("v1") == _model("v1")
    assert calls == ["v1", "v1"]
    assert CALLS.from_cache == 0
    messages = _memo_warnings(record)
    assert len(messages) == 1, messages
    assert "symbolic link" in messages[0]
    assert target.exists() or plant is _dangling_link
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before
    assert not any(path.is_symlink() for path in directory.rglob("*"))
    assert build("v1") == _model("v1")
    assert CALLS.from_cache == 1
    assert len(record) == 1


def test_directory_replaced_by_a_symlink_is_damage(
    cache_dir: Path, tmp_path: Path, record: list[warnings.WarningMessage]
) -> None:
    """An entry directory replaced by a link to an identical copy is not followed: a miss,
    recomputed into a real directory; the link's target is untouched."""
    build, calls = _build(cache_dir)
    build("v1")
    directory = _directory(build, "v1")
    copy = tmp_path / "copy.d"
    shutil.copytree(directory, copy)
    shutil.rmtree(directory)
    directory.symlink_to(copy, target_is_directory=True)

    assert build("v1") == _model("v1")
    assert calls == ["v1", "v1"]
    assert CALLS.from_cache == 0
    assert len(_memo_warnings(record)) == 1
    assert directory.is_dir()
    assert not directory.is_symlink()
    assert _listing(copy) == ["meta/config.json", "weights.bin"]
    assert build("v1") == _model("v1")
    assert CALLS.from_cache == 1


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_non_directory_at_the_directory_path_leaves_no_temp_file(
    cache_dir: Path, tmp_path: Path, kind: str
) -> None:
    """Replacing a symlink or file found at an entry directory's path leaves ``.tmp`` empty."""
    build, _ = _build(cache_dir)
    build("v1")
    directory = _directory(build, "v1")
    copy = tmp_path / "copy.d"
    shutil.copytree(directory, copy)
    shutil.rmtree(directory)
    if kind == "symlink":
        directory.symlink_to(copy, target_is_directory=True)
    else:
        directory.write_text("not a directory")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memo.MemoWarning)
        assert build("v1") == _model("v1")
    assert directory.is_dir()
    assert _tmp(cache_dir) == []


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import memo

os.urandom = lambda n: bytes.fromhex("c0ffee00")  # a token with letters, as most are: fixed

class Dies:
    def to_cache(self, directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"half written")
        os.kill(os.getpid(), signal.SIGKILL)

    @classmethod
    def from_cache(cls, directory: Path) -> "Dies":
        return cls()

@memo.cache(cache_path=sys.argv[1])
def build() -> Dies:
    return Dies()

build()
"""


def test_staging_directory_of_a_killed_writer_is_swept(cache_dir: Path) -> None:
    """A writer killed inside ``to_cache`` leaves a staging directory the next process removes."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(cache_dir)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    left = _tmp(cache_dir)
    assert len(left) == 1
    assert left[0].endswith(".c0ffee00.tmp.d")
    os.utime(cache_dir / ".tmp" / left[0], (0, 0))  # from a writer long dead, long ago

    forget_stores()  # as in a new process: the next write sweeps .tmp first
    build, _ = _build(cache_dir)
    build("v1")
    assert _tmp(cache_dir) == []


def test_staging_directory_of_a_live_writer_is_kept(cache_dir: Path) -> None:
    """Another process's sweep leaves a live writer's staging directory alone."""
    build, _ = _build(cache_dir)
    build("v1")  # creates the store and its .tmp
    key = build.key("v2")
    # What _write_directory names its staging directory: this (live) process's pid, and a
    # random 8-hex-digit token that here happens to be all digits (about 2% of tokens are).
    staging = cache_dir / ".tmp" / f"build-{key}.{os.getpid()}.12345678.tmp.d"
    staging.mkdir()
    (staging / "being-written.bin").write_bytes(b"...")

    forget_stores()  # as in another process starting up: its first write sweeps .tmp
    other, _ = _build(cache_dir)
    other("v3")
    assert staging.is_dir()


def test_cacheable_class_that_cannot_be_found_again_is_not_stored(cache_dir: Path) -> None:
    """A Cacheable class defined inside a function is returned, warned about, never stored."""

    class Local:
        def to_cache(self, directory: Path) -> None:
            (directory / "x").write_text("x")

        @classmethod
        def from_cache(cls, directory: Path) -> Local:
            return cls()

    @memo.cache(cache_path=cache_dir)
    def make(n: int) -> Local:
        return Local()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(make(1), Local)
    assert any("module level" in str(w.message) for w in caught)
    assert not make.is_cached(1)
    assert _tmp(cache_dir) == []
