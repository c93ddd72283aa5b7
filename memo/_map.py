"""``f.map(items, executor=...)``: compute only what is missing, anywhere, and resume.

Items are deduplicated by key; the cached ones are loaded, the missing ones are computed on
the executor, each stored by whichever process computed it as soon as it is done, so an
interrupted batch resumes where it stopped. Failures do not stop the other items: they are
collected into one ``MapError`` that also carries the successful results.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from ._exceptions import ConfigError, MemoError

__all__ = ["Args", "Batch", "MapError", "arun_map", "run_map"]

logger = logging.getLogger("memo")
_LOG_EVERY = 5.0  # seconds between progress lines when tqdm is not there
_SHOWN_MESSAGE = 300  # characters of the first failure's message in a MapError's text
# In a worker: the functions shipped by value, by their pickled bytes, so each chunk of a
# batch reuses one function object (its code fingerprint and store are settled once).
_shipped: dict[bytes, Any] = {}
_SHIPPED_KEPT = 8
_CONCURRENT_TASKS = 32  # items of an async function's batch awaited at once, by default
Call = tuple[tuple[Any, ...], dict[str, Any]]  # an item's (args, kwargs)


class Staged(Protocol):
    """A missing item's call in three steps (``_calls.Pending``): ``claim`` and ``finish``
    make the round trips, on worker threads; ``run`` runs the body, in the caller's thread."""

    def claim(self) -> None: ...
    def run(self) -> None: ...
    def finish(self) -> Any: ...
    def release(self) -> None: ...


class Batch(NamedTuple):
    """What a batch needs of its memoized function: ``key_of`` an item's call, ``load`` a
    key's stored value (or ``missing``), ``stored()`` the keys the store lists for the
    function (None where a look per key is as cheap: a local directory), how many round
    trips may be in flight at once (``width``: more than one on an object store), and
    ``stage``, which makes a missing item's call in steps whose round trips overlap (None
    where they are not round trips)."""

    key_of: Callable[[tuple[Any, ...], dict[str, Any]], str]
    load: Callable[[str], Any]
    missing: Any
    stored: Callable[[], set[str]] | None
    width: int
    stage: Callable[[tuple[Any, ...], dict[str, Any]], Staged] | None


class Args:
    """The arguments of one call in ``f.map``: ``memo.Args(1, 2, scale=3)``.

    Needed only when an item is itself a tuple or dict that must be passed as one argument;
    otherwise a tuple item is unpacked as positional arguments, a dict item as keywords, and
    anything else is the single argument.
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"memo.Args({', '.join(parts)})"


class MapError(MemoError, ExceptionGroup[Exception]):
    """Some (or all) items of ``f.map`` failed; the others were loaded or computed and stored.

    An ``ExceptionGroup`` of each failed item's exception (with a note naming the item);
    ``results`` is the full result list in input order with ``None`` at failed positions,
    ``failed`` the failed positions.
    """

    results: list[Any]
    failed: list[int]

    def __new__(cls, message: str, exceptions: Any, results: Any = None, failed: Any = None) -> Any:
        self = super().__new__(cls, message, exceptions)
        self.results = list(results or [])
        self.failed = list(failed or [])
        return self

    def __init__(self, message: str, exceptions: Any, results: Any = None, failed: Any = None):
        super().__init__(message, exceptions)

    def derive(self, excs: Any) -> MapError:  # type: ignore[override]
        """Keep results and positions when ``except*`` splits the group."""
        return MapError(self.message, excs, self.results, self.failed)


def normalize(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """An item as (args, kwargs), by the rules ``Args`` documents."""
    if isinstance(item, Args):
        return item.args, item.kwargs
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, dict):
        return (), item
    return (item,), {}


def _run_chunk(function: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """In a worker: compute (and store) each call; failures are returned, not raised."""
    results: list[Any] = []
    for args, kwargs in calls:
        try:
            results.append((True, function(*args, **kwargs)))
        except Exception as exc:
            results.append((False, exc))
    return results


def _run_shipped(payload: bytes, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """In a worker: ``_run_chunk`` with the function sent by value (cloudpickle's bytes)."""
    function = _shipped.get(payload)
    if function is None:
        function = pickle.loads(payload)  # (cloudpickle's output needs only pickle to load)
        if len(_shipped) >= _SHIPPED_KEPT:
            _shipped.clear()
        _shipped[payload] = function
    return _run_chunk(function, calls)


def _executor(executor: Any, workers: int | None) -> tuple[Any, bool]:
    """The executor to submit to, and whether we made it (and must shut it down)."""
    import concurrent.futures  # (for batches only: not imported with memo)

    if executor == "threads":
        return concurrent.futures.ThreadPoolExecutor(workers), True
    if executor == "processes":
        return concurrent.futures.ProcessPoolExecutor(workers), True
    if hasattr(executor, "get_executor") and not isinstance(executor, concurrent.futures.Executor):
        return executor.get_executor(), False  # a dask.distributed Client
    if isinstance(executor, concurrent.futures.Executor) or hasattr(executor, "submit"):
        return executor, False
    raise ConfigError(
        "executor must be None (serial), 'threads', 'processes', a concurrent.futures.Executor "
        f"or a dask.distributed Client, not {executor!r}"
    )


class _Progress:
    """tqdm when it is installed (and wanted), else a log line every few seconds."""

    def __init__(self, total: int, cached: int, label: str, progress: bool | None) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.label = label
        self.bar: Any = None
        self.enabled = progress is not False and total > 0
        self.last = time.monotonic()
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            # The counts on the bar itself: the log line saying them is seen only with
            # logging configured, the bar always.
            description = f"{label}: {cached:,} cached, {total:,} to compute"
            self.bar = tqdm(total=total, desc=description, unit="item")

    def advance(self, count: int = 1, failed: int = 0) -> None:
        self.done += count
        self.failed += failed
        if not self.enabled:
            return
        if self.bar is not None:
            if failed:
                # (A bar of failures must not look like a batch done: the count stays shown.)
                self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(count)
        elif time.monotonic() - self.last >= _LOG_EVERY or self.done == self.total:
            self.last = time.monotonic()
            logger.info(
                "%s: %d of %d done, %d failed", self.label, self.done, self.total, self.failed
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_map(
    memoized: Any,
    items: Iterable[Any],
    batch: Batch,
    *,
    executor: Any = None,
    progress: bool | None = None,
    max_workers: int | None = None,
    chunksize: int | None = None,
    label: str = "map",
) -> list[Any]:
    """The engine behind ``Memoized.map`` (see its docstring). ``memoized`` computes an item
    the plan found missing (and stores it)."""
    calls, keys, values, pending = _plan(items, batch, label)
    errors: dict[str, BaseException] = {}
    bar = _Progress(len(pending), len(values), label, progress)
    try:
        if executor is None and batch.stage is not None and len(pending) > 1:
            _run_staged(batch.stage, pending, values, errors, bar, batch.width)
        elif executor is None:
            for key, (args, kwargs) in pending:
                try:
                    values[key] = memoized(*args, **kwargs)
                except Exception as exc:
                    errors[key] = exc
                    bar.advance(failed=1)
                else:
                    bar.advance()
        elif pending:
            _run_on(executor, memoized, pending, values, errors, bar, max_workers, chunksize)
    finally:
        bar.close()
    return _collect(keys, values, errors, calls)


async def arun_map(
    memoized: Any,
    items: Iterable[Any],
    batch: Batch,
    *,
    progress: bool | None = None,
    max_workers: int | None = None,
    label: str = "map",
) -> list[Any]:
    """``run_map`` for an ``async def``: the missing items are awaited concurrently on the
    running event loop, at most ``max_workers`` (default 32) at a time."""
    import asyncio

    calls, keys, values, pending = await asyncio.to_thread(_plan, items, batch, label)
    errors: dict[str, BaseException] = {}
    bar = _Progress(len(pending), len(values), label, progress)
    limit = asyncio.Semaphore(max_workers or _CONCURRENT_TASKS)

    async def one(key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        async with limit:
            try:
                values[key] = await memoized(*args, **kwargs)
            except Exception as exc:
                errors[key] = exc
                bar.advance(failed=1)
            else:
                bar.advance()

    try:
        await asyncio.gather(*(one(key, args, kwargs) for key, (args, kwargs) in pending))
    finally:
        bar.close()
    return _collect(keys, values, errors, calls)


def _plan(
    items: Iterable[Any], batch: Batch, label: str
) -> tuple[list[Call], list[str], dict[str, Any], list[tuple[str, Call]]]:
    """A batch's calls, their keys, the values of those cached, and the calls to compute
    (one per key: a duplicate item is computed, or loaded, once).

    Where the store can list (an object store), the first key is loaded: if it is missing,
    the batch is taken for a new one and the store is listed once, so that only keys it
    holds are loaded (a key missing from the listing costs no request); if it is stored,
    every key is loaded (a batch run before, or resumed). Loads run ``batch.width`` at a
    time."""
    calls = [normalize(item) for item in items]
    keys = [batch.key_of(args, kwargs) for args, kwargs in calls]
    first: dict[str, Call] = {}
    for key, call in zip(keys, calls, strict=True):
        first.setdefault(key, call)
    unique = list(first)
    found: dict[str, Any] = {}
    if batch.stored is not None and len(unique) > 1:
        found[unique[0]] = batch.load(unique[0])
        if found[unique[0]] is batch.missing:
            listed = batch.stored()
            unique = [key for key in unique if key in listed]
    found.update(_load_all(batch, [key for key in unique if key not in found]))
    values = {key: value for key, value in found.items() if value is not batch.missing}
    todo = [(key, call) for key, call in first.items() if key not in values]
    logger.info("%s: %d cached, %d to compute", label, len(values), len(todo))
    return calls, keys, values, todo


def _load_all(batch: Batch, keys: list[str]) -> dict[str, Any]:
    """Each key's stored value (or ``batch.missing``), ``batch.width`` at a time."""
    if batch.width <= 1 or len(keys) <= 1:
        return {key: batch.load(key) for key in keys}
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(min(batch.width, len(keys))) as pool:
        return dict(zip(keys, pool.map(batch.load, keys), strict=True))


def _run_staged(
    stage: Callable[[tuple[Any, ...], dict[str, Any]], Staged],
    pending: list[tuple[str, Call]],
    values: dict[str, Any],
    errors: dict[str, BaseException],
    bar: _Progress,
    width: int,
) -> None:
    """Compute the missing items of a serial batch on an object store: their bodies one after
    another in this thread, their round trips (lease, stored meanwhile?, store, release) on
    worker threads, up to ``width`` items claimed ahead. The body of whichever claimed item
    is ready runs next, so a key another caller holds never holds up the others (and two
    callers mapping the same items in other orders never wait for each other in a circle).
    Claims and stores have a pool each: a store (which gives a lease back) never waits
    behind a claim waiting for a lease."""
    import concurrent.futures

    todo = iter(pending)
    claims = concurrent.futures.ThreadPoolExecutor(width, thread_name_prefix="memo-claim")
    stores = concurrent.futures.ThreadPoolExecutor(width, thread_name_prefix="memo-store")
    claimed: dict[concurrent.futures.Future[None], tuple[str, Staged]] = {}
    finished: list[tuple[str, concurrent.futures.Future[Any]]] = []

    def claim_more() -> None:
        while len(claimed) < width:
            item = next(todo, None)
            if item is None:
                return
            key, (args, kwargs) = item
            call = stage(args, kwargs)
            claimed[claims.submit(call.claim)] = (key, call)

    try:
        claim_more()
        while claimed:
            ready, _ = concurrent.futures.wait(claimed, return_when="FIRST_COMPLETED")
            for future in ready:
                key, call = claimed.pop(future)
                try:
                    future.result()
                    call.run()
                except BaseException as exc:
                    stores.submit(call.release)
                    if not isinstance(exc, Exception):
                        raise
                    errors[key] = exc
                    bar.advance(failed=1)
                else:
                    finished.append((key, stores.submit(call.finish)))
                    bar.advance()
                claim_more()
        for key, stored in finished:
            try:
                values[key] = stored.result()
            except Exception as exc:
                errors[key] = exc
    finally:
        for future, (_, call) in claimed.items():  # (interrupted: leases taken ahead go back)
            future.add_done_callback(_releaser(call))
        claims.shutdown(wait=False, cancel_futures=True)
        stores.shutdown(wait=True)


def _run_on(
    executor: Any,
    memoized: Any,
    pending: list[tuple[str, tuple[tuple[Any, ...], dict[str, Any]]]],
    values: dict[str, Any],
    errors: dict[str, BaseException],
    bar: _Progress,
    max_workers: int | None,
    chunksize: int | None,
) -> None:
    import concurrent.futures

    pool, owned = _executor(executor, max_workers)
    workers = max_workers or getattr(pool, "_max_workers", None) or 4
    # Several items per task keep the per-task overhead of process pools small, while
    # enough tasks remain for every worker and for frequent progress.
    size = chunksize or max(1, min(64, len(pending) // (workers * 8)))
    try:
        task: Callable[[Any, Any], list[Any]] = _run_chunk
        function: Any = memoized
        if not isinstance(pool, concurrent.futures.ThreadPoolExecutor):
            # Another process runs the items: send the function by value, as cloudpickle (and
            # joblib's loky) do, so one defined in a script's __main__ or inside a function
            # works too (plain pickle names it, and that name finds the memoized wrapper).
            # A function importable by name is still sent by name (Memoized.__reduce__).
            try:
                task, function = _run_shipped, _by_value(memoized)
            except Exception as exc:  # cannot be sent at all: every item fails with why
                for key, _ in pending:
                    errors[key] = exc
                bar.advance(len(pending), failed=len(pending))
                return
        futures = {}
        for chunk in _chunks(pending, size):
            calls = [call for _, call in chunk]
            futures[pool.submit(task, function, calls)] = [key for key, _ in chunk]
        for future in concurrent.futures.as_completed(futures):
            chunk_keys = futures[future]
            try:
                outcomes = future.result()
            except Exception as exc:  # the task itself failed (e.g. a worker died)
                outcomes = [(False, exc)] * len(chunk_keys)
            failures = 0
            for key, (ok, value) in zip(chunk_keys, outcomes, strict=True):
                if ok:
                    values[key] = value
                else:
                    errors[key] = value
                    failures += 1
            bar.advance(len(chunk_keys), failed=failures)
    finally:
        if owned:
            pool.shutdown(wait=True, cancel_futures=True)


def _releaser(call: Staged) -> Callable[[Any], None]:
    def release(_: Any) -> None:
        call.release()

    return release


def _by_value(function: Any) -> bytes:
    import cloudpickle  # (a core dependency; imported for batches on other processes only)

    return bytes(cloudpickle.dumps(function))


def _collect(
    keys: list[str],
    values: dict[str, Any],
    errors: dict[str, BaseException],
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
) -> list[Any]:
    results = [values.get(key) for key in keys]
    if not errors:
        return results
    failed = [index for index, key in enumerate(keys) if key in errors]
    # One exception can stand for several items (a whole chunk whose worker died): each is
    # reported once, with a note naming its items.
    items_of: dict[int, list[int]] = {}
    unique: dict[int, BaseException] = {}
    for index in failed:
        exc = errors[keys[index]]
        items_of.setdefault(id(exc), []).append(index)
        unique[id(exc)] = exc
    reported = []
    for ident, exc in unique.items():
        indices = items_of[ident]
        args, kwargs = calls[indices[0]]
        if len(indices) == 1:
            exc.add_note(f"memo: item {indices[0]} (args={args!r}, kwargs={kwargs!r}) of map")
        else:
            shown = ", ".join(map(str, indices[:10])) + (", ..." if len(indices) > 10 else "")
            exc.add_note(f"memo: items {shown} ({len(indices)} in all) of map")
        reported.append(exc)
    raise MapError(_message(len(failed), len(keys), reported[0]), reported, results, failed)


def _message(failed: int, total: int, first: BaseException) -> str:
    """``all 4 items failed; ... The first failure: ValueError: ...``, or ``2 of 15 ...``."""
    detail = " ".join(str(first).split())
    if len(detail) > _SHOWN_MESSAGE:
        detail = detail[: _SHOWN_MESSAGE - 3] + "..."
    shown = f"{type(first).__name__}: {detail}" if detail else type(first).__name__
    if total == 1:
        return f"the only item failed: {shown}"
    if failed == total:
        return f"all {total:,} items failed; nothing was stored. The first failure: {shown}"
    return (
        f"{failed:,} of {total:,} items failed; the others were loaded or computed and stored "
        f"(their values are in .results). The first failure: {shown}"
    )
