"""numpy arrays: store results as ``.npy`` and memory-map big ones instead of reading them.

``serializer="npy"`` stores a result array as a standard ``.npy`` payload (header, then the
array's own bytes, written without a copy). A hit reads it back as an ordinary writable array.

``memo.NpySerializer(mmap_mode="r")`` goes further: a hit does not read the payload at all. memo
checks the entry's metadata, header, size and key, then returns an ``np.memmap`` over the entry
file, so a hit on a 100 MB array costs about as much as a hit on a tiny one, and only the pages
you touch are ever read from disk. (The payload's own digest is not checked when mapping:
hashing 100 MB would defeat the purpose. ``f.is_cached(...)`` still checks everything.)

The script runs in a temporary directory and removes it at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import memo

WORKDIR = Path(tempfile.mkdtemp(prefix="memo-numpy-"))
CACHE = WORKDIR / "cache"


@memo.cache(cache_path=CACHE, serializer="npy")
def heat_equation(size: int, steps: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Explicit finite differences for 2-D heat diffusion from a hot square (a slow-ish loop)."""
    grid = np.zeros((size, size))
    grid[size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 100.0
    for _ in range(steps):
        grid[1:-1, 1:-1] += 0.2 * (
            grid[:-2, 1:-1]
            + grid[2:, 1:-1]
            + grid[1:-1, :-2]
            + grid[1:-1, 2:]
            - 4 * grid[1:-1, 1:-1]
        )
    return grid


@memo.cache(cache_path=CACHE, serializer=memo.NpySerializer(mmap_mode="r"))
def embeddings(rows: int, dim: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A large matrix of normalized random vectors (~100 MB for 200_000 x 128 float32)."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def timed(label: str, call: Any) -> Any:
    """Run ``call()``, print how long it took, return its result."""
    started = time.perf_counter()
    result = call()
    print(f"  {label:<28} {(time.perf_counter() - started) * 1000:9.2f} ms")
    return result


def show_npy() -> None:
    """A plain npy entry: the hit is read into an ordinary, writable array."""
    print('heat_equation, serializer="npy":')
    first = timed("first call (computed)", lambda: heat_equation(300, 400))
    second = timed("second call (read)", lambda: heat_equation(300, 400))
    print(f"    equal: {np.array_equal(first, second)}, type: {type(second).__name__}")
    print(f"    writable: {second.flags.writeable}, centre: {second[150, 150]:.3f}")


def show_mapped() -> None:
    """A mapped npy entry: the hit is an np.memmap over the entry file, whatever its size."""
    print('embeddings, NpySerializer(mmap_mode="r"):')
    fresh = timed("first call (computed)", lambda: embeddings(200_000, 128))
    timed("second call (mapped)", lambda: embeddings(200_000, 128))
    mapped = timed("third call (mapped)", lambda: embeddings(200_000, 128))
    assert isinstance(mapped, np.memmap)
    print(f"    {mapped.nbytes / 2**20:.0f} MB, type: {type(mapped).__name__}")
    print(f"    mapped file: {mapped.filename}")
    print(f"    first rows equal: {np.array_equal(fresh[:1000], mapped[:1000])}")
    row = mapped[123_456]
    timed("sum one row of the mapping", lambda: float(row.sum()))


def main() -> None:
    """Compute, then hit, both functions; show what each hit returns."""
    try:
        show_npy()
        show_mapped()
        for entry in heat_equation.entries() + embeddings.entries():
            print(f"entry {Path(entry['path']).name}: serializer={entry['serializer']}")
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
