"""A first end-to-end check: a result is computed once and then read from disk."""

from __future__ import annotations

from pathlib import Path

import memo


def test_second_call_hits(cache_dir: Path) -> None:
    """The body runs once; the second call returns the stored value."""
    calls = []

    @memo.cache(cache_path=cache_dir)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(4) == 16
    assert square(4) == 16
    assert calls == [4]
