"""A cache shared through S3: one process computes, every other process and machine reads it.

``cache_path`` is an S3 URL, so entries are objects in a bucket instead of files in a local
directory: the same format, checked the same way before anything is unpickled. Any machine
with access to the bucket gets the results the others computed.

With no endpoint configured (no ``AWS_ENDPOINT_URL``), the script starts a local S3 server
(moto) on 127.0.0.1, creates a bucket and stops the server at the end, so it runs anywhere
without credentials or network. To use a real bucket, set ``AWS_ENDPOINT_URL`` (or have AWS
credentials and set it to ``https://s3.amazonaws.com``) and ``MEMO_EXAMPLE_URL=s3://bucket/p``.

Needs ``pip install "memo-cache[remote]"`` (fsspec and s3fs), plus ``moto[server]`` for the local
server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import memo

URL = os.environ.get("MEMO_EXAMPLE_URL", "s3://memo-example/shared")


@memo.cache(cache_path=URL)
def count_primes(limit: int) -> int:
    """How many primes are below ``limit`` (a deliberately plain, slow-ish sieve)."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\0\0"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            for multiple in range(n * n, limit, n):
                sieve[multiple] = 0
    return sum(sieve)


@contextlib.contextmanager
def local_s3_if_needed() -> Iterator[None]:
    """Start a moto S3 server on 127.0.0.1 (and create the bucket) unless one is configured."""
    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"):
        yield
        return
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # Settings for this process and the child it starts: fake credentials, local endpoint.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        NO_PROXY=",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"])),
    )
    bucket = URL.removeprefix("s3://").partition("/")[0]
    boto3.client("s3").create_bucket(Bucket=bucket)
    print(f"started a local S3 server at http://{host}:{port}")
    try:
        yield
    finally:
        server.stop()


def timed(label: str, limit: int) -> None:
    """Call the function, saying how long it took and whether S3 had the result."""
    source = "from S3" if count_primes.is_cached(limit) else "computed"
    started = time.perf_counter()
    result = count_primes(limit)
    elapsed = time.perf_counter() - started
    print(f"{label:>13}: {elapsed * 1000:8.1f} ms  {source:>8}  ->  {result} primes")


def main() -> None:
    """Compute once, read it back here and in another process with its own local settings."""
    if "--child" in sys.argv:
        timed("other process", 2_000_000)
        return
    with local_s3_if_needed():
        count_primes.clear()  # start from nothing, so the first call computes
        timed("first call", 2_000_000)
        timed("second call", 2_000_000)
        # A fresh interpreter stands in for another machine: it finds the result in S3.
        sys.stdout.flush()  # our lines first, then the child's
        subprocess.run([sys.executable, __file__, "--child"], check=True)
        print(f"cache: {count_primes.store.root}")
        print(f"entries of count_primes: {len(count_primes.entries())}")


if __name__ == "__main__":
    main()
