"""Results benchmark: large numpy results and tables stored and loaded, signed hits, lazy chains.

Run ``python benchmarks/bench_results.py`` (a few minutes) or ``--quick`` (well under a minute).
It imports ``bench_core`` from this directory (the floor, the peers' decorators and the table
helpers), so run it as a script. Everything runs in one process; every contender gets its own
directory under one temporary root (``--tmpdir``, default the system temp dir; here ``/tmp``,
on the same disk as the repository), removed at the end.

(1) One large float64 result, ``np.random.default_rng(0).random(n)`` (400 MB; 40 MB with
    ``--quick``), computed once and held in a module-level global. The memoized body
    ``array_body(i)`` only returns that global, so a call with a new ``i`` is a miss whose
    time is all storing, and the same ``i`` again is a hit whose time is all loading. The
    whole call is timed. Contenders:

    - ``np.save/load``: the baseline, ``np.save(path, arr)`` and ``np.load(path)``;
    - ``memo npy``: ``memo.decorate(array_body, cache_path=dir, serializer="npy")``;
    - ``memo mmap``: ``serializer=memo.NpySerializer(mmap_mode="r")``, whose hit maps the
      file instead of reading it;
    - ``memo pickle``: memo's default serializer;
    - ``joblib``, ``diskcache``, ``cachier``: as in ``bench_core`` (joblib.Memory with its
      defaults, ``diskcache.Cache(dir).memoize()``, cachier's pickle backend with
      ``separate_files=True``), for context, in fewer rounds.

    Per contender and round: store (miss), warm hit, then cold hit, then its files are deleted.
    Page cache: no contender fsyncs, so a store is timed to the page cache, and a warm hit
    reads the file just written from the page cache. Before each store and each cold hit the
    dirty pages are flushed (``os.sync``, not timed); before a cold hit the page cache is also
    dropped (``echo 1 > /proc/sys/vm/drop_caches``, needs root; without it only warm hits are
    reported), so the cold hit reads from the disk. Deleting each contender's files before the
    next one runs keeps the page cache (and the free memory) the same for everyone. Every
    store must run the body exactly once and every hit not at all, and every loaded value is
    checked with ``np.array_equal`` against the original (outside the timing), so nothing is
    faked. Each contender's first call (before any round, with a 16-element array) pays for
    one-time work: imports, directories, and memo's code fingerprint, which covers the values
    of globals the body reads (so it would hash the whole array once). diskcache's entries
    are removed with ``Cache.clear()``: with only the files deleted, its rows would pass its
    default 1 GB size limit and it would cull every entry, the new one included.

    Memory: this VM hands memory that stayed free for about two seconds back to the host
    (virtio-balloon free page reporting), and touching it again costs about 3 s per GB
    instead of 0.15, which swung single timings by up to 10x. So right before each timed step
    the benchmark touches and frees 2.5 times the array's size (not timed): the step's
    allocations then get memory that is backed, as on an ordinary machine. One unrecorded
    warm-up round with the large array comes first, and medians are reported.

    Rounds are interleaved: in each round every contender runs once, in a rotating order; the
    peers only take part in the first few rounds. Ratios to the baseline are throughput
    ratios (``np`` time / contender time, above 1 is faster than numpy), paired: the median
    over rounds of the ratio within the same round. For ``memo mmap`` the hit is reported as
    a percentage of the ``np.load`` time of the same round.

(2) Hit latency with small arguments, ``f(1, "abc", 2.5)`` as in ``bench_core`` scenario (a):
    the floor (``bench_core.Floor``: xxh3_128 of ``pickle.dumps(args)``, one file per key,
    ``open`` + ``pickle.load`` on a hit), ``memo`` with its defaults, and ``memo signed`` with
    ``secret_key=...`` (every hit also checks an HMAC-SHA256 signature). Interleaved rounds of
    a batch of calls each; median per-call microseconds; paired ratios.

(3) Lazy chain: ``f`` (memo, default serializer) returns the large array; ``g(lz)`` returns
    ``float(lz.load().sum())`` and ``g2(arr)`` returns ``float(arr.sum())``, both memoized.
    Timed, after a first call that fills every cache: ``g(f.lazy(x))`` (``f.lazy`` reads only
    the entry's header; ``g`` is keyed on the fingerprint, so a hit in ``g`` never loads
    ``f``'s value) against ``g2(f(x))`` (``f`` loads the array, ``g2`` hashes it for its key).
    Interleaved rounds, warm page cache, medians; ``f``'s hit counter shows how often ``f``'s
    value was loaded during the lazy calls (it should be 0). As in (1), ``f``'s one-time code
    fingerprint is taken while the global holds a tiny array. The first calls are shown too:
    the lazy chain's runs ``f`` (store), then ``g``, which loads ``f``'s value; the eager
    chain's then loads ``f``'s value, hashes it and runs ``g2``.

(4) Tables: a DataFrame of 4,000,000 rows (int64, float64, float32; 400,000 with ``--quick``)
    stored with ``to_parquet`` and loaded with ``read_parquet`` (warm), against memo's
    ``parquet`` serializer, whose value is the same kind of file; interleaved rounds.

Bars: ``memo npy`` store and load >= 0.8x numpy; ``memo parquet`` store >= 0.8x and load
>= 0.45x pandas (its ratio before tables were kept as plain files); ``memo mmap`` hit < 1% of
``np.load``; ``memo pickle`` store and load >= 0.7x numpy; small-argument hit memo/floor <= 1.3x and
signed/unsigned <= 1.3x. The load bars are checked for warm and for cold reads. The bars are
set for the full run's 400 MB: with ``--quick``'s 40 MB the fixed cost of a hit weighs ten
times more (the mmap bar fails there by design), so quick verdicts are only indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from bench_core import Floor, _num, _reason, _table, _verdict, build, small_body

import memo

Array = npt.NDArray[np.float64]
Func = Callable[..., Any]
SECRET = "0123456789abcdef0123"
DROP_CACHES = "/proc/sys/vm/drop_caches"
BIG_FILE = 1 << 20  # files at least this large are a contender's stored array
PREFAULT_FACTOR = 2.5  # memory touched before each timed step, in units of the array's size
WARM_UP_ARG = 1_000_000  # the argument of the first (tiny) calls; rounds use -1, 0, 1, ...

# The result every array body returns, and how often a body ran (to prove hits and misses).
PAYLOAD: list[Array] = [np.zeros(8)]
BODY_RUNS = [0]


def array_body(i: int) -> Array:
    """Scenario (1): "compute" result ``i``: count the run, return the precomputed array."""
    BODY_RUNS[0] += 1
    return PAYLOAD[0]


def chain_source(x: int) -> Array:
    """Scenario (3): the expensive first step of the chain (returns the large array)."""
    BODY_RUNS[0] += 1
    return PAYLOAD[0]


def chain_lazy(lz: memo.Lazy[Array]) -> float:
    """Scenario (3): the second step, taking a lazy handle and loading it only on a miss."""
    return float(lz.load().sum())


def chain_eager(arr: Array) -> float:
    """Scenario (3): the same second step, taking the array itself."""
    return float(arr.sum())


@dataclass
class Settings:
    """Sizes of one run (full or quick)."""

    array_mb: int
    rounds: int
    peer_rounds: int
    hit_rounds: int
    hit_calls: int
    chain_rounds: int
    table_rows: int


FULL = Settings(
    array_mb=400,
    rounds=9,
    peer_rounds=3,
    hit_rounds=200,
    hit_calls=300,
    chain_rounds=9,
    table_rows=4_000_000,
)
QUICK = Settings(
    array_mb=40,
    rounds=7,
    peer_rounds=2,
    hit_rounds=40,
    hit_calls=200,
    chain_rounds=5,
    table_rows=400_000,
)
TABLE: list[Any] = [None]  # scenario (4)'s DataFrame, made once


def table_body(i: int) -> Any:
    """Scenario (4)'s memoized body: only returns the table (a miss is all storing)."""
    return TABLE[0]


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Series:
    """Per-round figures (seconds) of one contender in one measurement, keyed by round."""

    samples: dict[int, float] = field(default_factory=dict)
    failure: str = ""

    @property
    def median(self) -> float | None:
        """Median over rounds, or None when the contender failed or has no samples."""
        if self.failure or not self.samples:
            return None
        return statistics.median(self.samples.values())

    @property
    def best(self) -> float | None:
        """The fastest round."""
        return None if self.median is None else min(self.samples.values())

    @property
    def spread(self) -> float | None:
        """Interquartile range over rounds as a fraction of the median (a noise indicator)."""
        middle = self.median
        if middle is None or len(self.samples) < 2 or middle == 0:
            return None
        low, _, high = statistics.quantiles(self.samples.values(), n=4)
        return (high - low) / middle

    def paired(self, base: Series) -> float | None:
        """Median over the rounds both ran of (this round's figure / ``base``'s)."""
        if self.median is None or base.median is None:
            return None
        common = sorted(set(self.samples) & set(base.samples))
        if not common:
            return None
        return statistics.median(self.samples[r] / base.samples[r] for r in common)

    def speed(self, base: Series) -> float | None:
        """Throughput relative to ``base``: median over common rounds of base time / mine."""
        if self.median is None or base.median is None:
            return None
        common = sorted(set(self.samples) & set(base.samples))
        if not common:
            return None
        return statistics.median(base.samples[r] / self.samples[r] for r in common)


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or value == 0:
        return None
    return base / value


def drop_page_cache() -> bool:
    """Flush dirty pages and drop the clean page cache; False when not allowed (not root)."""
    os.sync()
    try:
        with open(DROP_CACHES, "w") as control:
            control.write("1\n")
    except OSError:
        return False
    return True


def remove_big_files(directory: str) -> None:
    """Delete every file of at least ``BIG_FILE`` bytes under ``directory`` (stored arrays)."""
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if os.lstat(path).st_size >= BIG_FILE:
                    os.unlink(path)


def prefault(nbytes: float) -> None:
    """Touch ``nbytes`` of fresh memory and free it, right before a timed step (see the module
    docstring): the step's allocations then get memory the VM backs, as on a plain machine."""
    gc.collect()
    scratch = np.ones(int(nbytes) // 8)
    del scratch


# --- scenario (1): the large result ----------------------------------------------------------


@dataclass
class Writer:
    """One contender of scenario (1): how it stores result ``i``, loads it, and where."""

    name: str
    store: Callable[[int], Any]
    load: Callable[[int], Any]
    directory: str
    rounds: int
    close: Callable[[], None] = lambda: None
    clear: Callable[[], None] = lambda: None  # drops the stored result (besides its files)
    store_s: Series = field(default_factory=Series)
    warm_s: Series = field(default_factory=Series)
    cold_s: Series = field(default_factory=Series)
    kind: str = ""

    @property
    def failure(self) -> str:
        """Why this contender has no figures, if it failed."""
        return self.store_s.failure

    def fail(self, reason: str) -> None:
        """Mark every measurement of this contender as failed."""
        for series in (self.store_s, self.warm_s, self.cold_s):
            series.failure = reason


def _numpy_writer(directory: str, rounds: int) -> Writer:
    os.makedirs(directory, exist_ok=True)

    def store(i: int) -> None:
        np.save(f"{directory}/{i}.npy", array_body(i))

    def load(i: int) -> Any:
        return np.load(f"{directory}/{i}.npy")

    return Writer("np.save/load", store, load, directory, rounds)


def make_writers(root: str, settings: Settings) -> list[Writer]:
    """Build every contender of scenario (1) and warm it up with a tiny array."""
    writers = [_numpy_writer(os.path.join(root, "numpy"), settings.rounds)]
    memos: list[tuple[str, dict[str, Any]]] = [
        ("memo npy", {"serializer": "npy"}),
        ("memo mmap", {"serializer": memo.NpySerializer(mmap_mode="r")}),
        ("memo pickle", {}),
    ]
    for name, options in memos:
        directory = os.path.join(root, name.replace(" ", "_"))
        wrapper = memo.decorate(array_body, cache_path=directory, **options)
        writers.append(Writer(name, wrapper, wrapper, directory, settings.rounds))
    for name in ("joblib", "diskcache", "cachier"):
        directory = os.path.join(root, name)
        writer = Writer(name, array_body, array_body, directory, settings.peer_rounds)
        try:
            if name == "diskcache":
                # As bench_core builds it, keeping the Cache to clear it: deleting only the
                # value files would leave their rows, and past its 1 GB default size limit
                # diskcache culls every entry, the new one included.
                import diskcache

                store = diskcache.Cache(directory)
                peer = store.memoize()(array_body)
                writer.close, writer.clear = store.close, store.clear
            else:
                peer = build(name, array_body, directory, [])
        except Exception as exc:
            writer.fail(_reason(exc))
        else:
            writer.store = writer.load = peer
        writers.append(writer)
    tiny = np.arange(16, dtype=np.float64)
    saved, PAYLOAD[0] = PAYLOAD[0], tiny
    try:
        for writer in writers:
            if writer.failure:
                continue
            try:  # first calls: code hashing, directory set-up, imports
                writer.store(WARM_UP_ARG)
                _check_array(writer.load(WARM_UP_ARG), tiny)
            except Exception as exc:
                writer.fail(_reason(exc))
    finally:
        PAYLOAD[0] = saved
    return writers


def _check_array(value: Any, expected: Array) -> None:
    if not isinstance(value, np.ndarray) or not np.array_equal(value, expected):
        raise ValueError(f"wrong value: {type(value).__name__}")


def measure(writer: Writer, i: int, cold: bool) -> tuple[float, float, float | None, str]:
    """Store result ``i``, load it warm, then (if ``cold``) cold; returns the seconds and the
    type of the loaded value. Deletes the contender's stored result afterwards."""
    expected = PAYLOAD[0]
    scratch = PREFAULT_FACTOR * expected.nbytes
    try:
        os.sync()
        prefault(scratch)
        runs = BODY_RUNS[0]
        started = time.perf_counter()
        writer.store(i)
        stored = time.perf_counter() - started
        if BODY_RUNS[0] != runs + 1:
            raise ValueError(f"store ran the body {BODY_RUNS[0] - runs} times")
        prefault(scratch)
        started = time.perf_counter()
        value = writer.load(i)
        warm = time.perf_counter() - started
        kind = type(value).__name__
        _check_array(value, expected)
        del value
        cold_seconds = None
        if cold:
            drop_page_cache()
            prefault(scratch)
            started = time.perf_counter()
            value = writer.load(i)
            cold_seconds = time.perf_counter() - started
            _check_array(value, expected)
            del value
        if BODY_RUNS[0] != runs + 1:
            raise ValueError("a hit ran the body")
        return stored, warm, cold_seconds, kind
    finally:
        gc.collect()
        with contextlib.suppress(Exception):
            writer.clear()
        remove_big_files(writer.directory)


def scenario_arrays(root: str, settings: Settings, cold: bool) -> tuple[list[Writer], int]:
    """(1) Store and load the large array with every contender, interleaved."""
    PAYLOAD[0] = np.random.default_rng(0).random(settings.array_mb * 1_000_000 // 8)
    writers = make_writers(os.path.join(root, "arrays"), settings)
    try:
        for number in range(-1, settings.rounds):  # round -1: the unrecorded warm-up
            active = [w for w in writers if not w.failure and number < w.rounds]
            shift = number % len(active) if active else 0
            for writer in active[shift:] + active[:shift]:
                try:
                    stored, warm, cold_seconds, kind = measure(writer, number, cold)
                except Exception as exc:
                    writer.fail(_reason(exc))
                    continue
                writer.kind = kind
                if number < 0:
                    continue
                writer.store_s.samples[number] = stored
                writer.warm_s.samples[number] = warm
                if cold_seconds is not None:
                    writer.cold_s.samples[number] = cold_seconds
    finally:
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()
    return writers, PAYLOAD[0].nbytes


# --- scenario (2): small-argument hits -------------------------------------------------------


def scenario_hits(root: str, settings: Settings) -> dict[str, Series]:
    """(2) Hit latency with small arguments: floor, memo, memo signed; seconds per call."""
    args: tuple[Any, ...] = (1, "abc", 2.5)
    expected = small_body(*args)
    wrappers: dict[str, Func] = {
        "floor": Floor(small_body, os.path.join(root, "hits", "floor")),
        "memo": memo.decorate(small_body, cache_path=os.path.join(root, "hits", "memo")),
        "memo signed": memo.decorate(
            small_body, cache_path=os.path.join(root, "hits", "signed"), secret_key=SECRET
        ),
    }
    series = {name: Series() for name in wrappers}
    for name, wrapper in wrappers.items():
        for _ in range(2):
            try:
                if wrapper(*args) != expected:
                    raise ValueError("wrong value")
            except Exception as exc:
                series[name].failure = _reason(exc)
    names = [name for name in wrappers if not series[name].failure]
    calls = settings.hit_calls
    for number in range(settings.hit_rounds):
        shift = number % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            wrapper = wrappers[name]
            started = time.perf_counter()
            for _ in range(calls):
                wrapper(*args)
            series[name].samples[number] = (time.perf_counter() - started) / calls
    return series


# --- scenario (3): the lazy chain ------------------------------------------------------------


@dataclass
class Chain:
    """Outcome of scenario (3)."""

    lazy: Series = field(default_factory=Series)
    eager: Series = field(default_factory=Series)
    lazy_first: float = 0.0
    eager_first: float = 0.0
    source_loads: int = 0
    problems: list[str] = field(default_factory=list)


def scenario_chain(root: str, settings: Settings) -> Chain:
    """(3) ``g(f.lazy(x))`` against ``g2(f(x))`` when ``g``/``g2`` hit."""
    directory = os.path.join(root, "chain")
    source = memo.decorate(chain_source, cache_path=directory)
    lazy_step = memo.decorate(chain_lazy, cache_path=directory)
    eager_step = memo.decorate(chain_eager, cache_path=directory)
    expected = float(PAYLOAD[0].sum())
    x = 3
    chain = Chain()
    saved, PAYLOAD[0] = PAYLOAD[0], np.arange(16, dtype=np.float64)
    try:  # memo's one-time code fingerprint of f covers PAYLOAD: take it on a tiny array
        source.key(x)
    finally:
        PAYLOAD[0] = saved

    def run_lazy() -> float:
        return lazy_step(source.lazy(x))

    def run_eager() -> float:
        return eager_step(source(x))

    runs: dict[str, Callable[[], float]] = {"lazy": run_lazy, "eager": run_eager}
    figures = {"lazy": chain.lazy, "eager": chain.eager}
    for name, run in runs.items():  # first calls: fill f's, g's and g2's entries
        started = time.perf_counter()
        value = run()
        seconds = time.perf_counter() - started
        if name == "lazy":
            chain.lazy_first = seconds
        else:
            chain.eager_first = seconds
        if value != expected:
            chain.problems.append(f"{name}: wrong value {value!r}")
    if source.misses != 1:
        chain.problems.append(f"f ran {source.misses} times")
    names = list(runs)
    for number in range(settings.chain_rounds):
        for name in names[number % 2 :] + names[: number % 2]:
            prefault(PREFAULT_FACTOR * PAYLOAD[0].nbytes)
            hits = source.hits
            started = time.perf_counter()
            value = runs[name]()
            figures[name].samples[number] = time.perf_counter() - started
            if name == "lazy":
                chain.source_loads += source.hits - hits
            if value != expected:
                chain.problems.append(f"{name}: wrong value {value!r}")
            del value
    return chain


# --- reporting -------------------------------------------------------------------------------


def scenario_tables(root: str, settings: Settings) -> dict[str, Series]:
    """(4) A DataFrame (int64, float64 and float32 columns) stored and loaded (warm) by
    ``to_parquet``/``read_parquet`` and by memo's parquet serializer, in interleaved rounds."""
    import pandas as pd

    rows = settings.table_rows
    rng = np.random.default_rng(1)
    TABLE[0] = pd.DataFrame(
        {"id": np.arange(rows), "x": rng.random(rows), "y": rng.random(rows).astype(np.float32)}
    )
    plain = os.path.join(root, "pandas_parquet")
    os.makedirs(plain)
    memoized = memo.decorate(
        table_body, cache_path=os.path.join(root, "memo_parquet"), serializer="parquet"
    )
    memoized(-1)  # first call: code hashing, directory set-up
    series = {name: Series() for name in ("pandas store", "pandas load", "memo store", "memo load")}
    for r in range(settings.rounds + 1):
        for which in ("pandas", "memo") if r % 2 else ("memo", "pandas"):
            started = time.perf_counter()
            if which == "pandas":
                path = f"{plain}/{r}.parquet"
                TABLE[0].to_parquet(path)
                stored = time.perf_counter()
                loaded = pd.read_parquet(path)
                os.unlink(path)
            else:
                memoized(r)
                stored = time.perf_counter()
                loaded = memoized(r)
                memoized.invalidate(r)
            done = time.perf_counter()
            assert len(loaded) == rows
            if r:  # round 0 warms up
                series[f"{which} store"].samples[r] = stored - started
                series[f"{which} load"].samples[r] = done - stored
    return series


def report_tables(series: dict[str, Series], settings: Settings) -> None:
    """Print scenario (4)'s table and its ratios."""
    nbytes = int(TABLE[0].memory_usage(index=False).sum())
    print(
        f"\n(4) a DataFrame of {settings.table_rows:,} rows ({nbytes / 1e6:.0f} MB) as parquet, "
        f"store then warm load: {settings.rounds} interleaved rounds"
    )
    print(f"  {'contender':<14}  median ms  best ms  iqr %  x pandas")
    for name in series:
        base = series["pandas " + name.split()[1]]
        print(
            f"  {name:<14}  {_ms(series[name].median):>9}  {_ms(series[name].best):>7}  "
            f"{_iqr(series[name]):>5}  {_times(series[name].speed(base)):>8}"
        )


def _ms(value: float | None) -> str:
    return _num(None if value is None else value * 1e3)


def _rate(nbytes: int, seconds: float | None) -> str:
    return _num(None if seconds is None else nbytes / seconds / 1e9)


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{_num(value)}x"


def _iqr(series: Series) -> str:
    spread = series.spread
    return "n/a" if spread is None else f"{spread * 100:.0f}"


def report_arrays(writers: list[Writer], nbytes: int, cold: bool) -> None:
    """Print the store, warm-hit and cold-hit tables of scenario (1)."""
    base = writers[0]
    parts: list[tuple[str, str, Callable[[Writer], Series]]] = [
        ("store (miss)", "x np.save", lambda w: w.store_s),
        ("hit, warm page cache", "x np.load", lambda w: w.warm_s),
    ]
    if cold:
        parts.append(("hit, cold (page cache dropped)", "x np.load", lambda w: w.cold_s))
    for title, versus, get in parts:
        hit = versus == "x np.load"
        print(f"\n  {title}")
        header = ["  contender", "rounds", "median ms", "best ms", "iqr %", "GB/s", versus, "type"]
        rows = []
        for writer in writers:
            series = get(writer)
            rows.append(
                [
                    f"  {writer.name}",
                    str(len(series.samples)),
                    _ms(series.median),
                    _ms(series.best),
                    _iqr(series),
                    _rate(nbytes, series.median),
                    _times(series.speed(get(base))),
                    writer.kind if hit else "",
                ]
            )
        _table(header, rows, first=16)
    for writer in writers:
        if writer.failure:
            print(f"  n/a {writer.name}: {writer.failure}")


def report_hits(series: dict[str, Series], settings: Settings) -> None:
    """Print scenario (2)."""
    print(
        f"\n(2) hit, small args f(1, 'abc', 2.5): {settings.hit_rounds} interleaved rounds "
        f"x {settings.hit_calls} calls"
    )
    header = ["contender", "median us", "best us", "iqr %", "x floor", "x memo"]
    rows = []
    for name, item in series.items():
        rows.append(
            [
                name,
                _num(None if item.median is None else item.median * 1e6),
                _num(None if item.best is None else item.best * 1e6),
                _iqr(item),
                _times(item.paired(series["floor"])),
                _times(item.paired(series["memo"])),
            ]
        )
    _table(header, rows)
    for name, item in series.items():
        if item.failure:
            print(f"  n/a {name}: {item.failure}")


def report_chain(chain: Chain, settings: Settings) -> None:
    """Print scenario (3)."""
    print(
        f"\n(3) lazy chain, {settings.array_mb} MB result of f; hits in g/g2: "
        f"{settings.chain_rounds} interleaved rounds"
    )
    header = ["chain", "first call ms", "hit median ms", "best ms", "iqr %", "x lazy"]
    rows = [
        [
            "g(f.lazy(x))",
            _ms(chain.lazy_first),
            _ms(chain.lazy.median),
            _ms(chain.lazy.best),
            _iqr(chain.lazy),
            "1.00x",
        ],
        [
            "g2(f(x))",
            _ms(chain.eager_first),
            _ms(chain.eager.median),
            _ms(chain.eager.best),
            _iqr(chain.eager),
            _times(chain.eager.paired(chain.lazy)),
        ],
    ]
    _table(header, rows)
    calls = len(chain.lazy.samples)
    print(f"  f's value loaded during the {calls} lazy hits: {chain.source_loads} times")
    for problem in chain.problems:
        print(f"  problem: {problem}")


def _bar_speed(label: str, series: Series, base: Series, bar: float) -> None:
    speed = series.speed(base)
    plain = _ratio(series.median, base.median)
    best = _ratio(series.best, base.best)
    print(
        f"{label} = {_times(speed)} (bar >= {bar}x) "
        f"{_verdict(speed is not None and speed >= bar)} "
        f"[ratio of medians {_times(plain)}, of best rounds {_times(best)}]"
    )


def report_bars(
    writers: list[Writer],
    hits: dict[str, Series],
    tables: dict[str, Series],
    cold: bool,
    quick: bool,
) -> None:
    """Print the PASS/FAIL lines."""
    print("\nbars" + (" (set for 400 MB; with --quick only indicative)" if quick else ""))
    by_name = {writer.name: writer for writer in writers}
    base = by_name["np.save/load"]
    loads = [("warm", "warm_s")] + ([("cold", "cold_s")] if cold else [])
    for name, bar in (("memo npy", 0.8), ("memo pickle", 0.7)):
        writer = by_name[name]
        _bar_speed(f"{name} store: throughput / np.save", writer.store_s, base.store_s, bar)
        for label, attribute in loads:
            _bar_speed(
                f"{name} load {label}: throughput / np.load",
                getattr(writer, attribute),
                getattr(base, attribute),
                bar,
            )
    mapped = by_name["memo mmap"]
    for label, attribute in loads:
        series: Series = getattr(mapped, attribute)
        share = series.paired(getattr(base, attribute))
        percent = "n/a" if share is None else f"{share * 100:.2f}%"
        print(
            f"memo mmap hit {label}: {_ms(series.median)} ms = {percent} of np.load "
            f"({_ms(getattr(base, attribute).median)} ms) (bar < 1%) "
            f"{_verdict(share is not None and share < 0.01)}"
        )
    _bar_speed(
        "memo parquet store: throughput / to_parquet",
        tables["memo store"],
        tables["pandas store"],
        0.8,
    )
    _bar_speed(  # (the ratio before value files: 0.45x; the bar keeps it)
        "memo parquet load warm: throughput / read_parquet",
        tables["memo load"],
        tables["pandas load"],
        0.45,
    )
    ratio = hits["memo"].paired(hits["floor"])
    signed = hits["memo signed"].paired(hits["memo"])
    print(
        f"hit small args: memo/floor = {_times(ratio)} (bar <= 1.3x) "
        f"{_verdict(ratio is not None and ratio <= 1.3)} "
        f"[ratio of medians {_times(_ratio(hits['floor'].median, hits['memo'].median))}]"
    )
    print(
        f"hit small args: signed/unsigned = {_times(signed)} (bar <= 1.3x) "
        f"{_verdict(signed is not None and signed <= 1.3)} "
        f"[ratio of medians {_times(_ratio(hits['memo'].median, hits['memo signed'].median))}]"
    )


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario and print the tables; returns the process exit status (0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 60 s)")
    parser.add_argument("--tmpdir", default=None, help="where to make the temporary root")
    parser.add_argument(
        "--no-cold", action="store_true", help="do not drop the page cache (warm reads only)"
    )
    options = parser.parse_args(argv)
    settings = QUICK if options.quick else FULL
    began = time.perf_counter()
    root = tempfile.mkdtemp(prefix="bench_results_", dir=options.tmpdir)
    cold = not options.no_cold and drop_page_cache()
    print(
        f"bench_results: python {sys.version.split()[0]}, memo {memo.__version__}, "
        f"numpy {np.__version__}, {os.cpu_count()} cpus, "
        f"{'quick' if options.quick else 'full'} run, temp root {root}"
    )
    print(
        "page cache: "
        + (
            "cold hits after os.sync() + drop_caches"
            if cold
            else "cannot drop it (not root, or --no-cold): warm hits only"
        )
    )
    try:
        writers, nbytes = scenario_arrays(root, settings, cold)
        print(
            f"\n(1) one {nbytes / 1e6:.0f} MB float64 array result, store then hit: "
            f"{settings.rounds} interleaved rounds (+1 warm-up), peers "
            f"{settings.peer_rounds}; GB/s at the median; x np = paired throughput ratio"
        )
        report_arrays(writers, nbytes, cold)
        gc.collect()
        hits = scenario_hits(root, settings)
        report_hits(hits, settings)
        gc.collect()
        chain = scenario_chain(root, settings)
        report_chain(chain, settings)
        gc.collect()
        tables = scenario_tables(root, settings)
        report_tables(tables, settings)
        report_bars(writers, hits, tables, cold, options.quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
