"""Dry runs: code run with every memoized call answered from the cache or recorded as "would
compute", running no body of a call that misses (``memo plan script.py``, ``memo.dry_run()``).

A memoized call that would hit returns its stored value, as in a real run. One that would
compute runs nothing: it returns an ``Unknown``, a stand-in for its value, and is recorded
with the reason ``explain`` gives. An ``Unknown`` passes through what code does with a value
without looking at it (arithmetic, attributes, items, calls, printing each give another
``Unknown``), and a memoized call with one among its arguments is recorded as a dependant: it
would compute because a call it uses the result of computes. Code that needs the value
itself (a branch on it, a loop over it, ``len``, a conversion to a number, pickling) stops
there (``NeedsValue``): the plan covers the calls made up to that line and says where it
stopped.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from ._explain import described_call, miss_reason
from ._keys._bytes import Context
from ._keys._canonical import add_rules
from ._storage._backend import MISS

__all__ = [
    "DryRun",
    "NeedsValue",
    "Unknown",
    "dry_call",
    "dry_run",
    "dry_runs",
    "ready",
    "run_script",
    "why_computed",
]

dry_runs: list[DryRun] = []
"""The dry run in progress, if any (a list, so a call asks only whether it is empty)."""

# Where code that is not the user's lives (memo's, the standard library's, installed
# packages'): the line a dry run stopped at is the innermost one of the user's code.
_NOT_YOURS = (os.path.dirname(os.path.abspath(__file__)), sys.prefix, sys.base_prefix)


class NeedsValue(BaseException):
    """Code in a dry run needed the value of a call that would compute. (A BaseException, so
    a script's ``except Exception`` does not swallow it.)"""

    def __init__(self, sources: frozenset[str]) -> None:
        super().__init__(f"needs the value of {_names(sources)}, which would compute")
        self.sources = sources


class Unknown:
    """The value of a memoized call that would compute, in a dry run, or a value made from
    one: what it is is known only once the call runs."""

    __slots__ = ("_sources",)

    def __init__(self, sources: frozenset[str]) -> None:
        object.__setattr__(self, "_sources", sources)

    def __repr__(self) -> str:
        return f"<would compute: {_names(self._sources)}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # (protocols asked for by name: numpy's, copy's, ...)
            raise AttributeError(name)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting an attribute of a value not known yet changes nothing known."""

    def __setitem__(self, item: Any, value: Any) -> None:
        """As ``__setattr__``."""

    __hash__ = object.__hash__

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise NeedsValue(self._sources)


def _derived(self: Unknown, *others: Any, **named: Any) -> Unknown:
    """A value made from unknown ones: unknown, for every source they came from."""
    sources = set(self._sources)
    for other in (*others, *named.values()):
        if isinstance(other, Unknown):
            sources |= other._sources
    return Unknown(frozenset(sources))


def _needs(self: Unknown, *others: Any) -> Any:
    raise NeedsValue(self._sources)


_ARITHMETIC = "add sub mul matmul truediv floordiv mod divmod pow lshift rshift and xor or"
for _name in [
    "call",
    "getitem",
    "neg",
    "pos",
    "abs",
    "invert",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
    "round",
    "trunc",
    "floor",
    "ceil",
]:
    setattr(Unknown, f"__{_name}__", _derived)
for _name in _ARITHMETIC.split():
    setattr(Unknown, f"__{_name}__", _derived)
    setattr(Unknown, f"__r{_name}__", _derived)
for _name in ["bool", "len", "iter", "contains", "int", "float", "complex", "index", "bytes"]:
    setattr(Unknown, f"__{_name}__", _needs)


async def ready(value: Any) -> Any:
    """An awaitable of a value known already (an ``async def``'s call in a dry run)."""
    return value


def _unknown_value(value: Unknown, out: bytearray, ctx: Context) -> None:
    raise NeedsValue(value._sources)  # a call given an Unknown has no key yet


add_rules({Unknown: _unknown_value}, [])


class DryRun:
    """What a dry run found, per memoized function (by qualified name): how many calls would
    hit, how many would compute and why (``reasons``), and where the code stopped, if it
    needed the value of a call that would compute (``stopped``). ``str(run)`` says it."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.reasons: dict[str, collections.Counter[str]] = {}
        self.stopped: str | None = None
        self.failed = False  # the code raised an error of its own (``stopped`` says which)
        self._computing: set[tuple[str, str]] = set()
        self._entries: dict[str, list[dict[str, Any]]] = {}

    def computes(self, function: str) -> int:
        """How many calls of ``function`` would compute."""
        return sum(self.reasons.get(function, {}).values())

    def hit(self, function: str, value: Any) -> Any:
        """Count a call answered from the cache; its value."""
        self.hits[function] += 1
        return value

    def compute(self, function: str, key: str, reason: str) -> Unknown:
        """Count a call that would compute (once per key: a real run computes it once), and
        give its stand-in."""
        if (function, key) not in self._computing:
            self._computing.add((function, key))
            self._count(function, reason)
        return Unknown(frozenset([function]))

    def dependant(self, function: str, sources: frozenset[str]) -> Unknown:
        """Count a call that would compute because an argument of it is the result of a call
        that would (it has no key until that one runs); give its stand-in."""
        self._count(function, f"uses the result of {_names(sources)}, which would compute")
        return Unknown(sources | {function})

    def _count(self, function: str, reason: str) -> None:
        self.reasons.setdefault(function, collections.Counter())[reason] += 1

    def entries(self, function: str, listed: Callable[[], list[dict[str, Any]]]) -> Any:
        """A function's stored entries (what reasons are found against), listed once a run."""
        if function not in self._entries:
            self._entries[function] = listed()
        return self._entries[function]

    def stop(self, error: BaseException, where: str | None) -> None:
        """Note that the code stopped at ``where`` (``file:line``): it needed a value
        (``NeedsValue``), or raised ``error``."""
        self.failed = not isinstance(error, NeedsValue)
        what = f"{type(error).__name__}: {error}" if self.failed else str(error)
        self.stopped = f"{where or 'the code'}: {what}"

    def summary(self) -> dict[str, Any]:
        """The run as JSON-ready data: ``{"functions": {name: {"hits", "computes", "reasons"}},
        "stopped", "failed"}``, functions by name, reasons most common first."""
        functions = {
            function: {
                "hits": self.hits[function],
                "computes": self.computes(function),
                "reasons": dict(self.reasons.get(function, collections.Counter()).most_common()),
            }
            for function in sorted({*self.hits, *self.reasons})
        }
        return {"functions": functions, "stopped": self.stopped, "failed": self.failed}

    def __str__(self) -> str:
        lines = []
        for function, found in self.summary()["functions"].items():
            lines.append(
                f"{function}: {found['hits']} would hit, {found['computes']} would compute"
            )
            lines += [f"  {count} {reason}" for reason, count in found["reasons"].items()]
        if not lines:
            lines.append("no memoized calls")
        if self.stopped:
            lines.append(f"stopped at {self.stopped}; the calls after it are not planned")
        return "\n".join(lines)


class _Calls(Protocol):
    """What a dry run needs of a memoized function's call path (``_calls.CallPath``)."""

    maker: Any
    max_age: float | None

    def setup(self) -> Any: ...
    def find(self, state: Any, key: str, labels: Any, values: Any, extra: Any) -> Any: ...


def dry_call(
    calls: _Calls,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    entries: Callable[[], list[dict[str, Any]]],
    reason: str | None = None,
) -> Any:
    """A call in the dry run in progress: its stored value, or, running nothing, a stand-in
    recorded as would compute, and why (``reason``: it computes anyway, as a refresh does).
    ``entries``: the function's stored entries, listed once a run."""
    run, maker = dry_runs[-1], calls.maker
    state = calls.setup()
    call_kwargs, extra = maker.split_extra(dict(kwargs))
    try:
        key, labels, values = maker.bind(args, call_kwargs, extra)
    except NeedsValue as needed:  # (an argument is a stand-in: no key yet)
        return run.dependant(maker.qualname, needed.sources)
    value = MISS
    if state.disabled:
        reason = "memo is disabled (MEMO_DISABLE)"
    elif reason is None and not state.skip:
        value = calls.find(state, key, labels, values, extra)
    if value is not MISS:
        return run.hit(maker.qualname, value)
    if reason is None:
        listed = run.entries(maker.qualname, entries)
        reason = why_computed(calls, state, key, labels, values, extra, listed)
    return run.compute(maker.qualname, key, reason)


def why_computed(
    calls: _Calls,
    state: Any,
    key: str,
    labels: Any,
    values: Any,
    extra: Any,
    entries: list[dict[str, Any]],
) -> str:
    """Why a call that misses would compute, as plans group it (``explain``'s engine: what
    sets it apart from the nearest stored entry)."""
    if state.skip:
        return "cache_skip"
    call = described_call(calls.maker, labels, values, extra)
    return miss_reason(key, call, entries, calls.max_age)


@contextmanager
def dry_run() -> Iterator[DryRun]:
    """Run the code in the block as a dry run: every memoized call is answered from the cache
    or recorded as would compute, without running its body (nor any body it would call);
    the ``DryRun`` says how many calls of each function would hit and compute, and why.
    Where the code needs the value of a call that would compute, the block ends there (the
    run's ``stopped`` says where). Code other than memoized calls runs as usual."""
    run = DryRun()
    dry_runs.append(run)
    try:
        yield run
    except NeedsValue as needed:
        run.stop(needed, _where(needed, lambda filename: not filename.startswith(_NOT_YOURS)))
    finally:
        dry_runs.remove(run)


def run_script(path: str, argv: Sequence[str] = ()) -> DryRun:
    """Run a script (as ``python path argv...`` would, as ``__main__``) as a dry run; an
    error the script raises ends it there, as a value it needs does (``failed`` says so)."""
    import runpy  # (a dry run of a script only: not imported with memo)

    script = os.path.abspath(path)
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = [path, *argv]
    sys.path.insert(0, os.path.dirname(script))
    try:
        with dry_run() as run:
            try:
                runpy.run_path(script, run_name="__main__")
            except (NeedsValue, Exception) as error:
                run.stop(error, _where(error, lambda filename: filename == script))
            except SystemExit as exited:
                if exited.code not in (None, 0):
                    raise
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return run


def _where(error: BaseException, ours: Callable[[str], bool]) -> str | None:
    """``file:line`` of the innermost frame of the traceback that ``ours`` accepts."""
    import traceback

    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if ours(frame.filename)]
    if not frames:
        return None
    return f"{os.path.relpath(frames[-1].filename)}:{frames[-1].lineno}"


def _names(sources: frozenset[str]) -> str:
    return ", ".join(sorted(sources))
