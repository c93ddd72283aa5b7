"""S3 round trips per operation: memo against moto through a counting proxy (``S3Proxy``).

A hit is one GET and ``map`` of stored items one GET each: their floors. A miss that stores
is four requests: the GET that misses, the lease's create-only PUT, the entry's PUT and the
lease's PUT marking it done (a done lease stays, so a later lease written create-only proves
no one stored the key meanwhile). ``map`` of missing items lists once, then 3 per item.
Every figure is a round trip to the bucket, tens of milliseconds on a real endpoint.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import s3fs

import memo
from memo._storage._chunks import Chunks
from memo._storage._open import forget_stores
from tests.s3 import FAST
from tests.s3_proxy import S3Proxy

_ITEMS = 100


@pytest.fixture
def proxy(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Proxy]:
    """A counting proxy (no latency) in front of the session's moto server, which memo's
    stores opened from now on talk to."""
    with S3Proxy(endpoint) as proxy:
        # endpoint_url among the storage options: fsspec caches filesystems by their
        # options, so this proxy's port gives memo a new filesystem, never one made for the
        # moto server itself (AWS_ENDPOINT_URL alone would be ignored by a cached one).
        options = {**FAST, "endpoint_url": proxy.url}
        monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps(options))
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        forget_stores()
        yield proxy
        forget_stores()


def _double(x: int) -> int:
    return x * 2


def _ones(n: int) -> Any:
    return np.ones(n, dtype=np.uint8)


def _measured(proxy: S3Proxy, what: str) -> str:
    """The requests since the last reset, for a failure message."""
    counts = dict(sorted(proxy.counts().items()))
    up, down = proxy.transferred()
    return f"{what}: {sum(counts.values())} requests {counts}, {up} bytes up, {down} down"


def test_the_proxy_sees_memos_requests(proxy: S3Proxy, url: str) -> None:
    """A memoized call on the S3 store goes through the proxy (else every count is moot)."""
    double = memo.decorate(_double, cache_path=url)
    assert double(3) == 6
    assert proxy.total() > 0, "memo's filesystem does not talk to the proxy"


def test_the_proxy_forwards_large_and_multipart_bodies(proxy: S3Proxy, bucket: str) -> None:
    """A 100 MiB multipart upload passes through the proxy whole and reads back equal."""
    fs = s3fs.S3FileSystem(endpoint_url=proxy.url, skip_instance_cache=True)
    data = np.random.default_rng(0).integers(0, 256, 100 * 2**20 + 1, np.uint8).tobytes()
    fs.pipe_file(f"{bucket}/big", data)  # (over twice s3fs's 50 MiB chunk: multipart)
    assert proxy.counts()["POST"] == 2  # created and completed
    assert fs.cat_file(f"{bucket}/big") == data
    assert proxy.transferred()[0] >= len(data)


def test_a_hit_is_one_get(proxy: S3Proxy, url: str) -> None:
    """A hit on a stored entry is one GET, its floor."""
    double = memo.decorate(_double, cache_path=url)
    double(1)
    proxy.reset()
    assert double(1) == 2
    assert proxy.counts() == collections.Counter(GET=1), _measured(proxy, "hit")


def test_a_miss_that_stores_is_four_requests(proxy: S3Proxy, url: str) -> None:
    """A miss that stores: GET (miss), PUT (lease, create-only: no one stored it meanwhile),
    PUT (entry) and PUT (the lease, as done, not read back first); no HEAD, LIST or DELETE.
    The first miss of a function in a process reads its blessing record too: one GET."""
    double = memo.decorate(_double, cache_path=url)
    proxy.reset()
    assert double(0) == 0
    first = collections.Counter(GET=2, PUT=3)
    assert proxy.counts() == first, _measured(proxy, "first miss+store")
    proxy.reset()
    assert double(1) == 2
    four = collections.Counter(GET=1, PUT=3)
    assert proxy.counts() == four, _measured(proxy, "miss+store")


async def _adouble(x: int) -> int:
    return 2 * x


def test_an_async_miss_that_stores_is_four_requests_too(proxy: S3Proxy, url: str) -> None:
    """An ``async def``'s miss takes its lease off the event loop and is the same four
    requests as a ``def``'s."""
    double = memo.decorate(_adouble, cache_path=url)
    asyncio.run(double(0))  # (reads the blessing record)
    proxy.reset()
    assert asyncio.run(double(1)) == 2
    four = collections.Counter(GET=1, PUT=3)
    assert proxy.counts() == four, _measured(proxy, "async miss+store")


def test_a_miss_after_an_invalidate_is_four_requests_again(proxy: S3Proxy, url: str) -> None:
    """Deleting an entry deletes its done lease, so computing it again is a plain miss."""
    double = memo.decorate(_double, cache_path=url)
    double(1)
    double.invalidate(1)
    proxy.reset()
    assert double(1) == 2
    four = collections.Counter(GET=1, PUT=3)
    assert proxy.counts() == four, _measured(proxy, "miss+store after invalidate")


def test_map_of_misses_lists_once_then_is_three_requests_per_item(proxy: S3Proxy, url: str) -> None:
    """``map`` of missing items: one GET finds the first missing, one listing finds the rest
    (two LISTs on a store that holds nothing yet: s3fs then lists the parent to tell an empty
    prefix from a missing one), then each is a miss that stores without the GET that misses
    (three PUTs: lease, entry, lease done); no HEAD. (The blessing record, read at the first
    miss, is read before.)"""
    double = memo.decorate(_double, cache_path=url)
    double.map([-1], progress=False)  # (reads the blessing record)
    double.invalidate(-1)
    proxy.reset()
    assert double.map(range(_ITEMS), progress=False) == [x * 2 for x in range(_ITEMS)]
    counts = proxy.counts()
    message = _measured(proxy, f"map of {_ITEMS} misses")
    assert counts["HEAD"] == 0, message
    assert counts["LIST"] <= 2, message
    assert counts == collections.Counter(GET=1, PUT=3 * _ITEMS, LIST=counts["LIST"]), message
    double.invalidate(0)
    proxy.reset()
    assert double.map(range(-_ITEMS, _ITEMS), progress=False) == [
        x * 2 for x in range(-_ITEMS, _ITEMS)
    ]
    counts = proxy.counts()
    message = _measured(proxy, f"map of {_ITEMS} new items and {_ITEMS} stored but one")
    assert counts["LIST"] == 1, message  # (the store is not empty now)
    # The first GET, the 99 stored, and three per miss (-100..-1 and 0).
    misses = _ITEMS + 1
    assert counts == collections.Counter(GET=1 + (_ITEMS - 1), PUT=3 * misses, LIST=1), message


def test_map_of_hits_is_one_get_each(proxy: S3Proxy, url: str) -> None:
    """``map`` of stored items is one GET each, its floor."""
    double = memo.decorate(_double, cache_path=url)
    double.map(range(_ITEMS), progress=False)
    proxy.reset()
    assert double.map(range(_ITEMS), progress=False) == [x * 2 for x in range(_ITEMS)]
    assert proxy.counts() == collections.Counter(GET=_ITEMS), _measured(proxy, "map of hits")


def test_is_cached_is_one_request(proxy: S3Proxy, url: str) -> None:
    """``is_cached`` costs one request, stored or not."""
    double = memo.decorate(_double, cache_path=url)
    double(1)
    proxy.reset()
    assert double.is_cached(1)
    assert not double.is_cached(2)
    assert proxy.total() <= 2, _measured(proxy, "is_cached, stored and not")


def test_listing_entries_is_one_list(proxy: S3Proxy, url: str) -> None:
    """Listing a store's entries is one LIST."""
    double = memo.decorate(_double, cache_path=url)
    double.map(range(3), progress=False)
    proxy.reset()
    assert len(memo.Store(url).entries()) == 3
    assert proxy.counts() == collections.Counter(LIST=1), _measured(proxy, "Store.entries()")


def test_a_10_mb_array_is_uploaded_once_and_read_in_one_get(proxy: S3Proxy, url: str) -> None:
    """A 10 MB result is uploaded once (as a miss costs today) and loaded in one GET."""
    size = 10 * 2**20
    ones = memo.decorate(_ones, cache_path=url)  # (the default serializer)
    ones(1)  # (the first miss reads the blessing record)
    proxy.reset()
    assert ones(size).sum() == size
    counts, (up, _) = proxy.counts(), proxy.transferred()
    message = _measured(proxy, "10 MB store")
    assert counts == collections.Counter(GET=1, PUT=3), message
    assert size <= up < size * 1.01, message  # the value once, and the small lease
    proxy.reset()
    assert ones(size).sum() == size
    assert proxy.counts() == collections.Counter(GET=1), _measured(proxy, "10 MB load")


def _ramp(n: int) -> Any:
    return np.arange(n, dtype=np.uint8)


def test_a_100_mb_array_goes_up_in_parts_read_from_its_own_memory(
    proxy: S3Proxy, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result over twice s3fs's part size is one multipart upload whose parts are read
    from the array itself (never joined into one copy of it), and loads back equal."""
    size = 100 * 2**20 + 1
    ramp = memo.decorate(_ramp, cache_path=url, serializer="npy")
    ramp(1)  # (the first miss reads the blessing record)

    def joined(self: Chunks) -> bytes:
        raise AssertionError("the payload was joined into one copy")

    monkeypatch.setattr(Chunks, "tobytes", joined)
    proxy.reset()
    stored = ramp(size)
    counts, (up, _) = proxy.counts(), proxy.transferred()
    message = _measured(proxy, "100 MB npy store")
    assert counts["POST"] == 2, message  # one multipart upload, created and completed
    assert size <= up < size * 1.01, message
    monkeypatch.undo()
    loaded = ramp(size)
    assert ramp.cache_info().hits == 1
    np.testing.assert_array_equal(loaded, stored)


def test_a_read_only_store_on_s3_is_only_read(proxy: S3Proxy, url: str) -> None:
    """A function on ``memo.Store(url, read_only=True)``: a hit is one GET, and a miss is the
    GET that misses, with no lease, no entry written and nothing deleted; a map of misses is
    reads and one listing only."""
    writer = memo.decorate(_double, cache_path=url)
    writer(1)
    reader = memo.decorate(_double, cache_path=memo.Store(url, read_only=True))
    reader(0)  # (the first miss reads the blessing record)
    proxy.reset()
    assert reader(1) == 2
    assert proxy.counts() == collections.Counter(GET=1), _measured(proxy, "read-only hit")
    proxy.reset()
    assert reader(2) == 4
    assert proxy.counts() == collections.Counter(GET=1), _measured(proxy, "read-only miss")
    proxy.reset()
    assert reader.map(range(10, 20), progress=False) == [x * 2 for x in range(10, 20)]
    counts = proxy.counts()
    assert set(counts) <= {"GET", "LIST"}, _measured(proxy, "read-only map of misses")
