"""A three-stage pandas pipeline (load -> clean -> aggregate) stored as Parquet and chained lazily.

Each stage is memoized with ``serializer="parquet"``, so its DataFrame is stored as a plain
Parquet file (typed columns and index kept; any Parquet reader can open the payload).

The stages are chained through ``memo.Lazy`` handles instead of DataFrames::

    raw = load.lazy(path)            # reads only the entry's header (computes on a miss)
    cleaned = clean.lazy(raw)        # keyed on raw's fingerprint, not on its contents
    summary = aggregate(cleaned)     # keyed on cleaned's fingerprint

A ``Lazy`` is part of the next stage's key through the fingerprint of the stored value, so
when the last stage is cached, the second run never loads (or even reads) the earlier stages'
DataFrames: each stage's ``.load()`` only runs inside a stage that actually has to compute. And
when an input change does not change a stage's output (the third run edits a reading that
``clean`` drops), the next stage's key is unchanged and it hits. The counters printed
(``hits`` and ``misses`` of each memoized function) show it.

The input is a CSV written to a temporary directory; the cache lives there too.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import memo

WORKDIR = Path(tempfile.mkdtemp(prefix="memo-pandas-"))
parquet_cache = memo.cache(cache_path=WORKDIR / "cache", serializer="parquet")


@parquet_cache
def load(path: memo.File) -> pd.DataFrame:
    """Parse the raw CSV (keyed on the file's contents through ``memo.File``)."""
    print("    load: parsing", Path(path).name)
    return pd.read_csv(path, parse_dates=["time"])


@parquet_cache
def clean(raw: memo.Lazy[pd.DataFrame]) -> pd.DataFrame:
    """Drop broken readings and normalize station names."""
    print("    clean: loading the raw table and cleaning it")
    frame = raw.load()
    frame = frame.dropna(subset=["temperature"])
    frame = frame[frame["temperature"].between(-60, 60)]
    frame = frame.assign(station=frame["station"].str.strip().str.title())
    return frame.reset_index(drop=True)


@parquet_cache
def aggregate(cleaned: memo.Lazy[pd.DataFrame]) -> pd.DataFrame:
    """Daily mean, min and max temperature per station."""
    print("    aggregate: loading the clean table and aggregating it")
    frame = cleaned.load()
    daily = frame.assign(day=frame["time"].dt.floor("D"))
    return daily.groupby(["station", "day"])["temperature"].agg(["mean", "min", "max"])


def write_input(path: Path) -> None:
    """A noisy CSV of hourly readings from a few stations, with some broken rows."""
    rng = np.random.default_rng(42)
    hours = pd.date_range("2024-01-01", periods=24 * 30, freq="h")
    stations = [" oslo", "BERGEN ", "tromsø"]
    rows = len(hours) * len(stations)
    temperature = rng.normal(2.0, 6.0, rows)
    temperature[rng.integers(0, rows, 40)] = 999.0  # a sensor glitch
    temperature[rng.integers(0, rows, 40)] = np.nan  # missing readings
    frame = pd.DataFrame(
        {
            "time": np.repeat(hours, len(stations)),
            "station": stations * len(hours),
            "temperature": temperature,
        }
    )
    frame.to_csv(path, index=False)


def run_pipeline(path: Path) -> pd.DataFrame:
    """The whole pipeline, stages chained through lazy handles."""
    raw = load.lazy(memo.File(path))
    cleaned = clean.lazy(raw)
    return aggregate(cleaned)


STAGES: tuple[memo.Memoized[..., pd.DataFrame], ...] = (load, clean, aggregate)


def run_and_count(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Run the pipeline; report, per stage, whether it ran and whether its result was read."""
    before = [(stage.hits, stage.misses) for stage in STAGES]
    result = run_pipeline(path)
    report = {}
    for stage, (hits, misses) in zip(STAGES, before, strict=True):
        ran, read = stage.misses - misses, stage.hits - hits
        report[stage.__name__] = f"ran {ran}x, read from cache {read}x"
    for name, line in report.items():
        print(f"  {name:>9}: {line}")
    return result, report


def main() -> None:
    """Run the pipeline twice on the same input, then once after the input changed."""
    try:
        data = WORKDIR / "readings.csv"
        write_input(data)

        print("first run (cold cache):")
        first, _ = run_and_count(data)

        print("second run (same input):")
        second, report = run_and_count(data)
        pd.testing.assert_frame_equal(first, second)
        assert report["load"] == report["clean"] == "ran 0x, read from cache 0x"
        print("  -> only the final table was read; load and clean were neither run nor loaded")

        print("third run (a glitched reading changed, 999 -> 555: clean drops it anyway):")
        text = data.read_text()
        assert ",999.0\n" in text
        data.write_text(text.replace(",999.0\n", ",555.0\n", 1))
        _, report = run_and_count(data)
        assert report["aggregate"] == "ran 0x, read from cache 1x"
        print("  -> clean's new output has the same fingerprint, so aggregate still hits")

        print("fourth run (a real reading changed):")
        lines = data.read_text().splitlines()
        lines[1] = lines[1].rsplit(",", 1)[0] + ",-3.5"
        data.write_text("\n".join(lines) + "\n")
        fourth, _ = run_and_count(data)

        print("\nsummary (first rows):")
        print(fourth.head(4).round(2).to_string())
        kinds = {entry["serializer"] for stage in STAGES for entry in stage.entries()}
        count = sum(len(stage.entries()) for stage in STAGES)
        print(f"\n{count} entries ({', '.join(sorted(kinds))}) in {load.store.root}")
    finally:
        shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
