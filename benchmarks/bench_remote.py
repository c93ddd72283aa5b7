"""Round trips of a remote store: requests per operation and what they cost at a latency.

On a real bucket a request costs tens of milliseconds whatever it carries, so what a remote
store costs is mostly how many requests each operation makes. This script starts, in a child
process, a moto S3 server on 127.0.0.1 and in front of it a proxy (``tests/s3_proxy.py``)
that sleeps ``--latency`` seconds before forwarding each request and counts them by kind. For
each operation it prints the requests made (by kind), the wall time, and the floor: the
fewest requests the operation needs, times the latency (for ``map``, which keeps 16 requests
in flight, divided by 16). The floors (the issue on S3 round trips): a hit is 1 GET; a miss
that stores is 4 (the GET that misses, the lease's PUT, the entry's PUT, the lease's PUT as
done); ``map`` of missing items lists once, then 3 per item; ``map`` of stored items is 1 GET
each; storing a 100 MB array takes at most 1.1x a plain s3fs put of the same bytes (loading
one is shown beside a plain s3fs get), as the median of the rounds' ratios, each round timing
memo and the plain call one after the other. The array's store is timed without its body
(making the array, timed apart), which the plain put does not have either; the plain put is
given the array's bytes already copied into one ``bytes`` object, which s3fs needs.

Wall times include moto's own time per request (a Python server: a few milliseconds, shown
as "moto" at the top), which a real endpoint does not add; the floor does not. moto handles
one request at a time (its Python code holds the GIL), so ``map``'s wall time here cannot go
below its requests times moto's time, shown as "moto bound". moto runs in its own process so
that its Python does not take turns with the client's, as a real endpoint does not.

Run: python benchmarks/bench_remote.py [--quick] [--latency 0.020]
"""

from __future__ import annotations

import argparse
import collections
import logging
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# The proxy and moto's launcher are test helpers, in tests/ beside this directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

import memo  # noqa: E402
from tests.s3 import AWS_ENV, s3_client, start_server  # noqa: E402
from tests.s3_proxy import S3Proxy  # noqa: E402

BUCKET = "bench"
MAP_ITEMS = 100
BIG = 100 * 2**20  # bytes: over twice s3fs's 50 MiB part size, so multipart


def body(x: int) -> int:
    """A trivial function: only the cache's own cost is measured."""
    return x * 2


def big(n: int, salt: int) -> Any:
    """``n`` bytes of array (``salt`` only makes a new key)."""
    return np.full(n, salt % 251, dtype=np.uint8)


class Row:
    """One operation's figures, per operation (medians over its rounds)."""

    def __init__(
        self, name: str, floor_requests: int | None, note: str = "", in_flight: int = 1
    ) -> None:
        self.name = name
        self.floor_requests = floor_requests
        self.note = note
        self.in_flight = in_flight  # requests the operation keeps in flight at once
        self.counts: collections.Counter[str] = collections.Counter()
        self.times: list[float] = []
        self.floor_time: float | None = None
        self.raw: Row | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.times)

    def requests(self) -> float:
        return sum(self.counts.values()) / len(self.times)

    def kinds(self) -> str:
        rounds = len(self.times)
        order = ("GET", "PUT", "HEAD", "LIST", "POST", "DELETE")
        names = sorted(self.counts, key=lambda k: order.index(k) if k in order else len(order))
        return " ".join(f"{kind} {self.counts[kind] / rounds:g}" for kind in names)


class Server:
    """moto and the delaying proxy in a child process, as a real endpoint is another machine:
    in this process, moto's Python (a hash of each body, its parsing) would share the
    interpreter lock with the client being measured. Asked over a pipe to set the latency,
    reset and read the counts."""

    def __init__(self) -> None:
        self._pipe, child = multiprocessing.Pipe()
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        self.url: str = self._pipe.recv()

    def _ask(self, *command: Any) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def set_latency(self, seconds: float) -> None:
        self._ask("latency", seconds)

    def reset(self) -> None:
        self._ask("reset")

    def counts(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = self._ask("counts")
        return counts

    def close(self) -> None:
        self._ask("stop")
        self._process.join(10)


def _serve(pipe: Connection) -> None:
    """The child: start moto and the proxy, make the bucket, answer the parent's asks."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ENV)
    server, endpoint = start_server()
    s3_client(endpoint).create_bucket(Bucket=BUCKET)  # (straight to moto: not counted)
    proxy = S3Proxy(endpoint)
    pipe.send(proxy.url)
    while True:
        command, *arguments = pipe.recv()
        if command == "latency":
            proxy.latency = arguments[0]
        elif command == "reset":
            proxy.reset()
        elif command == "counts":
            pipe.send(proxy.counts())
            continue
        elif command == "stop":
            break
        pipe.send(None)
    proxy.close()
    server.stop()
    pipe.send(None)


def measure(proxy: Server, row: Row, rounds: int, operation: Callable[[int], object]) -> Row:
    """Run ``operation(round)`` ``rounds`` times, each timed; counts summed over them."""
    for number in range(rounds):
        proxy.reset()
        started = time.perf_counter()
        operation(number)
        row.times.append(time.perf_counter() - started)
        row.counts.update(proxy.counts())
    return row


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms"


def report(rows: list[Row], latency: float, moto: float) -> None:
    """The table: requests per operation, wall time, floor, and the requests by kind."""
    print(f"  {'operation':22s} {'requests':>8s} {'wall':>12s} {'floor':>22s}   by kind")
    for row in rows:
        if row.floor_requests is not None:
            seconds = row.floor_requests * latency / row.in_flight
            floor = f"{row.floor_requests:>4d} req {_ms(seconds)}"
        elif row.floor_time is not None:
            floor = f"1.1x raw {_ms(row.floor_time)}"
        else:
            floor = "-"
        print(f"  {row.name:22s} {row.requests():8g} {_ms(row.wall)} {floor:>22s}   {row.kinds()}")
        if row.in_flight > 1:
            bound = f"moto bound {_ms(row.requests() * moto)}"
            print(f"  {'':22s} {'':8s} {'':12s} {bound:>22s}   ({row.in_flight} in flight)")
        if row.raw is not None:
            # The median of the rounds' own ratios: moto's time for a large body varies from
            # round to round by more than memo's overhead, alike for memo and the plain call.
            paired = statistics.median(m / r for m, r in zip(row.times, row.raw.times, strict=True))
            ratio = f"memo/raw {paired:.2f}x"
            print(
                f"  {'  raw s3fs ' + row.raw.name:22s} {row.raw.requests():8g} "
                f"{_ms(row.raw.wall)} {ratio:>22s}   {row.raw.kinds()}"
            )


def main() -> None:
    """Start moto and the delaying proxy, measure each operation, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument(
        "--latency", type=float, default=0.020, help="seconds per request (default 0.020)"
    )
    options = parser.parse_args()
    latency: float = options.latency
    hits, misses, maps, bigs = (5, 3, 1, 3) if options.quick else (30, 10, 3, 11)

    proxy = Server()
    # Set before memo or s3fs makes a filesystem, so both talk to the proxy.
    os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=proxy.url)
    try:
        import s3fs

        url = f"s3://{BUCKET}/cache"
        function = memo.decorate(body, cache_path=url)
        array = memo.decorate(big, cache_path=url, serializer="npy")
        fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)
        small = f"{BUCKET}/small"
        fs.pipe_file(small, b"x")
        function(-1)  # the filesystem made, connections opened: not in the figures
        # moto's own time a request, at no latency (max_concurrency=1: one GET, no HEAD).
        moto = measure(proxy, Row("GET", None), 20, lambda _: fs.cat_file(small, max_concurrency=1))
        # A first large transfer each way, unmeasured: the first is slower (memory, moto).
        fs.pipe_file(f"{BUCKET}/warm", bytes(BIG))
        fs.cat_file(f"{BUCKET}/warm")
        fs.rm_file(f"{BUCKET}/warm")
        proxy.set_latency(latency)
        print(
            f"bench_remote: S3 round trips at {latency * 1e3:g} ms a request (moto on "
            f"127.0.0.1 behind a delaying proxy; moto adds {moto.wall * 1e3:.1f} ms a request)"
        )
        rows = []
        function(0)
        rows.append(measure(proxy, Row("hit", 1), hits, lambda _: function(0)))
        rows.append(measure(proxy, Row("miss+store", 4), misses, lambda n: function(1 + n)))

        def mapped(number: int) -> list[int]:
            start = 1_000_000 + number * MAP_ITEMS  # (new keys in each round)
            return function.map(range(start, start + MAP_ITEMS), progress=False)

        misses_row = Row(f"map of {MAP_ITEMS} misses", 1 + 3 * MAP_ITEMS, in_flight=16)
        rows.append(measure(proxy, misses_row, maps, mapped))
        hits_row = Row(f"map of {MAP_ITEMS} hits", MAP_ITEMS, in_flight=16)
        rows.append(measure(proxy, hits_row, maps, mapped))

        store = Row(f"{BIG // 2**20} MiB npy store", None)
        load = Row(f"{BIG // 2**20} MiB npy load", None)
        put = Row(f"put {BIG // 2**20} MiB", None)
        get = Row(f"get {BIG // 2**20} MiB", None)
        data: list[bytes] = []

        def raw_put(number: int) -> None:
            fs.pipe_file(f"{BUCKET}/raw-{number}", data[0])

        def raw_get(number: int) -> None:
            fs.cat_file(f"{BUCKET}/raw-{number}")  # (s3fs's default: a HEAD, ranged GETs)

        def stored(number: int) -> None:
            array(BIG, number)

        # Round by round, memo and raw s3fs alternate, so drift affects both alike.
        for number in range(bigs):
            data[:] = [big(BIG, number).tobytes()]
            started = time.perf_counter()
            big(BIG, number)
            body_time = time.perf_counter() - started
            steps = [(put, raw_put), (store, stored), (get, raw_get), (load, stored)]
            if number % 2:  # (every other round memo goes first: moto slows as it fills)
                steps = [steps[1], steps[0], steps[3], steps[2]]
            for row, step in steps:
                row.times.append(0.0)
                proxy.reset()
                started = time.perf_counter()
                step(number)
                row.times[-1] = time.perf_counter() - started
                if row is store:
                    row.times[-1] -= body_time
                row.counts.update(proxy.counts())
            data.clear()
            # Both objects go before the next round: moto keeps them in this process's memory.
            proxy.reset()
            fs.rm_file(f"{BUCKET}/raw-{number}")
            array.invalidate(BIG, number)
        store.raw, load.raw = put, get
        store.floor_time = 1.1 * put.wall
        rows += [store, load]
        report(rows, latency, moto.wall)
    finally:
        proxy.close()


if __name__ == "__main__":
    main()
