"""Hash a 1,000,000-row, 10-column mixed-type DataFrame: ``memo.hash_args`` vs ``joblib.hash``.

Run ``python benchmarks/bench_pydata.py [ROWS]``. Rounds are interleaved and medians compared;
bar: memo at least 5x faster than joblib.hash. It also checks that copies with other memory
layouts (a copy after transposing twice, a frame rebuilt from Fortran-ordered arrays, columns
rebuilt one by one) get the same key, and that changing one value changes it.

Then, for information (no speed bar), the same frame as a polars DataFrame and an xarray
Dataset of two float grids with as many cells as the frame has rows, each checked the same
way: a two-chunk polars frame and a Fortran-ordered xarray copy hash alike, a changed value
does not.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pandas as pd
import polars as pl
import xarray as xr

import memo

ROUNDS = 5


def build(rows: int) -> pd.DataFrame:
    """Ints, floats, object strings (~10 chars), datetimes (tz-aware too), categoricals, bools."""
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, size=10)) for _ in range(5000)]
    strings = np.array(words, dtype=object)[rng.integers(0, len(words), rows)]
    start = np.datetime64("2020-01-01T00:00:00", "ns")
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "count": rng.integers(0, 1000, rows, dtype=np.int32),
            "x": rng.standard_normal(rows),
            "y": rng.random(rows).astype(np.float32),
            "name": pd.Series(strings, dtype=object),
            "when": start + rng.integers(0, 10**15, rows).astype("timedelta64[ns]"),
            "when_utc": pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC"),
            "kind": pd.Categorical(rng.choice(["red", "green", "blue", "cyan"], rows)),
            "flag": rng.random(rows) < 0.5,
            "score": pd.array(rng.integers(0, 100, rows), dtype="Int64"),
        }
    )


def build_grid(rows: int) -> xr.Dataset:
    """Two float grids (time x station) of ``rows`` cells with coordinates and attrs."""
    rng = np.random.default_rng(1)
    times, stations = max(rows // 1000, 1), 1000
    shape = (times, stations)
    return xr.Dataset(
        {
            "temperature": (("time", "station"), rng.standard_normal(shape)),
            "pressure": (("time", "station"), rng.random(shape).astype(np.float32)),
        },
        coords={
            "time": np.datetime64("2020-01-01", "h") + np.arange(times),
            "station": [f"st{i:04d}" for i in range(stations)],
            "height": ("station", rng.random(stations)),
        },
        attrs={"title": "benchmark grid", "version": 1},
    )


def _time(func: Callable[[Any], str], value: Any) -> float:
    started = time.perf_counter()
    func(value)
    return time.perf_counter() - started


def _race(label: str, value: Any) -> float:
    """Median memo / joblib times of ``value``, printed; returns joblib's time over memo's."""
    memo_times: list[float] = []
    joblib_times: list[float] = []
    for _ in range(ROUNDS):
        memo_times.append(_time(memo.hash_args, value))
        joblib_times.append(_time(joblib.hash, value))
    fast, slow = statistics.median(memo_times), statistics.median(joblib_times)
    print(
        f"{label:<7} memo.hash_args median {fast * 1000:8.1f} ms, "
        f"joblib.hash median {slow * 1000:8.1f} ms, ratio {slow / fast:.1f}x"
    )
    return slow / fast


def _others(frame: pd.DataFrame, rows: int) -> bool:
    """Time and check the polars and xarray forms; True when every key check holds."""
    polars_frame = pl.from_pandas(frame)
    _race("polars", polars_frame)
    half = rows // 2
    chunked = pl.concat([polars_frame[:half], polars_frame[half:]], rechunk=False)
    expected = memo.hash_args(polars_frame)
    polars_same = memo.hash_args(chunked) == expected
    changed = polars_frame.with_columns(polars_frame["x"].clone().scatter(half, 0.5))
    polars_differs = memo.hash_args(changed) != expected

    grid = build_grid(rows)
    _race("xarray", grid)
    fortran = grid.copy(data={name: np.asfortranarray(grid[name].values) for name in grid})
    expected = memo.hash_args(grid)
    grid_same = memo.hash_args(fortran) == expected
    bumped = grid.copy(deep=True)
    bumped["temperature"][0, 0] = bumped["temperature"][0, 0] + 1
    grid_differs = memo.hash_args(bumped) != expected
    print(
        f"polars: two chunks hash alike {polars_same}, one changed value differs {polars_differs}"
    )
    print(
        f"xarray: Fortran order hashes alike {grid_same}, one changed value differs {grid_differs}"
    )
    return polars_same and polars_differs and grid_same and grid_differs


def main(argv: list[str] | None = None) -> int:
    """Time both hashers, check layout independence and print the figures against the bar."""
    args = sys.argv[1:] if argv is None else argv
    rows = int(args[0]) if args else 1_000_000
    frame = build(rows)
    print(f"{rows:,} rows x {frame.shape[1]} columns, {frame.memory_usage(deep=True).sum():,} B")
    print(", ".join(f"{name}:{dtype}" for name, dtype in frame.dtypes.items()))
    memo_times: list[float] = []
    joblib_times: list[float] = []
    for _ in range(ROUNDS):
        memo_times.append(_time(memo.hash_args, frame))
        joblib_times.append(_time(joblib.hash, frame))
    fast, slow = statistics.median(memo_times), statistics.median(joblib_times)
    ratio = slow / fast
    print(f"memo.hash_args  median {fast * 1000:8.1f} ms")
    print(f"joblib.hash     median {slow * 1000:8.1f} ms")
    print(f"ratio {ratio:.1f}x (bar: >= 5x) {'OK' if ratio >= 5 else 'MISSED'}")

    expected = memo.hash_args(frame)
    numeric = frame[["id", "x"]].astype(np.float64)
    fortran = pd.DataFrame(np.asfortranarray(numeric.to_numpy()), columns=numeric.columns)
    layouts = {
        "copy": frame.copy(),
        "columns rebuilt": pd.DataFrame({name: frame[name].copy() for name in frame.columns}),
    }
    same = all(memo.hash_args(other) == expected for other in layouts.values())
    same = same and memo.hash_args(numeric.T.T.copy()) == memo.hash_args(numeric)
    same = same and memo.hash_args(fortran) == memo.hash_args(numeric)
    changed = frame.copy()
    changed.loc[rows // 2, "name"] = "zzzzzzzzzz"
    differs = memo.hash_args(changed) != expected
    print(f"equal keys for copies / rebuilt columns / Fortran / double transpose: {same}")
    print(f"one changed string changes the key: {differs}")
    others = _others(frame, rows)
    return 0 if ratio >= 5 and same and differs and others else 1


if __name__ == "__main__":
    raise SystemExit(main())
