"""f.map: only missing items computed, deduplicated, on any executor, resumable, failures kept."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memo
from tests.clusters import two_workers
from tests.map_functions import crashing, fragile, square


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A file each computation appends "item pid" to; fresh stores for the shared functions."""
    path = tmp_path / "computed.log"
    path.touch()
    monkeypatch.setenv("MEMO_TEST_MAP_LOG", str(path))
    for function in (square, fragile):
        function._calls.state = None  # resolve MEMO_CACHE_DIR of this test
    yield path
    for function in (square, fragile):
        function._calls.state = None


def computed(log: Path) -> list[int]:
    """The items computed so far (in any process)."""
    return [int(line.split()[0]) for line in log.read_text().splitlines()]


def test_only_missing_items_are_computed(log: Path) -> None:
    """A map over 200 items of which 150 are cached runs the body exactly 50 times."""
    square.map(range(150), progress=False)
    log.write_text("")
    assert square.map(range(200), progress=False) == [x * x for x in range(200)]
    assert sorted(computed(log)) == list(range(150, 200))


def test_identical_items_are_computed_once(log: Path) -> None:
    """Duplicates in the input are computed once and returned at every position."""
    assert square.map([3, 1, 3, 3, 1], progress=False) == [9, 1, 9, 9, 1]
    assert sorted(computed(log)) == [1, 3]


def test_item_forms(cache_dir: Path) -> None:
    """Tuples unpack as positional arguments, dicts as keywords, Args as both."""

    @memo.cache(cache_path=cache_dir)
    def power(base: int, exponent: int = 2) -> int:
        return int(base**exponent)

    items: list[Any] = [(2, 3), {"base": 3}, memo.Args(4, exponent=1), 5]
    assert power.map(items, progress=False) == [8, 9, 4, 25]
    assert power.is_cached(2, 3)
    assert repr(memo.Args(1, b=2)) == "memo.Args(1, b=2)"


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_named_executors(log: Path, executor: str) -> None:
    """Threads and processes compute the missing items; results come back in input order."""
    items = list(range(40, 0, -1))
    assert square.map(items, executor=executor, max_workers=2, progress=False) == [
        x * x for x in items
    ]
    assert sorted(computed(log)) == sorted(items)
    assert all(square.is_cached(x) for x in items)
    if executor == "processes":
        assert {int(line.split()[1]) for line in log.read_text().splitlines()} - {os.getpid()}


def test_any_executor_instance(log: Path) -> None:
    """A user's own concurrent.futures executor is used as given (and left open)."""
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert square.map([1, 2, 3], executor=pool, progress=False) == [1, 4, 9]
        assert pool.submit(int, "5").result() == 5


def test_failures_are_collected_and_successes_kept(log: Path) -> None:
    """Failed items raise one MapError (an ExceptionGroup) holding the other results."""
    with pytest.raises(memo.MapError) as info:
        fragile.map(range(1, 16), executor="threads", progress=False)
    error = info.value
    assert isinstance(error, ExceptionGroup)
    assert sorted(error.failed) == [6, 13]  # items 7 and 14
    assert [type(e) for e in error.exceptions] == [ValueError, ValueError]
    assert error.results[0] == 2
    assert error.results[6] is None
    assert any(
        "item 6" in note for note in error.exceptions[0].__notes__ + error.exceptions[1].__notes__
    )
    assert fragile.is_cached(1)
    assert not fragile.is_cached(7)
    log.write_text("")
    with pytest.raises(memo.MapError):
        fragile.map(range(1, 16), progress=False)
    assert sorted(computed(log)) == [7, 14]  # only the failed ones are tried again


def test_except_star_keeps_results(log: Path) -> None:
    """Splitting a MapError with except* keeps its results."""
    caught: list[BaseExceptionGroup[ValueError]] = []
    try:
        fragile.map([1, 7], progress=False)
    except* ValueError as group:
        caught.append(group)
    assert isinstance(caught[0], memo.MapError)
    assert caught[0].results == [2, None]


def test_counts_are_logged(log: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The map logs how many items were cached and how many are computed."""
    square.map([1, 2], progress=False)
    with caplog.at_level(logging.INFO, logger="memo"):
        square.map([1, 2, 3, 4, 5], progress=False)
    assert any("2 cached, 3 to compute" in r.getMessage() for r in caplog.records)


def test_bad_executor_is_refused(log: Path) -> None:
    """An executor that is not one is a clear error."""
    with pytest.raises(TypeError, match="executor"):
        square.map([1], executor="gpus")


RESUMED = """
import sys, time
sys.path.insert(0, {root!r})
from tests.map_functions import square
import memo

@memo.cache
def slow(x):
    time.sleep(0.05)
    return square.__wrapped__(x)

print(len(slow.map(range(40), progress=False)), flush=True)
"""


def test_interrupted_batch_resumes(tmp_path: Path, log: Path) -> None:
    """A driver SIGKILLed midway leaves its finished items stored; a new run does the rest."""
    script = tmp_path / "batch.py"
    script.write_text(textwrap.dedent(RESUMED.format(root=str(Path(__file__).parent.parent))))
    env = {**os.environ, "MEMO_TEST_MAP_LOG": str(log)}
    first = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(computed(log)) < 15:
        assert time.monotonic() < deadline, "the first batch never got going"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    before = computed(log)
    assert len(before) < 40
    log.write_text("")
    second = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "40"
    again = computed(log)
    # Finished items are not computed again; only the one running at the kill may be.
    assert len(set(again) & set(before)) <= 1
    assert sorted(set(again) | set(before)) == list(range(40))


def test_dask_distributed_cluster(log: Path) -> None:
    """A real dask LocalCluster of worker processes computes the items into the shared store."""
    with two_workers() as client:
        items = list(range(30))
        assert square.map(items, executor=client, progress=False) == [x * x for x in items]
    pids = {int(line.split()[1]) for line in log.read_text().splitlines()}
    assert os.getpid() not in pids
    assert all(square.is_cached(x) for x in items)
    log.write_text("")
    assert square.map(items, progress=False) == [x * x for x in items]
    assert computed(log) == []


def test_memoized_kept_under_another_name_reaches_workers(tmp_path: Path) -> None:
    """memo.decorate(f) held under a new name still pickles (as function and options)."""
    import pickle

    renamed = memo.decorate(map_helper, cache_path=tmp_path / "renamed", version=3)
    clone = pickle.loads(pickle.dumps(renamed))
    assert clone.key(4) == renamed.key(4)
    assert renamed.map([1, 2, 3], executor="processes", max_workers=2, progress=False) == [
        3,
        5,
        7,
    ]
    assert renamed.is_cached(3)


def map_helper(x: int) -> int:
    """A plain module-level function, memoized under another name by a test."""
    return 2 * x + 1


def test_broken_pool_is_reported_once_per_chunk(log: Path) -> None:
    """When a worker dies, its task's items fail with one exception, not one per item."""
    crashing._calls.state = None
    with pytest.raises(memo.MapError) as info:
        crashing.map(
            [1, 2, 3, -1], executor="processes", max_workers=1, chunksize=4, progress=False
        )
    assert info.value.failed == [0, 1, 2, 3]
    assert len(info.value.exceptions) == 1
    assert "items 0, 1, 2, 3 (4 in all)" in info.value.exceptions[0].__notes__[-1]


SCRIPT = """
import memo

@memo.cache(cache_path={cache!r})
def sq(x):
    return x * x

if __name__ == "__main__":
    print(sq.map(range(6), executor="processes", max_workers=2, progress=False))
    print(all(sq.is_cached(x) for x in range(6)))
"""


def test_processes_run_a_scripts_own_function(tmp_path: Path) -> None:
    """A function memoized in a script's __main__ is shipped by value to worker processes."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(cache=str(tmp_path / "cache")))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[0, 1, 4, 9, 16, 25]", "True"], result.stdout


def test_all_failed_error_says_so_and_names_the_first(log: Path) -> None:
    """When every item fails the error says so, with the first exception's type and message."""
    with pytest.raises(memo.MapError) as info:
        fragile.map([7, 14], progress=False)
    message = str(info.value)
    assert "all 2 items failed" in message
    assert "the others" not in message
    assert "ValueError: 7 is a multiple of 7" in message


def test_some_failed_error_names_the_first(log: Path) -> None:
    """When some items fail the error counts them and shows the first exception."""
    with pytest.raises(memo.MapError) as info:
        fragile.map([1, 14, 2], progress=False)
    message = str(info.value)
    assert message.startswith("1 of 3 items failed")
    assert "ValueError: 14 is a multiple of 7" in message


def test_failures_are_counted_on_the_bar(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The progress bar counts failed items, so a batch that all failed does not look done."""
    with pytest.raises(memo.MapError):
        fragile.map([7, 14, 21, 1], progress=True)
    assert "failed=3" in capsys.readouterr().err


def test_counts_are_on_the_bar(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The progress bar shows how many items were cached and how many are computed."""
    square.map([1, 2], progress=False)
    square.map([1, 2, 3, 4, 5], progress=True)
    assert "2 cached, 3 to compute" in capsys.readouterr().err


def _leases_left(url: str) -> list[str]:
    """The lease objects in a store that are held still, not done (none once every call has
    ended)."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    prefix = url.removeprefix("s3://")
    leases = [path for path in fs.find(prefix) if path.endswith(".lease")]
    return [path for path in leases if json.loads(fs.cat_file(path)).get("done") is not True]


def test_a_serial_map_on_s3_runs_bodies_in_the_caller_one_at_a_time(s3_url: str) -> None:
    """On an object store the round trips of a serial map overlap, but every body runs in
    the calling thread, never two at once; each is stored, and no lease is left behind."""
    threads: set[int] = set()
    running: list[int] = []
    most = 0

    def body(x: int) -> int:
        nonlocal most
        threads.add(threading.get_ident())
        running.append(x)
        most = max(most, len(running))
        time.sleep(0.002)
        running.remove(x)
        return x * 3

    tripled = memo.decorate(body, cache_path=s3_url)
    assert tripled.map(range(40), progress=False) == [x * 3 for x in range(40)]
    assert threads == {threading.get_ident()}
    assert most == 1
    assert tripled.cache_info().misses == 40
    assert all(tripled.is_cached(x) for x in range(40))
    assert _leases_left(s3_url) == []


def test_a_failing_item_of_a_serial_map_on_s3_gives_its_lease_back(s3_url: str) -> None:
    """A body that raises fails its item only: the others are stored, its lease is given
    back (no lease is left), and a later map computes it again."""
    attempts: list[int] = []

    def body(x: int) -> int:
        attempts.append(x)
        if x == 3 and attempts.count(3) == 1:
            raise ValueError("three, the first time")
        return -x

    negated = memo.decorate(body, cache_path=s3_url)
    with pytest.raises(memo.MapError) as caught:
        negated.map(range(8), progress=False)
    assert caught.value.failed == [3]
    assert [caught.value.results[i] for i in range(8) if i != 3] == [0, -1, -2, -4, -5, -6, -7]
    assert _leases_left(s3_url) == []
    assert negated.map(range(8), progress=False) == [-x for x in range(8)]
    assert attempts.count(3) == 2
    assert len(attempts) == 9


def test_two_maps_of_the_same_items_in_opposite_orders_compute_each_once(s3_url: str) -> None:
    """Two callers mapping the same missing items, one in order and one reversed, never wait
    for each other in a circle: each item is computed once (the other caller loads it)."""
    computed: list[int] = []

    def body(x: int) -> int:
        computed.append(x)
        time.sleep(0.01)
        return x + 100

    shared = memo.decorate(body, cache_path=s3_url, lock_timeout=30)
    items = list(range(40))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        forward = pool.submit(shared.map, items, progress=False)
        backward = pool.submit(shared.map, items[::-1], progress=False)
        assert forward.result(timeout=60) == [x + 100 for x in items]
        assert backward.result(timeout=60) == [x + 100 for x in items[::-1]]
    assert sorted(computed) == items
    assert _leases_left(s3_url) == []
