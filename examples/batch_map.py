"""A batch over many inputs with ``map`` on a dask cluster, and resuming it.

``embed`` stands for a per-shard job (here: a small numpy computation with a pause). The first
batch asks for 24 shards; memo logs "0 cached, 24 to compute" and runs them on a local
``dask.distributed`` cluster of two worker processes, each result stored by the worker that
computed it. The second batch asks for 32 shards: only the 8 new ones are computed ("24 cached,
8 to compute") — which is also what happens when an interrupted batch is started again.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np

import memo

CACHE = tempfile.mkdtemp(prefix="memo-batch-")


@memo.cache(cache_path=CACHE)
def embed(shard: int) -> dict[str, float]:
    """Pretend to embed one shard of a corpus (deterministic, a little slow)."""
    time.sleep(0.05)
    rng = np.random.default_rng(shard)
    vectors = rng.normal(size=(2000, 32))
    return {"shard": shard, "norm": float(np.linalg.norm(vectors.mean(axis=0))), "pid": os.getpid()}


def _quiet_heartbeats() -> None:
    """On a worker: leave out the errors of heartbeats that a closing cluster cuts off."""
    logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)


def main() -> None:
    """Run two batches on a local dask cluster and report what was computed where."""
    import distributed

    logging.basicConfig(format="  log: %(message)s", level=logging.INFO)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster_type: Any = distributed.LocalCluster  # dask ships no type hints
    client_type: Any = distributed.Client
    with (
        cluster_type(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        client_type(cluster) as client,
    ):
        for shards in (24, 32):
            started = time.perf_counter()
            results = embed.map(range(shards), executor=client, progress=False)
            pids = {result["pid"] for result in results}
            print(
                f"batch of {shards}: {time.perf_counter() - started:5.2f} s, "
                f"results from {len(pids)} worker processes (driver pid {os.getpid()})"
            )
        # Closing the cluster can race a worker's heartbeat, which dask logs with a traceback.
        client.run(_quiet_heartbeats)
    print(f"cache directory: {CACHE} (removed now that the example is done)")
    shutil.rmtree(CACHE)


if __name__ == "__main__":
    main()
