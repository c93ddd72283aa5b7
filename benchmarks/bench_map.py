"""memo's ``map`` on two worker processes against ``ProcessPoolExecutor.map`` without caching.

Both sides start a fresh two-process pool and run 1,000 trivial calls (the bar: memo's map,
which also keys, locks and stores every result, costs at most 2x the plain pool). A second
figure runs memo's map again on the same items: all cached, nothing is submitted. Rounds are
interleaved and medians reported. ``--quick`` runs fewer rounds.

Run: python benchmarks/bench_map.py [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memo


def trivial(x: int) -> int:
    """The work: nothing to speak of, so overheads are all that is measured."""
    return x * 2 + 1


def plain_pool(items: list[int], chunksize: int = 1) -> list[int]:
    """1,000 calls on a fresh two-process pool, no caching (``map``'s default chunksize 1)."""
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        return list(pool.map(trivial, items, chunksize=chunksize))


def memo_map(function: memo.Memoized[[int], int], items: list[int]) -> list[int]:
    """The same calls through memo's map on a fresh two-process pool."""
    return function.map(items, executor="processes", max_workers=2, progress=False)


def main() -> None:
    """Run the rounds and print the figures and the bar."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    options = parser.parse_args()
    rounds = 3 if options.quick else 7
    items = list(range(1000))
    root = Path(tempfile.mkdtemp(prefix="bench_map_"))
    plain: list[float] = []
    chunked: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    try:
        for index in range(rounds):
            function = memo.decorate(trivial, cache_path=root / f"round{index}", version=index)
            started = time.perf_counter()
            expected = plain_pool(items)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert plain_pool(items, chunksize=len(items) // 16) == expected
            chunked.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert memo_map(function, items) == expected
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert memo_map(function, items) == expected
            warm.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base, first, again = (statistics.median(v) for v in (plain, cold, warm))
    tuned = statistics.median(chunked)
    print(f"bench_map: {len(items)} trivial items, 2 worker processes, {rounds} rounds (medians)")
    print(f"ProcessPoolExecutor.map, no caching   {base * 1000:8.1f} ms")
    print(f"  the same with chunksize={len(items) // 16}          {tuned * 1000:8.1f} ms")
    print(f"memo map, all missing (computes+stores) {first * 1000:6.1f} ms   {first / base:.2f}x")
    print(f"memo map, all cached (loads only)     {again * 1000:8.1f} ms   {again / base:.2f}x")
    verdict = "PASS" if first / base <= 2 else "FAIL"
    print(f"bar: memo map / ProcessPoolExecutor.map = {first / base:.2f}x (<= 2x) {verdict}")


if __name__ == "__main__":
    main()
