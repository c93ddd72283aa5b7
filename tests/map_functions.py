"""Module-level functions for map tests: importable by worker processes and dask workers."""

from __future__ import annotations

import os
from pathlib import Path

import memo


def _record(x: int) -> None:
    log = Path(os.environ.get("MEMO_TEST_MAP_LOG", os.devnull))
    with open(log, "a") as handle:
        handle.write(f"{x} {os.getpid()}\n")


@memo.cache
def square(x: int) -> int:
    """x squared, logging each computation (item and pid) to MEMO_TEST_MAP_LOG."""
    _record(x)
    return x * x


@memo.cache
def fragile(x: int) -> int:
    """Fails for multiples of 7."""
    _record(x)
    if x % 7 == 0:
        raise ValueError(f"{x} is a multiple of 7")
    return x + 1


@memo.cache
def crashing(x: int) -> int:
    """Kills its worker process for negative items."""
    if x < 0:
        os._exit(3)
    return x
