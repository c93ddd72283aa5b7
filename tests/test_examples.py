"""Every script in examples/ runs cleanly in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def run(script: Path, cache: Path) -> str:
    """Run one example with its own cache directory and return what it printed."""
    env = {**os.environ, "MEMO_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    """The example exits 0 and prints something."""
    assert run(script, tmp_path / "cache").strip()


def test_quickstart_second_run_hits(tmp_path: Path) -> None:
    """Run twice, the quickstart's slow function is computed only by the first run."""
    script = next(path for path in EXAMPLES if path.stem == "quickstart")
    first = run(script, tmp_path / "cache")
    second = run(script, tmp_path / "cache")
    assert str(tmp_path / "cache") in first
    assert "entries of simulate: 1" in second
    assert "computed" in first.splitlines()[0]
    assert "from cache" in first.splitlines()[1]
    assert "from cache" in second.splitlines()[0]
