"""Quickstart: memoize a slow function and watch the second call come from disk.

`simulate` below is a genuinely slow, pure-Python computation (a random walk estimate that
takes a couple of seconds). Decorated with ``@memo.cache``, its result is stored on disk the
first time; the second call, in this process or in any later run of this script, loads it in
well under a millisecond. Change the function's code, its arguments or its ``version`` and
memo recomputes; change a comment and it does not.

Run it twice: the second run hits the cache on its very first call.
"""

from __future__ import annotations

import random
import time

import memo


@memo.cache(version=1)
def simulate(steps: int, walkers: int = 200, seed: int = 7) -> dict[str, float]:
    """Mean squared distance of ``walkers`` 2-D random walks of ``steps`` steps."""
    rng = random.Random(seed)
    total = 0.0
    for _ in range(walkers):
        x = y = 0
        for _ in range(steps):
            direction = rng.randrange(4)
            if direction == 0:
                x += 1
            elif direction == 1:
                x -= 1
            elif direction == 2:
                y += 1
            else:
                y -= 1
        total += x * x + y * y
    return {"steps": steps, "mean_squared_distance": total / walkers}


def main() -> None:
    """Call the slow function twice and report both timings and where the cache lives."""
    for attempt in ("first call", "second call"):
        source = "from cache" if simulate.is_cached(20_000) else "computed"
        started = time.perf_counter()
        result = simulate(20_000)
        elapsed = time.perf_counter() - started
        print(f"{attempt:>11}: {elapsed * 1000:9.2f} ms  {source:>10}  ->  {result}")
    print(f"cache directory: {simulate.store.root}")
    print(f"entries of simulate: {len(simulate.entries())}")


if __name__ == "__main__":
    main()
