"""explain(): why a call hits or misses, named component by component."""

from __future__ import annotations

import importlib
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memo

TEMPLATE = """
import memo

def helper(x):
    return x + {helper_delta}

@memo.cache(cache_path={cache!r}, version={version})
def compute(x, scale=1):
    return helper(x) * scale + {body_delta}
"""


@pytest.fixture
def module(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A user module whose source each test rewrites and reloads (same name, new code)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "explained_mod.py"

    def load(helper_delta: int = 1, body_delta: int = 0, version: int = 1) -> Any:
        source.write_text(
            textwrap.dedent(
                TEMPLATE.format(
                    cache=str(cache_dir),
                    helper_delta=helper_delta,
                    body_delta=body_delta,
                    version=version,
                )
            )
        )
        sys.modules.pop("explained_mod", None)
        importlib.invalidate_caches()
        return importlib.import_module("explained_mod")

    yield load
    sys.modules.pop("explained_mod", None)


def test_hit_is_reported(module: Any) -> None:
    """A stored call explains as a hit."""
    mod = module()
    mod.compute(1)
    assert mod.compute.explain(1).startswith("hit:")


def test_no_entries_at_all(module: Any) -> None:
    """A function with an empty cache says so."""
    mod = module()
    text = mod.compute.explain(1)
    assert text.startswith("miss:")
    assert "no stored entries" in text


def test_changed_argument_is_named(module: Any) -> None:
    """After changing one argument, the explanation names that argument."""
    mod = module()
    mod.compute(1, scale=2)
    text = mod.compute.explain(1, scale=3)
    assert text.startswith("miss:")
    assert "argument 'scale'" in text
    assert "argument 'x'" not in text
    assert "code" not in text


def test_edited_body_is_named(module: Any) -> None:
    """After editing the function body, the explanation names the code of that function."""
    module().compute(1)
    mod = module(body_delta=5)
    text = mod.compute.explain(1)
    assert "the code fingerprint" in text
    assert "explained_mod:compute itself changed" in text
    assert "argument" not in text


def test_edited_helper_is_named(module: Any) -> None:
    """After editing a helper the function calls, the explanation names the helper."""
    module().compute(1)
    mod = module(helper_delta=2)
    text = mod.compute.explain(1)
    assert "changed: explained_mod:helper" in text
    assert "itself changed" not in text


def test_version_and_extra_key_are_named(module: Any) -> None:
    """A bumped version and a different _extra_cache_key are named."""
    module().compute(1, _extra_cache_key="a")
    mod = module(version=2)
    text = mod.compute.explain(1, _extra_cache_key="b")
    assert "version" in text
    assert "_extra_cache_key" in text


def test_nearest_entry_is_chosen(module: Any) -> None:
    """Of several entries, the one differing in the fewest components is compared."""
    mod = module()
    mod.compute(1, scale=1)
    mod.compute(2, scale=5)
    text = mod.compute.explain(2, scale=6)
    assert "argument 'scale'" in text
    assert "argument 'x'" not in text


def test_cache_info_counts(cache_dir: Path) -> None:
    """cache_info() reports hits, misses, stores and errors of this process."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        return x

    f(1)
    f(1)
    f(2)
    info = f.cache_info()
    assert (info.hits, info.misses, info.stores, info.errors) == (1, 2, 2, 0)


def test_debug_logging(cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Hits, misses and stores are logged at DEBUG with the function and a short key."""

    @memo.cache(cache_path=cache_dir)
    def f(x: int) -> int:
        return x

    with caplog.at_level("DEBUG", logger="memo"):
        f(1)
        f(1)
    messages = [record.getMessage() for record in caplog.records]
    key = f.key(1)[:12]
    assert any(m.startswith("miss") and key in m for m in messages)
    assert any(m.startswith("stored") and key in m for m in messages)
    assert any(m.startswith("hit") and key in m for m in messages)


def test_problems_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A persistent problem gives one WARNING record, not one per call."""
    blocker = tmp_path / "file"
    blocker.write_text("x")

    @memo.cache(cache_path=blocker / "cache")
    def f(x: int) -> int:
        return x

    with caplog.at_level("WARNING", logger="memo"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(50):
            f(i)
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
    assert len([w for w in caught if issubclass(w.category, memo.MemoWarning)]) == 1


def test_skip_and_async_misses_are_logged(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """cache_skip logs a skip, and async functions log their misses like sync ones."""
    import asyncio

    @memo.cache(cache_path=cache_dir, cache_skip=True)
    def skipped(x: int) -> int:
        return x

    @memo.cache(cache_path=cache_dir)
    async def fetched(x: int) -> int:
        return x

    with caplog.at_level("DEBUG", logger="memo"):
        skipped(1)
        asyncio.run(fetched(2))
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("skip") and skipped.key(1)[:12] in m for m in messages)
    assert any(m.startswith("miss") and fetched.key(2)[:12] in m for m in messages)


def test_plan_counts_hits_and_groups_the_reasons_of_misses(module: Any) -> None:
    """``f.plan(items)`` runs nothing and says how many calls would hit and why the others
    would compute, grouped: new arguments, and after a helper's edit, that helper; identical
    items count once."""
    mod = module()
    mod.compute.map(range(3), progress=False)
    plan = mod.compute.plan([0, 1, 2, 3, 4, 4])
    assert (plan.hits, plan.computes) == (3, 2)
    assert plan.reasons == {"new arguments": 2}
    assert [call.index for call in plan.calls if not call.hit] == [3, 4]
    assert str(plan).splitlines() == [
        "explained_mod:compute: 3 would hit, 2 would compute",
        "  2 new arguments",
    ]
    edited = module(helper_delta=2)
    plan = edited.compute.plan(range(4))
    assert plan.computes == 4
    (reason,) = plan.reasons
    assert "changed: explained_mod:helper" in reason
    assert edited.compute.cache_info() == (0, 0, 0, 0)  # nothing ran, nothing was loaded


def test_plan_names_version_expiry_and_an_empty_cache(module: Any, cache_dir: Path) -> None:
    """A plan says "version" after a bump, "expired by max_age" for an old entry, and "no
    stored entries" for a function with none."""
    assert module().compute.plan([1]).reasons == {"no stored entries": 1}
    module().compute(1)
    assert module(version=2).compute.plan([1]).reasons == {"version": 1}
    body = module().compute.__wrapped__
    expiring = memo.decorate(body, cache_path=cache_dir, version=1, max_age=0.01)
    time.sleep(0.05)
    assert expiring.plan([1]).reasons == {"expired by max_age": 1}


def _line_count(path: memo.File) -> int:
    return len(Path(path).read_text().splitlines())


def test_plan_names_an_input_file_whose_content_changed(tmp_path: Path) -> None:
    """A call with the same ``memo.File`` as a stored one, whose content changed since, would
    compute for "the content of argument 'path'", told apart from new arguments."""
    data = tmp_path / "data.csv"
    data.write_text("a\nb\n")
    lines = memo.decorate(_line_count, cache_path=tmp_path / "cache")
    assert lines(memo.File(data)) == 2
    data.write_text("a\nb\nc\n")
    other = tmp_path / "other.csv"
    other.write_text("x\n")
    plan = lines.plan([memo.File(data), memo.File(other)])
    assert plan.reasons == {"the content of argument 'path'": 1, "new arguments": 1}
