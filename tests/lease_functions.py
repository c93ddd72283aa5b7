"""A memoized function for the lease tests, importable by child processes and dask workers.

Its store is ``MEMO_TEST_LEASE_URL`` (read at import); each run of its body appends a line
(the pid and the argument) to ``MEMO_TEST_LEASE_LOG`` when it starts and when it ends, and
lasts ``MEMO_TEST_LEASE_BODY`` seconds. A line is ``event pid x unix-time``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import memo


def _log(event: str, x: int) -> None:
    path = os.environ.get("MEMO_TEST_LEASE_LOG")
    if path:
        with open(path, "a") as handle:  # (O_APPEND: whole lines from many processes)
            handle.write(f"{event} {os.getpid()} {x} {time.time()}\n")


@memo.cache(
    cache_path=os.environ.get("MEMO_TEST_LEASE_URL", "memory://lease-tests"), ignore=["caller"]
)
def slow_value(x: int, caller: int = 0) -> dict[str, Any]:
    """``x`` and which process computed it, after a slow body (``caller``, left out of the
    key, makes otherwise equal calls different tasks to a scheduler)."""
    _log("start", x)
    time.sleep(float(os.environ.get("MEMO_TEST_LEASE_BODY", "3")))
    _log("end", x)
    return {"x": x, "pid": os.getpid()}


def main() -> None:
    """A caller in a process of its own: prints what ``slow_value(argv[1])`` gave, as JSON."""
    print(json.dumps(slow_value(int(sys.argv[1]))), flush=True)
