"""A project-local cache keyed by file contents and by a custom type.

This is genno's standalone pattern: ``partial(memo.decorate, cache_path=...)`` makes a
decorator bound to one directory. The loader below is keyed on the *contents* of its input
file through ``_extra_cache_key=memo.hash_contents(path)`` (or, equivalently, by passing
``memo.File(path)``), so editing the file triggers a recompute while touching it or renaming
it does not. ``memo.Encoder.register`` teaches memo how to key a user type (``Region``) by
the fields that define it.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import memo

WORKDIR = Path(tempfile.mkdtemp(prefix="memo-example-"))
mycache = partial(memo.decorate, cache_path=WORKDIR / "cache")


class Region:
    """A user type: memo cannot guess which attributes matter, so we tell it."""

    def __init__(self, name: str, scale: float) -> None:
        self.name = name
        self.scale = scale
        self.opened_at = time.time()  # irrelevant to results: left out of the key


@memo.Encoder.register
def _encode_region(region: Region) -> tuple[str, float]:
    return (region.name, region.scale)


@mycache
def load_totals(path: Path, region: Region, _extra_cache_key: str | None = None) -> float:
    """Sum a CSV column and scale it (pretend this is a slow parse of a huge file)."""
    time.sleep(0.5)
    with open(path, newline="") as handle:
        return region.scale * sum(float(row["value"]) for row in csv.DictReader(handle))


@mycache
def row_count(path: memo.File) -> int:
    """Count rows; ``memo.File`` keys the call on the file's bytes automatically."""
    with open(path) as handle:
        return sum(1 for _ in handle) - 1


def timed(label: str, path: Path, region: Region) -> None:
    """Call the loader keyed on the file's contents and report the time."""
    started = time.perf_counter()
    total = load_totals(path, region, _extra_cache_key=memo.hash_contents(path))
    print(f"{label:<28} total={total:8.1f}  {1000 * (time.perf_counter() - started):7.1f} ms")


def main() -> None:
    """Walk through first load, hit, unrelated change, content change."""
    data = WORKDIR / "measurements.csv"
    data.write_text("value\n1\n2\n3\n")
    region = Region("north", 10.0)
    timed("first load (miss)", data, region)
    timed("same file (hit)", data, region)
    timed("new Region, same fields", data, Region("north", 10.0))
    data.write_text("value\n1\n2\n3\n4\n")
    timed("file contents changed", data, region)
    print("rows:", row_count(memo.File(data)), "| cached:", row_count.is_cached(memo.File(data)))
    print(f"cache directory: {WORKDIR / 'cache'} (removed now that the example is done)")
    shutil.rmtree(WORKDIR)


if __name__ == "__main__":
    main()
