"""A real dask.distributed cluster for tests: two worker processes on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def two_workers() -> Iterator[Any]:
    """A client of a LocalCluster of two single-threaded worker processes (they inherit the
    environment as it is when the block starts), closed after the block."""
    import distributed

    cluster_type: Any = distributed.LocalCluster
    client_type: Any = distributed.Client
    with (
        cluster_type(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        client_type(cluster) as client,
    ):
        yield client
