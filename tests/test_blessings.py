"""Blessings: ``f.bless()`` records that the current code answers for the earlier one, so a
harmless edit does not throw a week of entries away; a harmful one is caught by ``check``."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memo

VERSIONS = {
    "first": "def compute(x):\n    y = x * 2\n    return y + 1\n",
    "renamed": "def compute(x):\n    doubled = x * 2\n    return doubled + 1\n",
    "refactored": (
        "def _twice(x):\n    return x * 2\n\n\ndef compute(x):\n    return _twice(x) + 1\n"
    ),
    "wrong": "def compute(x):\n    return x * 3 + 1\n",
}


def _code(func: Any) -> str:
    """The code fingerprint of a function's newest entry."""
    code: str = func.entries()[0]["components"]["code"]
    return code


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    """Write ``blessed_mod.py`` as one of VERSIONS (one cache for all) and import it anew."""
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = tmp_path / "cache"

    def write(version: str) -> Any:
        body = VERSIONS[version].replace(
            "def compute", "@memo.cache(cache_path=CACHE)\ndef compute"
        )
        source = f"import memo\n\nCACHE = {str(cache)!r}\n\n\n{body}"
        (tmp_path / "blessed_mod.py").write_text(source)
        sys.modules.pop("blessed_mod", None)
        importlib.invalidate_caches()
        return importlib.import_module("blessed_mod").compute

    yield write
    sys.modules.pop("blessed_mod", None)


def test_a_blessed_edit_hits_the_earlier_entries(load: Callable[[str], Any]) -> None:
    """After a rename of a local variable the code fingerprint changes and every call would
    compute; once blessed (checked on a sample), the earlier entries hit, and explain says
    why. The record (who, when, from, to) is an entry of its own in the store."""
    first = load("first")
    assert first.map(range(5), progress=False) == [1, 3, 5, 7, 9]
    renamed = load("renamed")
    assert renamed.plan(range(5)).computes == 5
    record = renamed.bless(check=[0, 3])
    assert record["from"] == [_code(first)]
    assert record["to"] != record["from"][0]
    assert {"who", "when", "function"} <= set(record)
    assert renamed.plan(range(5)).hits == 5  # (a plan sees blessed entries as a call does)
    assert renamed.map(range(5), progress=False) == [1, 3, 5, 7, 9]
    assert renamed.cache_info().misses == 0
    assert renamed.is_cached(4)
    assert "blessed: this code" in renamed.explain(4)
    assert renamed(7) == 15  # a new call computes, under the current code
    assert renamed.cache_info().misses == 1
    assert _code(renamed) == record["to"]
    store = memo.Store(Path(renamed.store.root))
    assert "memo_bless.compute" in {info.name for info in store.functions()}


def test_blessings_are_carried_on_across_edits(load: Callable[[str], Any]) -> None:
    """Blessing a second edit carries the first blessing on: entries of the first code and
    of the second both hit under the third."""
    load("first")(1)
    renamed = load("renamed")
    renamed.bless()
    renamed(7)  # stored by the second code
    refactored = load("refactored")
    record = refactored.bless(check=[1, 7])
    assert len(record["from"]) == 2
    assert [refactored(1), refactored(7)] == [3, 15]
    assert refactored.cache_info().misses == 0


def test_a_harmful_edit_is_refused_and_nothing_is_recorded(load: Callable[[str], Any]) -> None:
    """``check`` computes the sample with the current code: a differing value (or a sample
    the earlier code never stored) refuses the blessing, and the entries stay misses; with no
    entries of earlier code there is nothing to bless."""
    first = load("first")
    first.map([1, 2], progress=False)
    with pytest.raises(memo.MemoError, match="nothing to bless"):
        first.bless()  # (its entries are all of its own code)
    wrong = load("wrong")
    with pytest.raises(memo.MemoError, match="another value"):
        wrong.bless(check=[1])
    with pytest.raises(memo.MemoError, match="stored no entry"):
        wrong.bless(check=[9])
    assert not wrong.is_cached(1)
    assert wrong(1) == 4


def test_a_sample_of_the_stored_calls_is_checked(load: Callable[[str], Any]) -> None:
    """``check=N`` rebuilds N stored calls from the arguments their entries record and checks
    them: a harmful edit is caught without naming an item, a harmless one is blessed."""
    load("first").map(range(5), progress=False)
    with pytest.raises(memo.MemoError, match="another value"):
        load("wrong").bless(check=2)
    renamed = load("renamed")
    renamed.bless(check=5)
    assert renamed.map(range(5), progress=False) == [1, 3, 5, 7, 9]
    assert renamed.cache_info().misses == 0
    with pytest.raises(memo.ConfigError, match="how many stored calls"):
        renamed.bless(check=True)


def _array_version(factor: float) -> Any:
    def total(values: Any) -> float:  # (the versions differ only by the closure's value)
        return float(values.sum()) * factor

    return total


def test_a_sample_needs_calls_memo_can_rebuild(tmp_path: Path) -> None:
    """Entries record an array argument by its shape, not its values: a sample cannot be
    rebuilt from them, and the blessing is refused with what to do instead."""
    import numpy as np

    memo.decorate(_array_version(1), cache_path=tmp_path)(np.arange(3))
    second = memo.decorate(_array_version(1.0), cache_path=tmp_path)
    with pytest.raises(memo.MemoError, match=r"cannot check a sample.*check=\[\.\.\.\]"):
        second.bless(check=1)
    second.bless(check=[np.arange(3)])
    assert second(np.arange(3)) == 3.0
    assert second.cache_info().misses == 0


def test_memo_bless_on_the_command_line(
    load: Callable[[str], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``memo bless MODULE:FUNCTION --check ITEM`` (or ``--sample N``) blesses as ``f.bless``
    does; a harmful edit exits 2 with one line saying why; a target that is not memoized is
    bad usage."""
    from memo.cli import main

    load("first").map([1, 2], progress=False)
    load("wrong")
    assert main(["bless", "blessed_mod:compute", "--check", "1"]) == 2
    assert "another value" in capsys.readouterr().err
    renamed = load("renamed")
    assert main(["bless", "blessed_mod:compute", "--sample", "2", "--check", "2"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["bless", "blessed_mod:compute", "--sample", "2"]) == 0
    assert capsys.readouterr().out.startswith("blessed blessed_mod:compute: code ")
    assert renamed(1) == 3
    cache = str(Path(renamed.store.root))
    assert main(["--cache-path", cache, "--json", "ls", "memo_bless.compute"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert main(["--cache-path", cache, "--json", "show", listed["key"]]) == 0
    record = json.loads(capsys.readouterr().out)["metadata"]["blessing"]
    assert {"who", "when", "from", "to"} <= set(record)  # (memo show shows the blessing)
    assert record["to"] != record["from"][0]
    assert main(["bless", "blessed_mod:CACHE"]) == 2
    assert "not a memoized function" in capsys.readouterr().err


def _async_version(version: int) -> Any:
    async def twice(x: int) -> int:  # (the versions differ only by the closure's value)
        return x * 2 if version else x + x

    return twice


def test_an_async_function_is_blessed_by_awaiting_its_check(tmp_path: Path) -> None:
    """``check`` of an ``async def`` awaits the current code's value before comparing it."""
    import asyncio

    first = memo.decorate(_async_version(1), cache_path=tmp_path)
    assert asyncio.run(first(3)) == 6
    second = memo.decorate(_async_version(0), cache_path=tmp_path)
    second.bless(check=[3])
    assert asyncio.run(second(3)) == 6
    assert second.cache_info().misses == 0


def test_a_blessing_written_by_another_process_is_seen_within_a_minute(
    load: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that read "no blessing" at a miss reads it again once that read is a minute
    old, so a blessing another process wrote meanwhile answers its later calls."""
    load("first").map(range(3), progress=False)
    running = load("renamed")  # (the long-running process, with the edited code)
    assert running(0) == 1  # a miss: it reads that there is no blessing
    sys.modules.pop("blessed_mod", None)
    load("renamed").bless(check=[1])  # (as `memo bless` from another process)
    assert running(1) == 3
    assert running.cache_info().misses == 2  # the read of a moment ago stands
    monkeypatch.setattr("memo._calls._BLESSINGS_FRESH", 0.0)
    assert running(2) == 5
    assert running.cache_info().misses == 2  # read again: the blessing answers
