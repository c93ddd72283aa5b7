"""Core benchmark: memo side by side with joblib, diskcache, cachier and a minimal "floor".

Run ``python benchmarks/bench_core.py`` (about two minutes) or ``--quick`` (a smoke run of a few
seconds). Everything runs in one process and one run, so all contenders see the same machine
state; every contender gets its own fresh temporary directory, removed at the end.

Contenders (all with a cache directory under one temporary root):

- ``floor``: the least a persistent memoizer can do. key = xxh3_128 hex of
  ``pickle.dumps(args)``; one file per key, ``<dir>/<key>.pkl``; a hit is ``open`` +
  ``pickle.load``; a miss computes and ``pickle.dump``s to that file (not atomic, no lock, no
  function identity, no code tracking). It is the yardstick for the ratios.
- ``memo``: ``memo.decorate(func, cache_path=dir)`` with its defaults.
- ``joblib``: ``joblib.Memory(location=dir, verbose=0).cache(func)``.
- ``diskcache``: ``diskcache.Cache(dir).memoize()(func)``.
- ``cachier``: ``cachier(cache_dir=dir, backend="pickle", separate_files=True)(func)``.
  ``separate_files=True`` gives cachier one file per entry like the others; with its default
  single-file layout (and ``pickle_reload=True``) every hit re-reads and every store rewrites
  the whole cache file, so its cost would grow with the number of entries.

Scenarios:

(a) Cache hit with small arguments, ``f(1, "abc", 2.5)`` returning a small dict: per-call
    microseconds. The machine is noisy, so the contenders are interleaved: in each round every
    contender runs one batch of calls, in a rotating order, and the reported figure is the
    median over rounds of the per-call time of a batch.
(b) Cache hit with a large float64 numpy array argument (80 MB; 8 MB with ``--quick``) and a
    small result: per-call milliseconds and the implied hashing throughput (array bytes / hit
    time). ``xxhash.xxh3_128_hexdigest(arr.data)`` over the same buffer is timed in the same
    rotation as the "raw xxh3" reference; memo's throughput is reported as a % of it.
(c) Miss + store of a small result: every call has a new argument, so every call misses,
    computes (trivially) and stores. Interleaved rounds, median per-call microseconds. One
    more reference runs here, ``atomic floor``: the floor plus what any memoizer that can be
    trusted across processes must do on a miss, in the fewest system calls: take a per-key
    ``fcntl.lockf`` record lock on one shared lock file, look again for the entry once the
    lock is held, and publish atomically (write an ``O_TMPFILE`` file, then ``linkat`` it into
    place; a temporary name and ``os.replace`` where ``O_TMPFILE`` is missing). It shows how
    much of memo's ratio to the floor is the price of not corrupting or duplicating entries.
(d) Herd: N processes (8; 4 with ``--quick``; start method ``fork`` where available, else
    ``spawn``) build the decorated function, meet at a barrier and call it with the same
    missing key at once. The body sleeps 0.5 s and appends a line to a counter file. Reported:
    how many times the body ran, and how many callers returned the right value in time; a
    caller still running after the timeout (30 s; 8 s with ``--quick``) is counted as hung and
    killed.
(e) Import time: ``python -X importtime -c "import memo"`` in 5 fresh processes (bytecode
    cached), memo's cumulative figure, the minimum (bar: 50 ms).
(f) First call of a function reading a 400 MB array global (40 MB with ``--quick``): its code
    fingerprint in GB/s against raw xxh3_128 over the same buffer (bar: at least 50%).

A peer that cannot do a scenario (an exception, a wrong value) is shown as "n/a" with the reason.
Ratios ("x floor", "x memo", "memo/floor") are paired: the median over rounds of the ratio of the
two contenders' figures in the same round, which cancels most of the round-to-round noise; the
bar lines also show the plain ratio of the medians. Below 1 is faster than the reference. The
"iqr %" column (interquartile range / median over rounds) shows how noisy a figure was.

Known behaviour of the peers here: diskcache's ``memoize`` and joblib have no stampede
protection, so in the herd every process runs the body; cachier marks the entry as being
computed, but it is racy here: in most of our runs its waiting processes (inotify via watchdog,
``wait_for_calc_timeout=0``, i.e. wait forever) were never woken and are reported as hung; in
others every process ran the body.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import itertools
import multiprocessing
import multiprocessing.context
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

Func = Callable[..., Any]
CONTENDERS: tuple[str, ...] = ("floor", "memo", "joblib", "diskcache", "cachier")
ATOMIC_FLOOR = "atomic floor"  # scenario (c) only: the floor plus a lock and atomic publishing
HERD_COUNTER_ENV = "BENCH_CORE_HERD_COUNTER"
HERD_SLEEP_ENV = "BENCH_CORE_HERD_SLEEP"
HERD_ARG = 7

# --- the memoized bodies: module level, so joblib, cachier and spawned children find them ------


def small_body(a: int, b: str, c: float = 2.5) -> dict[str, Any]:
    """Scenario (a): a trivial function of small arguments returning a small dict."""
    return {"a": a, "b": b, "c": c, "sum": a + c}


def array_body(arr: Any) -> tuple[int, ...]:
    """Scenario (b): a function of a big array whose result is small."""
    return tuple(arr.shape)


def store_body(i: int, b: str, c: float = 2.5) -> dict[str, Any]:
    """Scenario (c): like ``small_body``; called with a new ``i`` every time."""
    return {"i": i, "b": b, "c": c}


def herd_expected(x: int) -> int:
    """The value ``herd_body(x)`` returns."""
    return x * x + 1


def herd_body(x: int) -> int:
    """Scenario (d): sleep, append a line to the counter file, return a known value."""
    time.sleep(float(os.environ.get(HERD_SLEEP_ENV, "0.5")))
    with open(os.environ[HERD_COUNTER_ENV], "a") as counter:
        counter.write(f"{os.getpid()}\n")
    return herd_expected(x)


# --- contenders ------------------------------------------------------------------------------


class Floor:
    """The minimal persistent memoizer every ratio is measured against (see module docstring)."""

    def __init__(self, func: Func, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self._func = func
        self._dir = directory

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Load the stored result of this call, or compute and store it."""
        key = xxhash.xxh3_128_hexdigest(pickle.dumps((args, kwargs) if kwargs else args, 5))
        path = f"{self._dir}/{key}.pkl"
        try:
            with open(path, "rb") as file:
                return pickle.load(file)
        except FileNotFoundError:
            pass
        return self._compute(path, args, kwargs)

    def _compute(self, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value = self._func(*args, **kwargs)
        with open(path, "wb") as file:
            pickle.dump(value, file, 5)
        return value


class AtomicFloor(Floor):
    """The floor with a per-key lock, a second look under it, and atomic publishing."""

    def __init__(self, func: Func, directory: str) -> None:
        super().__init__(func, directory)
        self._lock = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        self._root = os.open("/", os.O_RDONLY)  # linkat needs a directory fd to follow /proc

    def _compute(self, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        offset = int(os.path.basename(path)[:15], 16)
        fcntl.lockf(self._lock, fcntl.LOCK_EX, 1, offset)
        try:
            if os.path.exists(path):  # stored by another process while we waited
                with open(path, "rb") as file:
                    return pickle.load(file)
            value = self._func(*args, **kwargs)
            data = pickle.dumps(value, 5)
            if hasattr(os, "O_TMPFILE"):
                fd = os.open(self._dir, os.O_WRONLY | os.O_TMPFILE, 0o600)
                try:
                    os.write(fd, data)
                    os.link(f"/proc/self/fd/{fd}", path, dst_dir_fd=self._root)
                finally:
                    os.close(fd)
            else:
                temp = f"{path}.{os.getpid()}.tmp"
                with open(temp, "wb") as file:
                    file.write(data)
                os.replace(temp, path)
            return value
        finally:
            fcntl.lockf(self._lock, fcntl.LOCK_UN, 1, offset)


def build(name: str, func: Func, directory: str, closers: list[Callable[[], None]]) -> Func:
    """Decorate ``func`` with contender ``name``, caching in ``directory`` (created here).

    Anything that must be closed at the end is appended to ``closers``.
    """
    os.makedirs(directory, exist_ok=True)
    if name == "floor":
        return Floor(func, directory)
    if name == ATOMIC_FLOOR:
        return AtomicFloor(func, directory)
    if name == "memo":
        import memo

        return memo.decorate(func, cache_path=directory)
    if name == "joblib":
        import joblib

        return joblib.Memory(location=directory, verbose=0).cache(func)  # type: ignore[no-any-return]
    if name == "diskcache":
        import diskcache

        store = diskcache.Cache(directory)
        closers.append(store.close)
        return store.memoize()(func)  # type: ignore[no-any-return]
    if name == "cachier":
        from cachier import cachier

        decorator = cachier(cache_dir=directory, backend="pickle", separate_files=True)
        return decorator(func)  # type: ignore[no-any-return]
    raise ValueError(f"unknown contender {name!r}")


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Series:
    """Per-round figures of one contender in one scenario (or why it has none)."""

    samples: list[float] = field(default_factory=list)
    failure: str = ""

    @property
    def median(self) -> float | None:
        """Median over rounds, or None when the contender failed or has no samples."""
        if self.failure or not self.samples:
            return None
        return statistics.median(self.samples)

    @property
    def spread(self) -> float | None:
        """Interquartile range over rounds as a fraction of the median (a noise indicator)."""
        middle = self.median
        if middle is None or len(self.samples) < 2 or middle == 0:
            return None
        low, _, high = statistics.quantiles(self.samples, n=4)
        return (high - low) / middle

    def paired(self, base: Series) -> float | None:
        """Median over rounds of (this round's figure / ``base``'s figure in the same round).

        Both ran back to back in every round, so a burst of machine noise that slows one round
        mostly cancels out; this is the ratio reported.
        """
        if self.median is None or base.median is None or len(self.samples) != len(base.samples):
            return None
        return statistics.median(
            mine / theirs for mine, theirs in zip(self.samples, base.samples, strict=True)
        )


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 70 else text[:67] + "..."


def prepare(
    func: Func,
    directory: str,
    closers: list[Callable[[], None]],
    warm: Callable[[Func], None],
    names: Sequence[str] = CONTENDERS,
) -> tuple[dict[str, Func], dict[str, Series]]:
    """Build every contender for ``func`` in ``directory/<name>`` and run ``warm`` on it.

    Returns the working wrappers and a ``Series`` per contender (failed ones carry the reason).
    """
    wrappers: dict[str, Func] = {}
    series: dict[str, Series] = {}
    for name in names:
        series[name] = Series()
        try:
            wrapper = build(name, func, os.path.join(directory, name), closers)
            warm(wrapper)
        except Exception as exc:
            series[name].failure = _reason(exc)
            continue
        wrappers[name] = wrapper
    return wrappers, series


def interleave(
    batches: dict[str, Callable[[], float]], series: dict[str, Series], rounds: int
) -> None:
    """Run each contender's batch once per round, rotating the order; record per-call seconds.

    A batch returns the seconds per call it measured. A batch that raises marks its contender
    as failed and drops it from later rounds.
    """
    names = list(batches)
    for number in range(rounds):
        shift = number % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if series[name].failure:
                continue
            try:
                series[name].samples.append(batches[name]())
            except Exception as exc:
                series[name].failure = _reason(exc)


def _check(value: Any, expected: Any) -> None:
    if value != expected:
        raise ValueError(f"wrong value {value!r}")


# --- scenarios -------------------------------------------------------------------------------


@dataclass
class Settings:
    """Sizes of one run (full or quick)."""

    hit_rounds: int
    hit_calls: int
    array_mb: int
    array_rounds: int
    array_calls: int
    store_rounds: int
    store_calls: int
    herd_processes: int
    herd_sleep: float
    herd_timeout: float


FULL = Settings(
    hit_rounds=200,
    hit_calls=300,
    array_mb=80,
    array_rounds=8,
    array_calls=2,
    store_rounds=40,
    store_calls=100,
    herd_processes=8,
    herd_sleep=0.5,
    herd_timeout=30.0,
)
QUICK = Settings(
    hit_rounds=5,
    hit_calls=200,
    array_mb=8,
    array_rounds=3,
    array_calls=1,
    store_rounds=4,
    store_calls=30,
    herd_processes=4,
    herd_sleep=0.5,
    herd_timeout=8.0,
)


def _hit_batch(wrapper: Func, args: tuple[Any, ...], calls: int) -> Callable[[], float]:
    def batch() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            wrapper(*args)
        return (time.perf_counter() - started) / calls

    return batch


def scenario_hit(
    root: str, settings: Settings, closers: list[Callable[[], None]]
) -> dict[str, Series]:
    """(a) Hit latency with small arguments; samples are seconds per call."""
    args: tuple[Any, ...] = (1, "abc", 2.5)
    expected = small_body(*args)

    def warm(wrapper: Func) -> None:
        _check(wrapper(*args), expected)
        _check(wrapper(*args), expected)

    wrappers, series = prepare(small_body, os.path.join(root, "hit"), closers, warm)
    batches = {name: _hit_batch(w, args, settings.hit_calls) for name, w in wrappers.items()}
    interleave(batches, series, settings.hit_rounds)
    return series


def scenario_array(
    root: str, settings: Settings, closers: list[Callable[[], None]]
) -> tuple[dict[str, Series], int]:
    """(b) Hit with a big array argument; samples are seconds per call. Includes "raw xxh3"."""
    count = settings.array_mb * 1_000_000 // 8
    arr = np.random.default_rng(0).random(count)
    expected = array_body(arr)

    def warm(wrapper: Func) -> None:
        _check(wrapper(arr), expected)
        _check(wrapper(arr), expected)

    wrappers, series = prepare(array_body, os.path.join(root, "array"), closers, warm)
    batches = {name: _hit_batch(w, (arr,), settings.array_calls) for name, w in wrappers.items()}

    def raw() -> float:
        started = time.perf_counter()
        for _ in range(settings.array_calls):
            xxhash.xxh3_128_hexdigest(arr.data)
        return (time.perf_counter() - started) / settings.array_calls

    series["raw xxh3"] = Series()
    batches["raw xxh3"] = raw
    interleave(batches, series, settings.array_rounds)
    return series, arr.nbytes


def scenario_store(
    root: str, settings: Settings, closers: list[Callable[[], None]]
) -> dict[str, Series]:
    """(c) Miss + store with a new argument on every call; samples are seconds per call."""
    counters: dict[str, itertools.count[int]] = {}

    def warm(wrapper: Func) -> None:
        _check(wrapper(-1, "abc", 2.5), store_body(-1, "abc", 2.5))

    names = (*CONTENDERS, ATOMIC_FLOOR)
    wrappers, series = prepare(store_body, os.path.join(root, "store"), closers, warm, names)

    def make(wrapper: Func, numbers: itertools.count[int]) -> Callable[[], float]:
        def batch() -> float:
            calls = settings.store_calls
            started = time.perf_counter()
            for _ in range(calls):
                wrapper(next(numbers), "abc", 2.5)
            return (time.perf_counter() - started) / calls

        return batch

    batches = {}
    for name, wrapper in wrappers.items():
        counters[name] = itertools.count()
        batches[name] = make(wrapper, counters[name])
    interleave(batches, series, settings.store_rounds)
    # Every call must have stored: a repeated argument is now a hit with the right value.
    for name, wrapper in wrappers.items():
        if not series[name].failure:
            try:
                _check(wrapper(0, "abc", 2.5), store_body(0, "abc", 2.5))
            except Exception as exc:
                series[name].failure = _reason(exc)
    return series


@dataclass
class Herd:
    """Outcome of one contender's herd."""

    processes: int
    runs: int = 0
    ok: int = 0
    hung: int = 0
    slowest: float = 0.0
    problems: list[str] = field(default_factory=list)


def _herd_child(name: str, directory: str, barrier: Any, results: Any) -> None:
    """A herd member: build the contender, wait for the others, call, report (pid, outcome)."""
    try:
        wrapper = build(name, herd_body, directory, [])
        barrier.wait(timeout=120)
        started = time.perf_counter()
        value = wrapper(HERD_ARG)
        seconds = time.perf_counter() - started
        outcome = "ok" if value == herd_expected(HERD_ARG) else f"wrong value {value!r}"
    except BaseException as exc:
        seconds, outcome = 0.0, _reason(exc)
    results.put((os.getpid(), outcome, seconds))


def default_start_method() -> str:
    """``fork`` where the platform has it (fast, Linux), else ``spawn``."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _context(
    method: str,
) -> (
    multiprocessing.context.ForkContext
    | multiprocessing.context.ForkServerContext
    | multiprocessing.context.SpawnContext
):
    if method == "fork":
        return multiprocessing.get_context("fork")
    if method == "forkserver":
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def run_herd(name: str, root: str, settings: Settings, method: str) -> Herd:
    """(d) ``settings.herd_processes`` processes call the same missing key of ``name`` at once."""
    directory = os.path.join(root, "herd", name)
    os.makedirs(directory, exist_ok=True)
    counter = os.path.join(root, "herd", f"{name}.count")
    open(counter, "w").close()
    os.environ[HERD_COUNTER_ENV] = counter
    os.environ[HERD_SLEEP_ENV] = str(settings.herd_sleep)
    context = _context(method)
    size = settings.herd_processes
    barrier = context.Barrier(size + 1)
    results = context.Queue()
    herd = Herd(size)
    processes = [
        context.Process(target=_herd_child, args=(name, directory, barrier, results), daemon=True)
        for _ in range(size)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=120)
    except Exception as exc:  # a child died before the barrier (e.g. could not build)
        herd.problems.append(f"barrier: {_reason(exc)}")
    deadline = time.monotonic() + settings.herd_timeout
    reported: dict[int, tuple[str, float]] = {}
    while len(reported) < size and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            pid, outcome, seconds = results.get(timeout=0.1)
            reported[pid] = (outcome, seconds)
        if len(reported) < size and not any(p.is_alive() for p in processes):
            with contextlib.suppress(Exception):  # drain what the last ones sent
                while True:
                    pid, outcome, seconds = results.get(timeout=0.5)
                    reported[pid] = (outcome, seconds)
            break
    for process in processes:
        if process.is_alive() and process.pid not in reported:
            herd.hung += 1
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
    results.close()
    for outcome, seconds in reported.values():
        if outcome == "ok":
            herd.ok += 1
            herd.slowest = max(herd.slowest, seconds)
        elif outcome not in herd.problems:
            herd.problems.append(outcome)
    missing = size - len(reported) - herd.hung
    if missing > 0:
        herd.problems.append(f"{missing} process(es) exited without reporting")
    with open(counter) as file:
        herd.runs = sum(1 for line in file if line.strip())
    return herd


# --- reporting -------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], first: int = 12) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    widths[0] = max(widths[0], first)
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())


def _failures(series: dict[str, Series]) -> None:
    for name, item in series.items():
        if item.failure:
            print(f"  n/a {name}: {item.failure}")


def report_timing(
    title: str, series: dict[str, Series], scale: float, unit: str, nbytes: int = 0
) -> None:
    """Print one timing scenario: median, best, spread, x floor, x memo (and GB/s if nbytes)."""
    print(f"\n{title}")
    floor, memo_ = series["floor"], series["memo"]
    raw = series.get("raw xxh3")
    header = [
        "contender",
        f"median {unit}",
        f"best {unit}",
        "iqr %",
        "x floor",
        "x memo",
    ]
    if nbytes:
        header += ["GB/s", "% raw xxh3"]
    rows = []
    for name, item in series.items():
        median = item.median
        best = min(item.samples) * scale if median is not None else None
        spread = item.spread
        row = [
            name,
            _num(None if median is None else median * scale),
            _num(best),
            "n/a" if spread is None else f"{spread * 100:.0f}",
            _num(item.paired(floor)),
            _num(item.paired(memo_)),
        ]
        if nbytes:
            rate = None if median is None else nbytes / median / 1e9
            percent = None if raw is None else raw.paired(item)
            row += [_num(rate), "n/a" if percent is None else f"{percent * 100:.0f}"]
        rows.append(row)
    _table(header, rows)
    _failures(series)


def report_herd(herds: dict[str, Herd], settings: Settings, method: str) -> None:
    """Print the herd scenario."""
    print(
        f"\n(d) herd: {settings.herd_processes} processes ({method}) call the same missing key "
        f"at once; body sleeps {settings.herd_sleep} s; hung = no answer after "
        f"{settings.herd_timeout:.0f} s"
    )
    size = settings.herd_processes
    rows = []
    for name, herd in herds.items():
        rows.append(
            [
                name,
                f"{herd.runs}/{size}",
                f"{herd.ok}/{size}",
                str(herd.hung),
                _num(herd.slowest if herd.ok else None),
                "; ".join(herd.problems) or "-",
            ]
        )
    header = ["contender", "body ran", "callers ok", "hung", "slowest s", "problems"]
    _table(header, rows)


def _cell(value: float | None, digits: int = 2) -> str:
    return _num(value, digits)


def report_summary(
    hit: dict[str, Series],
    array: dict[str, Series],
    nbytes: int,
    store: dict[str, Series],
    herds: dict[str, Herd],
    settings: Settings,
) -> None:
    """Print the summary table and the lines for the bars memo has to meet."""
    mb = settings.array_mb

    def scaled(series: dict[str, Series], name: str, scale: float) -> float | None:
        median = series[name].median
        return None if median is None else median * scale

    def rate(name: str) -> float | None:
        median = array[name].median
        return None if median is None else nbytes / median / 1e9

    def paired(series: dict[str, Series], name: str, base: str) -> float | None:
        return series[name].paired(series[base])

    def others(series: dict[str, Series], name: str, base: str) -> str:
        mine, theirs = series[name], series[base]
        medians = _ratio(mine.median, theirs.median)
        best = None
        if mine.median is not None and theirs.median is not None:
            best = min(mine.samples) / min(theirs.samples)
        return f"[ratio of medians {_num(medians)}x, of best rounds {_num(best)}x]"

    lines: list[tuple[str, Callable[[str], float | None], dict[str, Series] | None]] = [
        ("hit small args (us)", lambda n: scaled(hit, n, 1e6), hit),
        (f"hit {mb} MB arg (ms)", lambda n: scaled(array, n, 1e3), array),
        (f"{mb} MB hash (GB/s)", rate, None),
        ("miss+store (us)", lambda n: scaled(store, n, 1e6), store),
        ("herd body runs", lambda n: float(herds[n].runs) if n in herds else None, None),
        ("herd callers ok", lambda n: float(herds[n].ok) if n in herds else None, None),
    ]
    header = ["scenario", *CONTENDERS, "memo/floor"]
    rows = []
    for label, get, timed in lines:
        values = {name: get(name) for name in CONTENDERS}
        integer = label.startswith("herd")
        row = [label]
        for name in CONTENDERS:
            value = values[name]
            row.append("n/a" if value is None else f"{value:.0f}" if integer else _cell(value))
        row.append(_num(paired(timed, "memo", "floor")) + "x" if timed is not None else "")
        rows.append(row)
    print("\nsummary")
    _table(header, rows, first=24)

    print("\nbars")
    memo_hit = scaled(hit, "memo", 1e6)
    disk_hit = scaled(hit, "diskcache", 1e6)
    hit_ratio = paired(hit, "memo", "floor")
    versus_disk = paired(hit, "memo", "diskcache")
    print(
        f"hit small args: memo/floor = {_num(hit_ratio)}x (bar <= 1.3x) "
        f"{_verdict(hit_ratio is not None and hit_ratio <= 1.3)} "
        f"{others(hit, 'memo', 'floor')}; "
        f"diskcache = {_num(disk_hit)} us, memo = {_num(memo_hit)} us "
        f"(memo must be below) {_verdict(versus_disk is not None and versus_disk < 1)}"
    )
    memo_rate, raw_rate = rate("memo"), rate("raw xxh3")
    percent = paired(array, "raw xxh3", "memo")
    print(
        f"{mb} MB arg: memo hashes at {_num(memo_rate)} GB/s = "
        f"{'n/a' if percent is None else f'{percent * 100:.0f}'}% of raw xxh3 "
        f"({_num(raw_rate)} GB/s) (bar >= 50%) {_verdict(percent is not None and percent >= 0.5)}"
    )
    store_ratio = paired(store, "memo", "floor")
    print(
        f"miss+store: memo/floor = {_num(store_ratio)}x (bar <= 1.5x) "
        f"{_verdict(store_ratio is not None and store_ratio <= 1.5)} "
        f"{others(store, 'memo', 'floor')}; for reference, atomic floor/floor = "
        f"{_num(paired(store, ATOMIC_FLOOR, 'floor'))}x, "
        f"memo/atomic floor = {_num(paired(store, 'memo', ATOMIC_FLOOR))}x"
    )
    herd = herds.get("memo")
    runs = "n/a" if herd is None else f"{herd.runs}/{herd.processes}"
    good = herd is not None and herd.runs == 1 and herd.ok == herd.processes
    ok = "n/a" if herd is None else f"{herd.ok}/{herd.processes}"
    print(f"herd: memo body ran {runs} (bar: 1), callers ok {ok} {_verdict(good)}")


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


# --- main ------------------------------------------------------------------------------------


def report_import_time(runs: int = 5) -> float:
    """(e) ``python -X importtime -c "import memo"`` in fresh processes: memo's cumulative
    import time, the minimum of ``runs`` (bytecode cached, as after any first run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-X", "importtime", "-c", "import memo"]
    subprocess.run(command, env=env, capture_output=True, check=True)  # writes the bytecode
    times = []
    for _ in range(runs):
        shown = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        line = [row for row in shown.stderr.splitlines() if row.rstrip().endswith("| memo")][-1]
        times.append(int(line.split("|")[1]) / 1000)
    best = min(times)
    print(
        f"\n(e) import memo: {best:.1f} ms cumulative (min of {runs} fresh processes; "
        f"{', '.join(f'{t:.0f}' for t in times)}) (bar <= 50 ms) {'PASS' if best <= 50 else 'FAIL'}"
    )
    return best


def report_global_hashing(quick: bool, rounds: int = 5) -> float:
    """(f) The first call of a function that reads a large array global: its code fingerprint
    (``memo.hash_code``, which the first call computes) against raw xxh3_128 over the same
    buffer. A fresh function and a fresh copy of the array each round, as in a new process."""
    import xxhash

    import memo

    count = (40 if quick else 400) * 1_000_000 // 8
    base = np.random.default_rng(2).random(count)
    source = compile("def reads(i):\n    return float(BIG[i])\n", "bench_globals", "exec")
    fingerprint, raw = [], []
    for _ in range(rounds):
        namespace: dict[str, Any] = {"__name__": "bench_globals", "BIG": base.copy()}
        exec(source, namespace)
        started = time.perf_counter()
        memo.hash_code(namespace["reads"])
        fingerprint.append(time.perf_counter() - started)
        started = time.perf_counter()
        xxhash.xxh3_128_hexdigest(namespace["BIG"].data)
        raw.append(time.perf_counter() - started)
    nbytes = base.nbytes
    rate, raw_rate = nbytes / min(fingerprint) / 1e9, nbytes / min(raw) / 1e9
    share = rate / raw_rate
    print(
        f"\n(f) first call, a function reading a {nbytes / 1e6:.0f} MB array global: "
        f"fingerprint {min(fingerprint) * 1e3:.1f} ms = {rate:.2f} GB/s, raw xxh3 "
        f"{raw_rate:.2f} GB/s: {share:.0%} of raw (bar >= 50%) {'PASS' if share >= 0.5 else 'FAIL'}"
    )
    return share


def main(argv: Sequence[str] | None = None) -> int:
    """Run every scenario and print the tables; returns the process exit status (0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 30 s)")
    parser.add_argument("--tmpdir", default=None, help="where to make the temporary root")
    parser.add_argument(
        "--start-method",
        choices=("fork", "spawn", "forkserver"),
        default=None,
        help="multiprocessing start method for the herd (default: fork where available)",
    )
    options = parser.parse_args(argv)
    settings = QUICK if options.quick else FULL
    began = time.perf_counter()
    root = tempfile.mkdtemp(prefix="bench_core_", dir=options.tmpdir)
    closers: list[Callable[[], None]] = []
    import memo

    print(
        f"bench_core: python {sys.version.split()[0]}, memo {memo.__version__}, "
        f"{os.cpu_count()} cpus, {'quick' if options.quick else 'full'} run, temp root {root}"
    )
    try:
        gc.collect()
        hit = scenario_hit(root, settings, closers)
        report_timing(
            f"(a) hit, small args f(1, 'abc', 2.5): {settings.hit_rounds} interleaved rounds "
            f"x {settings.hit_calls} calls",
            hit,
            1e6,
            "us",
        )
        gc.collect()
        array, nbytes = scenario_array(root, settings, closers)
        report_timing(
            f"(b) hit, one {settings.array_mb} MB float64 array arg: "
            f"{settings.array_rounds} interleaved rounds x {settings.array_calls} calls",
            array,
            1e3,
            "ms",
            nbytes,
        )
        gc.collect()
        store = scenario_store(root, settings, closers)
        report_timing(
            f"(c) miss + store, new small arg each call: {settings.store_rounds} interleaved "
            f"rounds x {settings.store_calls} calls",
            store,
            1e6,
            "us",
        )
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        closers.clear()
        method = options.start_method or default_start_method()
        herds = {name: run_herd(name, root, settings, method) for name in CONTENDERS}
        report_herd(herds, settings, method)
        report_summary(hit, array, nbytes, store, herds, settings)
        report_import_time()
        report_global_hashing(options.quick)
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
