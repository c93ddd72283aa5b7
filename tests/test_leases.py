"""Key leases on an object store (moto's S3 server on 127.0.0.1): one of N machines computes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memo
from memo._config import lease_settings_from_env
from memo._exceptions import reset_warnings
from memo._storage import _lease_body as lease_body
from memo._storage._backend import Outgoing
from memo._storage._fsspec import FsspecBackend
from memo._storage._leases import LeaseSettings, ObjectLeases
from memo._storage._open import forget_stores
from tests.clusters import two_workers
from tests.s3 import FAST, start_server

ROOT = Path(__file__).resolve().parents[1]
KEY = "0123456789abcdef" * 2
QUICK = LeaseSettings(seconds=1.0, heartbeat=0.15, poll=0.1)


@pytest.fixture(autouse=True)
def _fast_failing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """S3 requests that fail fast, and no store objects carried over between tests."""
    monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps(FAST))
    forget_stores()
    yield
    forget_stores()


def _machine(
    tmp_path: Path, index: int, url: str, body: float, **env: str
) -> subprocess.Popen[str]:
    """A caller of ``slow_value(1)`` in a process with its own HOME and temp directory (so
    nothing local is shared with the others: no lock file, no cache directory)."""
    home = tmp_path / f"machine-{index}"
    (home / "tmp").mkdir(parents=True)
    environment = {
        **os.environ,
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "MEMO_CACHE_DIR": str(home / "cache"),
        "MEMO_TEST_LEASE_URL": url,
        "MEMO_TEST_LEASE_LOG": str(tmp_path / "bodies.log"),
        "MEMO_TEST_LEASE_BODY": str(body),
        "MEMO_LEASE": "1.5s",
        "MEMO_LEASE_HEARTBEAT": "0.2s",
        "MEMO_LEASE_POLL": "0.2s",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.lease_functions import main; main()", "1"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    value: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return value


def _bodies(tmp_path: Path, event: str = "start") -> list[int]:
    """The pids whose body reached ``event``, in order."""
    log = tmp_path / "bodies.log"
    if not log.exists():
        return []
    return [
        int(line.split()[1]) for line in log.read_text().splitlines() if line.split()[0] == event
    ]


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _leases(url: str, settings: LeaseSettings = QUICK) -> tuple[FsspecBackend, ObjectLeases]:
    """A backend of its own with leases of its own, as on another machine."""
    backend = FsspecBackend(url)
    return backend, ObjectLeases(backend, settings)


def test_eight_machines_missing_one_key_compute_it_once(url: str, tmp_path: Path) -> None:
    """8 processes with nothing local in common call one missing key (a 3 s body): the body
    runs once and every caller gets its value."""
    machines = [_machine(tmp_path, i, url, body=3.0) for i in range(8)]
    results = [_result(process) for process in machines]
    assert len(_bodies(tmp_path)) == 1
    computed_by = _bodies(tmp_path)[0]
    assert results == [{"x": 1, "pid": computed_by}] * 8
    assert memo.Store(url).exactly_once


def test_a_killed_holder_is_taken_over_by_exactly_one_waiter(url: str, tmp_path: Path) -> None:
    """A holder SIGKILLed mid-body stops renewing its lease; after the lease's length one
    waiter takes it over and computes, and the others load its value."""
    holder = _machine(tmp_path, 0, url, body=30.0)
    _wait_for(lambda: _bodies(tmp_path) == [holder.pid])
    waiters = [_machine(tmp_path, i, url, body=1.0) for i in range(1, 5)]
    time.sleep(1.0)  # (they start and find the lease held)
    holder.kill()
    holder.wait()
    results = [_result(process) for process in waiters]
    starts = _bodies(tmp_path)
    assert starts[0] == holder.pid
    assert len(starts) == 2, "exactly one waiter took over"
    assert starts[1] in {process.pid for process in waiters}
    assert results == [{"x": 1, "pid": starts[1]}] * 4


def test_a_frozen_holder_loses_its_lease_and_cannot_overwrite(url: str, tmp_path: Path) -> None:
    """A holder frozen (SIGSTOP) past its lease is taken over; resumed, it finishes its body,
    but its create-only publish leaves the winner's entry, and it returns what is stored."""
    lease = 4.0
    frozen = _machine(tmp_path, 0, url, body=3.0, MEMO_LEASE=f"{lease}s")
    _wait_for(lambda: _bodies(tmp_path) == [frozen.pid])
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        started = time.time()
        winner = _machine(tmp_path, 1, url, body=0.2, MEMO_LEASE=f"{lease}s")
        won = _result(winner)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert won == {"x": 1, "pid": winner.pid}
    lines = (tmp_path / "bodies.log").read_text().splitlines()
    began = min(float(at) for what, pid, _, at in map(str.split, lines) if int(pid) == winner.pid)
    assert began - started >= lease, "the winner waited for the frozen holder's lease to expire"
    late = _result(frozen)
    assert _bodies(tmp_path, "end") == [winner.pid, frozen.pid]  # both bodies ran to the end
    assert late == won, "the resumed holder returns the entry's value, not its own"
    from tests import lease_functions

    reader = memo.decorate(
        lease_functions.slow_value.__wrapped__, cache_path=url, ignore=["caller"]
    )
    assert reader.is_cached(1)
    assert reader(1) == won


def test_a_renewed_lease_is_never_taken_over(url: str) -> None:
    """While its holder's heartbeat renews it, a lease outlives its length: a waiter's time
    runs out; once released, the waiter takes it at once."""
    _, first = _leases(url)
    _, second = _leases(url)
    held, lease = first.take("f", KEY, 1.0)
    assert held
    assert lease is not None
    started = time.monotonic()
    assert second.take("f", KEY, 2.5) == (False, None)  # 2.5 s > the 1 s lease
    assert time.monotonic() - started >= 2.5
    lease.release()
    held, again = second.take("f", KEY, 1.0)
    assert held
    assert again is not None
    again.release()


def test_an_expired_lease_is_taken_over_by_exactly_one_of_many(url: str) -> None:
    """A lease nobody renews is taken over once: of 6 waiters racing, one wins; the others
    wait on the winner's (renewed) lease until their time runs out."""
    backend, _ = _leases(url)
    stale = b'{"holder": "gone:1:00", "beat": 0, "seconds": 1.0}'
    backend.put_object(backend.lease_path("f", KEY), stale)
    outcomes: list[tuple[bool, Any]] = []
    barrier = threading.Barrier(6)

    def wait() -> None:
        _, leases = _leases(url)
        barrier.wait()
        outcomes.append(leases.take("f", KEY, 4.0))

    threads = [threading.Thread(target=wait) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [lease for held, lease in outcomes if lease is not None]
    assert len(winners) == 1
    assert sorted(held for held, _ in outcomes) == [False] * 5 + [True]
    winners[0].release()
    assert backend.get_object(backend.lease_path("f", KEY)) is None


def test_a_holder_whose_lease_was_taken_stops_renewing_and_leaves_it(url: str) -> None:
    """A holder that finds another's lease in place of its own (it was taken over) stops
    renewing it, and releasing leaves the other's lease alone."""
    backend, leases = _leases(url)
    held, lease = leases.take("f", KEY, 1.0)
    assert held
    assert lease is not None
    path = backend.lease_path("f", KEY)
    theirs = b'{"holder": "other:2:ff", "beat": 0, "seconds": 1.0}'
    backend.put_object(path, theirs)
    _wait_for(lambda: lease.lost, timeout=5)
    lease.release()
    assert backend.get_object(path) == theirs


def test_a_holder_past_half_its_lease_reads_it_back_before_deleting(url: str) -> None:
    """Released soon after it was written, a lease is deleted at once (no one can have taken
    it over); released later than half its length, it is read first, and another holder's
    lease is left in place even when this holder's heartbeat never noticed the takeover."""
    unrenewed = LeaseSettings(seconds=1.0, heartbeat=60.0, poll=0.05)
    backend, leases = _leases(url, unrenewed)
    path = backend.lease_path("f", KEY)
    _, fresh = leases.take("f", KEY, 1.0)
    assert fresh is not None
    fresh.release()
    assert backend.get_object(path) is None
    _, late = leases.take("f", KEY, 1.0)
    assert late is not None
    time.sleep(0.6)
    theirs = b'{"holder": "other:3:ee", "beat": 0, "seconds": 1.0}'
    backend.put_object(path, theirs)  # (as a waiter that took the lease over would)
    assert not late.lost
    late.release()
    assert backend.get_object(path) == theirs


def _stored_under_a_lease(backend: FsspecBackend) -> None:
    """Take the key's lease, store its entry, and release the lease, as a miss does."""
    claim, held = backend.locks.acquire(KEY, 5.0, "f")
    assert held
    assert backend.locks.absent(claim)
    backend.publish("f", KEY, Outgoing(None, (b"an entry", b"")), replace=False)
    backend.locks.release(KEY, claim, held)


def test_a_lease_whose_entry_was_stored_stays_done_and_turns_the_next_caller_to_it(
    url: str,
) -> None:
    """Released after its entry was stored, a lease stays behind as done; a machine that
    missed the entry before it was stored then gets no lease (it loads the entry) without
    looking for the entry again first."""
    backend = FsspecBackend(url)
    _stored_under_a_lease(backend)
    done = backend.get_object(backend.lease_path("f", KEY))
    assert done is not None
    assert json.loads(done)["done"] is True
    other = FsspecBackend(url)  # (as on another machine, which missed it a moment ago)
    claim, held = other.locks.acquire(KEY, 5.0, "f")
    assert held
    assert not other.locks.absent(claim)  # the caller looks, and loads the entry
    other.locks.release(KEY, claim, held)
    assert backend.get_object(backend.lease_path("f", KEY)) == done


def test_a_done_lease_without_its_entry_is_taken_over_at_once(url: str) -> None:
    """A done lease whose entry is gone (a lifecycle rule deleted it) does not make a caller
    wait for it to expire: it is taken over at once, by one caller."""
    backend = FsspecBackend(url)  # (60 s leases: waiting for one to expire would time out)
    _stored_under_a_lease(backend)
    backend.remove_object(backend.location("f", KEY).removeprefix("s3://"))
    first, second = FsspecBackend(url), FsspecBackend(url)
    held, lease = first.locks.take("f", KEY, 5.0)
    assert held
    assert lease is not None
    assert second.locks.take("f", KEY, 0.5) == (False, None)  # (the first holds it now)
    lease.release()


def test_deleting_an_entry_deletes_its_done_lease(url: str) -> None:
    """Deleting an entry removes its done lease too, so computing it again takes a new lease
    with its first write."""
    backend = FsspecBackend(url)
    _stored_under_a_lease(backend)
    assert backend.delete("f", KEY)
    assert backend.get_object(backend.lease_path("f", KEY)) is None


def _triple(x: int) -> int:
    return 3 * x


def test_verify_reports_and_fixes_a_done_lease_whose_entry_is_gone(url: str) -> None:
    """``memo verify`` on an object store lists a done lease whose entry was removed by other
    means (a lifecycle rule); ``fix`` removes it. A lease whose entry is there is left."""
    triple = memo.decorate(_triple, cache_path=url)
    triple(1)
    (entry,) = memo.Store(url).entries()
    backend = FsspecBackend(url)
    lease = backend.lease_path(entry.name, entry.key)
    assert backend.locks.is_done(lease)
    assert memo.Store(url).verify() == []
    backend.remove_object(str(entry.path).removeprefix("s3://"))
    (problem,) = memo.Store(url).verify()
    assert problem.kind == "orphan-lease"
    assert str(problem.path) == "s3://" + lease
    assert not problem.fixed
    (fixed,) = memo.Store(url).verify(fix=True)
    assert fixed.fixed
    assert backend.get_object(lease) is None
    assert memo.Store(url).verify() == []


def test_a_lease_whose_body_failed_is_removed(url: str) -> None:
    """Released with nothing stored (the body raised), a lease is removed, not left done."""
    backend = FsspecBackend(url)
    claim, held = backend.locks.acquire(KEY, 5.0, "f")
    backend.locks.release(KEY, claim, held)
    assert backend.get_object(backend.lease_path("f", KEY)) is None


def test_a_network_failure_during_the_body_never_fails_the_call(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server gone while a lease is held (renewal, release and publish fail): the call
    returns its value, with one warning per failure."""
    server, endpoint = start_server()
    stopped = threading.Event()
    try:
        monkeypatch.setenv("MEMO_STORAGE_OPTIONS", json.dumps({**FAST, "endpoint_url": endpoint}))
        monkeypatch.setenv("MEMO_LEASE", "1s")
        monkeypatch.setenv("MEMO_LEASE_HEARTBEAT", "0.1s")
        from tests.s3 import s3_client

        s3_client(endpoint).create_bucket(Bucket=bucket)

        @memo.cache(cache_path=f"s3://{bucket}/cut")
        def cut_off(x: int) -> int:
            server.stop()
            stopped.set()
            time.sleep(0.5)  # (heartbeats fail meanwhile)
            return x * 10

        reset_warnings()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cut_off(4) == 40
        messages = [str(w.message) for w in caught if issubclass(w.category, memo.MemoWarning)]
        assert any("could not renew the lease" in text for text in messages)
        assert any("could not release the lease" in text for text in messages)
        assert any("could not cache the result" in text for text in messages)
        assert len(messages) == len(set(messages))
    finally:
        if not stopped.is_set():
            server.stop()


def test_lease_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMO_LEASE sets the length, the heartbeat defaults to a quarter of it; a heartbeat as
    long as the lease is refused with a clear error."""
    monkeypatch.setenv("MEMO_LEASE", "2m")
    assert lease_settings_from_env() == LeaseSettings(120.0, 30.0, 1.0)
    monkeypatch.setenv("MEMO_LEASE_HEARTBEAT", "2m")
    with pytest.raises(memo.ConfigError, match="MEMO_LEASE_HEARTBEAT"):
        lease_settings_from_env()


def test_dask_workers_missing_one_key_compute_it_once(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two maps of the same call, run at once on a 2-worker dask cluster over an S3 store (a
    task on each worker, both missing the key), compute it once."""
    log = tmp_path / "bodies.log"
    for name, value in {
        "MEMO_TEST_LEASE_URL": url,
        "MEMO_TEST_LEASE_LOG": str(log),
        "MEMO_TEST_LEASE_BODY": "2",
        "MEMO_LEASE": "5s",
    }.items():
        monkeypatch.setenv(name, value)
    with two_workers() as client:
        from tests import lease_functions

        results: list[Any] = [None, None]

        def run(caller: int) -> None:
            # The two tasks differ for dask (which would merge equal ones), not for memo.
            items = [memo.Args(5, caller=caller)]
            results[caller] = lease_functions.slow_value.map(
                items, executor=client, progress=False, chunksize=1
            )

        threads = [threading.Thread(target=run, args=(caller,)) for caller in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = [line.split() for line in log.read_text().splitlines() if line.startswith("start")]
    assert [int(x) for _, _, x, _ in lines] == [5], "computed once"
    first, second = results
    assert first == second == [{"x": 5, "pid": int(lines[0][1])}]


def test_verify_reports_and_fixes_a_takeover_marker_its_taker_left(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A takeover marker whose taker died (its lease gone; another holder's or done, as
    tests/test_lease_body.py checks) is listed by ``memo verify`` once older than twice the
    lease's length, and ``fix`` removes it; the marker of a taker holding its lease is left."""
    monkeypatch.setenv("MEMO_LEASE", "2s")
    forget_stores()
    backend = FsspecBackend(url)
    lease = backend.lease_path("f", KEY)  # (no such lease: its taker died, it expired)
    left = lease_body.marker_path(lease, b"the lease the dead taker saw")
    backend.create_object(left, b"dead-taker")
    other_key = "fedcba9876543210" * 2
    live_lease = backend.lease_path("g", other_key)
    backend.create_object(live_lease, lease_body.body("live-taker", 3, 2.0))
    live = lease_body.marker_path(live_lease, b"the lease it took over")
    backend.create_object(live, b"live-taker")
    assert memo.Store(url).verify() == []  # (not yet older than twice the lease's length)
    time.sleep(5.1)  # (past twice 2 s, write times being whole seconds on S3)
    (problem,) = memo.Store(url).verify()
    assert (problem.kind, str(problem.path), problem.fixed) == (
        "orphan-marker",
        f"s3://{left}",
        False,
    )
    (fixed,) = memo.Store(url).verify(fix=True)
    assert fixed.fixed
    assert backend.get_object(left) is None
    assert backend.get_object(live) == b"live-taker"
    assert memo.Store(url).verify() == []
