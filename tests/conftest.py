"""Shared fixtures: every test gets its own cache directory and a clean environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memo._exceptions import reset_warnings
from memo._storage._open import forget_stores

# The S3 fixtures (endpoint, bucket, url): a moto server started only by tests that use them.
pytest_plugins = ["tests.s3"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the default store at a fresh directory and clear memo's settings and warnings."""
    for name in ("MEMO_CACHE_SKIP", "MEMO_DISABLE", "MEMO_MAX_SIZE", "MEMO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMO_CACHE_DIR", str(tmp_path / "default-cache"))
    reset_warnings()
    forget_stores()  # each test starts with no store objects, as a new process would
    yield
    reset_warnings()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A cache directory for one test."""
    return tmp_path / "cache"
