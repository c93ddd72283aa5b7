"""Dry runs (``memo.dry_run``, ``memo plan script.py``): calls answered from the cache or
recorded as would compute, no body of a missing call run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._dry_run import NeedsValue

ROOT = Path(__file__).resolve().parents[1]


def test_a_hit_gives_its_value_and_a_miss_runs_nothing(tmp_path: Path) -> None:
    """In a dry run a stored call returns its value; a missing one runs no body and returns a
    stand-in, counted once per key with its reason."""
    ran: list[int] = []

    @memo.cache(cache_path=tmp_path)
    def square(x: int) -> int:
        ran.append(x)
        return x * x

    square(2)
    with memo.dry_run() as run:
        assert square(2) == 4
        missing = square(3)
        again = square(3)
    assert isinstance(missing, memo.Unknown)
    assert isinstance(again, memo.Unknown)
    assert ran == [2]
    (function,) = run.reasons
    assert run.hits[function] == 1
    assert run.computes(function) == 1
    assert run.reasons[function] == {"new arguments": 1}
    assert not square.is_cached(3)


def test_a_call_given_a_stand_in_is_a_dependant(tmp_path: Path) -> None:
    """A call whose argument holds the result of a call that would compute (even inside a
    list or dict) would compute too, and says which call it depends on."""

    @memo.cache(cache_path=tmp_path)
    def load(x: int) -> int:
        return x

    @memo.cache(cache_path=tmp_path)
    def total(values: list[Any], scale: dict[str, Any]) -> int:
        raise AssertionError("never run in a dry run")

    with memo.dry_run() as run:
        first = load(1)
        result = total([first + 1, 2], {"by": first})
    assert isinstance(result, memo.Unknown)
    (name,) = [function for function in run.reasons if function.endswith("total")]
    (reason,) = run.reasons[name]
    assert reason.startswith("uses the result of ")
    assert reason.endswith("load, which would compute")
    assert "1 uses the result of" in str(run)


def test_a_chain_of_lazy_handles_plans_its_dependants(tmp_path: Path) -> None:
    """Stages chained through ``lazy`` handles: a stage that would compute gives a stand-in
    handle, and each stage after it is a dependant, for a ``def`` and an ``async def``."""

    @memo.cache(cache_path=tmp_path)
    def load(x: int) -> int:
        raise AssertionError("never run in a dry run")

    @memo.cache(cache_path=tmp_path)
    def clean(raw: memo.Lazy[int]) -> int:
        raise AssertionError("never run in a dry run")

    @memo.cache(cache_path=tmp_path)
    async def publish(cleaned: memo.Lazy[int]) -> int:
        raise AssertionError("never run in a dry run")

    async def chain() -> Any:
        handle: Any = publish.lazy(clean.lazy(load.lazy(1)))  # (awaited: an async def's)
        return await handle

    with memo.dry_run() as run:
        result = asyncio.run(chain())
    assert isinstance(result, memo.Unknown)
    reasons = {name.rpartition(".")[2]: dict(found) for name, found in run.reasons.items()}
    assert reasons["load"] == {"no stored entries": 1}
    ((clean_reason, clean_count),) = reasons["clean"].items()
    assert clean_count == 1
    assert clean_reason.startswith("uses the result of ")
    assert clean_reason.endswith(".load, which would compute")
    ((publish_reason, publish_count),) = reasons["publish"].items()
    assert publish_count == 1
    assert ".clean" in publish_reason  # (and load's: the stand-in carries both)


def test_code_that_needs_a_missing_value_stops_the_run_there(tmp_path: Path) -> None:
    """A branch on a value that would compute ends the dry run at that line; the calls before
    it are planned, the ones after it are not made."""

    @memo.cache(cache_path=tmp_path)
    def value(x: int) -> int:
        return x

    after: list[int] = []
    with memo.dry_run() as run:
        if value(1) > 0:  # (the line the run stops at)
            after.append(1)
        after.append(2)
    assert after == []
    assert run.stopped is not None
    assert "test_dry_run.py:" in run.stopped
    assert "needs the value of" in run.stopped
    assert not run.failed
    assert "the calls after it are not planned" in str(run)


def test_with_memo_disabled_every_call_would_compute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MEMO_DISABLE a real run computes every call, and a dry run says so."""

    @memo.cache(cache_path=tmp_path)
    def value(x: int) -> int:
        return x

    value(1)
    monkeypatch.setenv("MEMO_DISABLE", "1")
    disabled = memo.decorate(value.__wrapped__, cache_path=tmp_path)
    with memo.dry_run() as run:
        assert isinstance(disabled(1), memo.Unknown)
    (reasons,) = run.reasons.values()
    assert reasons == {"memo is disabled (MEMO_DISABLE)": 1}


def test_stand_ins_pass_through_arithmetic_attributes_and_printing() -> None:
    """What code does with a value without looking at it gives another stand-in."""
    unknown: Any = memo.Unknown(frozenset(["f"]))  # (its operators are made at import)
    for derived in (unknown + 1, 2 * unknown, unknown["a"], unknown.mean(axis=0), -unknown):
        assert isinstance(derived, memo.Unknown)
    assert f"{unknown:>10}" == str(unknown) == "<would compute: f>"
    for needs in (bool, len, list, int, float):
        with pytest.raises(NeedsValue):
            needs(unknown)
    assert not issubclass(NeedsValue, Exception)  # (a script's `except Exception` lets it by)


def test_map_lazy_and_refresh_in_a_dry_run(tmp_path: Path) -> None:
    """``map`` plans each item, ``lazy`` of a missing call gives a stand-in, and ``refresh``
    would always compute; none of them runs the body."""

    @memo.cache(cache_path=tmp_path)
    def double(x: int) -> int:
        if x > 1:
            raise AssertionError("never run in a dry run")
        return 2 * x

    double(1)
    with memo.dry_run() as run:
        mapped = double.map([1, 2, 3])
        handle = double.lazy(5)
        refreshed = double.refresh(1)
    assert mapped[0] == 2
    assert all(isinstance(value, memo.Unknown) for value in mapped[1:])
    assert isinstance(handle, memo.Unknown)
    assert isinstance(refreshed, memo.Unknown)
    (name,) = run.reasons
    assert run.hits[name] == 1
    assert run.reasons[name] == {"new arguments": 3, "refresh": 1}


def test_an_async_function_in_a_dry_run(tmp_path: Path) -> None:
    """An ``async def``'s call in a dry run is awaited as usual and runs no body."""

    @memo.cache(cache_path=tmp_path)
    async def fetch(x: int) -> int:
        if x > 1:
            raise AssertionError("never run in a dry run")
        return x

    async def main() -> tuple[Any, Any]:
        await fetch(1)
        with memo.dry_run():
            return await fetch(1), await fetch(2)

    stored, missing = asyncio.run(main())
    assert stored == 1
    assert isinstance(missing, memo.Unknown)


def _memo(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMO_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def _planned(*args: str, cwd: Path, cache: Path) -> list[str]:
    """The lines ``memo plan`` prints (it exits 0)."""
    planned = _memo("-m", "memo", "plan", *args, cwd=cwd, cache=cache)
    assert planned.returncode == 0, planned.stderr
    return planned.stdout.splitlines()


def test_memo_plan_on_the_quickstart_example_after_an_edit(tmp_path: Path) -> None:
    """``memo plan`` on examples/quickstart.py: after a run, both calls would hit; after its
    ``version`` is raised, the call would compute, because of the version, and planning it
    stores nothing."""
    script = tmp_path / "quickstart.py"
    script.write_text((ROOT / "examples" / "quickstart.py").read_text())
    cache = tmp_path / "cache"
    assert _memo(str(script), cwd=tmp_path, cache=cache).returncode == 0
    lines = _planned("quickstart.py", cwd=tmp_path, cache=cache)
    assert "__main__:simulate: 2 would hit, 0 would compute" in lines
    script.write_text(
        script.read_text().replace("@memo.cache(version=1)", "@memo.cache(version=2)")
    )
    planned = _memo("-m", "memo", "plan", "--json", "quickstart.py", cwd=tmp_path, cache=cache)
    assert planned.returncode == 0, planned.stderr
    found = json.loads(planned.stdout)
    assert found["functions"]["__main__:simulate"] == {
        "hits": 0,
        "computes": 1,
        "reasons": {"version": 1},
    }
    assert found["stopped"] is None
    assert len(memo.Store(cache).entries()) == 1  # (nothing computed, nothing stored)
    elsewhere = _planned("--cache-path", str(cache), "quickstart.py", cwd=tmp_path, cache=tmp_path)
    assert "__main__:simulate: 0 would hit, 1 would compute" in elsewhere
    assert "  1 version" in elsewhere  # (the entry found in --cache-path, not MEMO_CACHE_DIR)


def test_memo_plan_names_the_helper_that_changed_and_the_dependants(tmp_path: Path) -> None:
    """``memo plan`` tells new arguments apart from an edit of a helper (named), and says
    that the call fed their results would compute too."""
    (tmp_path / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
    script = tmp_path / "pipeline.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys

            import helpers
            import memo


            @memo.cache
            def step(x):
                return helpers.scale(x)


            @memo.cache
            def total(values):
                return sum(values)


            count = int(sys.argv[1])
            print(total([step(x) for x in range(count)]))
            """
        )
    )
    cache = tmp_path / "cache"
    ran = _memo(str(script), "3", cwd=tmp_path, cache=cache)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "6"
    lines = _planned("pipeline.py", "4", cwd=tmp_path, cache=cache)
    assert "__main__:step: 3 would hit, 1 would compute" in lines
    assert "  1 new arguments" in lines
    assert "__main__:total: 0 would hit, 1 would compute" in lines
    assert "  1 uses the result of __main__:step, which would compute" in lines
    assert "<would compute: __main__:step, __main__:total>" in lines  # (what it printed)
    (tmp_path / "helpers.py").write_text("def scale(x):\n    return x * 3\n")
    lines = _planned("pipeline.py", "3", cwd=tmp_path, cache=cache)
    assert "__main__:step: 0 would hit, 3 would compute" in lines
    assert "  3 the code fingerprint (changed: helpers:scale)" in lines
    assert "  1 uses the result of __main__:step, which would compute" in lines
    assert len(memo.Store(cache).entries()) == 4  # (the plans stored nothing)
    assert _memo(str(script), "3", cwd=tmp_path, cache=cache).stdout.strip() == "9"


def test_memo_plan_of_a_script_that_fails_says_where_and_exits_1(tmp_path: Path) -> None:
    """A script that raises an error of its own ends its plan there, with exit code 1."""
    (tmp_path / "broken.py").write_text("import memo\n\nraise ValueError('bad input')\n")
    planned = _memo("-m", "memo", "plan", "broken.py", cwd=tmp_path, cache=tmp_path / "c")
    assert planned.returncode == 1
    assert "stopped at broken.py:3: ValueError: bad input" in planned.stdout
    missing = _memo("-m", "memo", "plan", "nothere.py", cwd=tmp_path, cache=tmp_path / "c")
    assert missing.returncode == 2
    assert "is not a file" in missing.stderr
