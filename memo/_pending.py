"""``Pending``: a call of a batch on an object store made in three steps, so that the round
trips of many calls overlap while their bodies run one after another in the caller's thread
(``_map`` runs the steps; ``_calls.CallPath`` makes each one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ._storage._backend import MISS

__all__ = ["Pending"]


class Path(Protocol):
    """What a pending call needs of its call path (``_calls.CallPath``)."""

    maker: Any
    name: str
    func: Any

    def setup(self) -> Any: ...
    def take_extra(self, kwargs: dict[str, Any]) -> Any: ...
    def blessed_lookup(self, state: Any, labels: Any, values: Any, extra: Any) -> Any: ...
    def claim(
        self, state: Any, key: str, skip: bool, owner: Any = None
    ) -> tuple[Any, bool, Any]: ...
    def note_miss(self, key: str, skip: bool) -> bool: ...
    def begin(self) -> tuple[dict[str, Any], Any, int]: ...
    def end(self, token: Any, started: int) -> int: ...
    @property
    def store_result(self) -> Callable[..., Any]:
        """(Its signature is ``CallPath.store_result``'s, written once, there.)"""
        ...


class Pending:
    """A call of a batch on an object store, made in three steps so that the round trips of
    many calls overlap while their bodies run one after another in the caller's thread:
    ``claim`` (on a worker thread: take the key's lease and look for an entry stored
    meanwhile), ``run`` (in the caller's thread: the body, unless such an entry was found)
    and ``finish`` (on a worker thread: store the result, give the lease back; it gives the
    call's value). ``release`` gives the lease back without storing (the body failed)."""

    def __init__(
        self, path: Path, args: tuple[Any, ...], kwargs: dict[str, Any], owner: int
    ) -> None:
        self._path = path
        self._args = args
        self._kwargs = kwargs
        self._owner = owner  # (the caller's thread: a body calling itself is not kept waiting)
        self._claim: Any = None
        self._held = False
        self._found: Any = MISS  # an entry stored meanwhile
        self._computed: Any = MISS
        self._steps: tuple[Any, ...] = ()

    def claim(self) -> None:
        """Bind the call, take its key's lease, and look for an entry stored meanwhile."""
        path = self._path
        state = path.setup()
        extra = path.take_extra(self._kwargs)
        key, labels, values = path.maker.bind(self._args, self._kwargs, extra)
        self._steps = (state, key, labels, values, extra)
        if not state.skip:
            self._found = path.blessed_lookup(state, labels, values, extra)
            if self._found is not MISS:
                return
        self._claim, self._held, self._found = path.claim(state, key, state.skip, self._owner)

    def run(self) -> None:
        """Compute the value, unless ``claim`` found it stored."""
        if self._found is not MISS:
            return
        path = self._path
        state, key = self._steps[:2]
        debug = path.note_miss(key, state.skip)
        collected, token, started = path.begin()
        try:
            self._computed = path.func(*self._args, **self._kwargs)
        finally:
            elapsed_ns = path.end(token, started)
        self._steps += (elapsed_ns, collected, debug)

    def finish(self) -> Any:
        """Store the computed value and give the lease back; the call's value."""
        try:
            if self._found is not MISS:
                return self._found
            state, key, labels, values, extra, elapsed_ns, collected, debug = self._steps
            return self._path.store_result(
                state, key, self._computed, labels, values, extra, elapsed_ns, collected, debug
            )
        finally:
            self.release()

    def release(self) -> None:
        """Give the lease back (once; nothing if none was taken)."""
        claim, self._claim = self._claim, None
        if claim is not None:
            self._steps[0].writer.locks.release(self._steps[1], claim, self._held)
