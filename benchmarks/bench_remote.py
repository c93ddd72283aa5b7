"""Cache-hit latency against a local S3 API (moto's server on 127.0.0.1) beside local disk.

The same small function is memoized twice: one store in a temp directory, one in a bucket of
a moto server this script starts itself. Rounds alternate between the two; medians are
reported. The S3 figure is what one GET through s3fs costs on this machine (moto is a Python
server, so a real S3 endpoint's latency will differ: network round trips dominate there).

Run: python benchmarks/bench_remote.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time

import memo


def body(a: int, b: str, c: float = 2.5) -> dict[str, int]:
    """A trivial function: only the cache's own cost is measured."""
    return {"x": a}


def main() -> None:
    """Start moto, fill both stores, alternate hit rounds, print medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    options = parser.parse_args()
    rounds, calls = (5, 20) if options.quick else (15, 100)

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    boto3.client("s3").create_bucket(Bucket="bench")
    local_dir = tempfile.mkdtemp(prefix="bench_remote_")
    try:
        local = memo.decorate(body, cache_path=local_dir)
        remote = memo.decorate(body, cache_path="s3://bench/cache")
        assert local(1, "abc") == remote(1, "abc") == {"x": 1}
        assert remote.is_cached(1, "abc")
        figures: dict[str, list[float]] = {"local disk": [], "S3 (moto, 127.0.0.1)": []}
        for _ in range(rounds):
            for label, function in zip(figures, (local, remote), strict=True):
                started = time.perf_counter()
                for _ in range(calls):
                    function(1, "abc")
                figures[label].append((time.perf_counter() - started) / calls * 1e6)
        print(f"bench_remote: hit latency, small arguments, {rounds} rounds x {calls} calls")
        for label, values in figures.items():
            print(f"  {label:22s} {statistics.median(values):10.1f} us")
        ratio = statistics.median(figures["S3 (moto, 127.0.0.1)"]) / statistics.median(
            figures["local disk"]
        )
        print(f"  S3 / local disk: {ratio:.0f}x")
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
        server.stop()


if __name__ == "__main__":
    main()
