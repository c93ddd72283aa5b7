"""Build a cache directory of 100,000 real entries, for timing the ``memo`` command on it.

Run ``python benchmarks/make_big_cache.py [DIRECTORY] [--entries N]`` (default: 100,000 entries
in ``<temp dir>/memo-big-cache``; about a minute). Entries are written by memoized functions
through memo's own write path: five functions, results of 100 B to 4 KB, created (and last
used) in call order. Entries already there are kept, so running it again tops the cache up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import memo

ENTRIES = 100_000
DEFAULT_DIRECTORY = Path(tempfile.gettempdir()) / "memo-big-cache"


def simulate(i: int) -> bytes:
    """A result of 100 B to about 4 KB."""
    return b"s" * (100 + i % 4000)


def train(i: int) -> bytes:
    """A result of 100 B to about 2 KB."""
    return b"t" * (100 + i % 2000)


def features(i: int) -> list[int]:
    """A small list."""
    return list(range(i % 50))


def load_table(i: int) -> dict[str, int]:
    """A small dict."""
    return {"row": i, "size": i % 1000}


def render(i: int) -> str:
    """A short string."""
    return f"frame {i}" * (1 + i % 20)


FUNCTIONS: list[Callable[[int], object]] = [simulate, train, features, load_table, render]


def build(directory: Path, entries: int = ENTRIES) -> float:
    """Store ``entries`` results in ``directory``; returns the seconds it took."""
    os.environ.pop("MEMO_MAX_SIZE", None)  # a budget would evict as we write
    memoized = [memo.decorate(func, cache_path=directory) for func in FUNCTIONS]
    started = time.perf_counter()
    for i in range(entries):
        memoized[i % len(memoized)](i)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Build the cache directory named on the command line (or the default one)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--entries", type=int, default=ENTRIES)
    args = parser.parse_args(argv)
    seconds = build(args.directory, args.entries)
    count = sum(1 for name in os.listdir(args.directory) if name.endswith(".memo"))
    print(f"{args.directory}: {count:,} entries ({seconds:.1f} s to build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
