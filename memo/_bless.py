"""``f.bless()``: find the code fingerprint an edit replaced, check that the current code
computes what that code stored (for items given, or a sample of calls rebuilt from what the
entries' metadata records of their arguments), and write the blessing (``_blessings``)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable
from typing import Any, Protocol

from ._blessings import read_blessing, write_blessing
from ._exceptions import ConfigError, MemoError
from ._keys._encoder import hash_args
from ._map import normalize
from ._storage._backend import MISS

__all__ = ["bless"]


class _Calls(Protocol):
    """What blessing needs of a memoized function's call path (``_calls.CallPath``)."""

    name: str
    maker: Any
    func: Any

    def setup(self) -> Any: ...
    def lookup(self, state: Any, key: str) -> Any: ...
    def forget_blessings(self) -> None: ...


def bless(
    calls: _Calls, entries: list[dict[str, Any]], check: Iterable[Any] | int | None
) -> dict[str, Any]:
    """Record that the current code answers for the code that stored the newest of
    ``entries`` not its own (and for what that code answered for), once every item of
    ``check`` (as ``map`` takes them; an int: a sample of that many stored calls) computes
    what the earlier code stored; ``MemoError`` else. Returns the record."""
    maker = calls.maker
    state = calls.setup()
    state.writer.refuse_if_read_only("bless")
    maker.prefix  # noqa: B018 - settles the code fingerprint
    current = maker.code_fingerprint
    codes = [entry.get("components", {}).get("code") for entry in entries]
    earlier = next((code for code in codes if code and code != current), None)
    if earlier is None:
        raise MemoError(
            f"nothing to bless: every stored entry of {maker.qualname} was made by its "
            "current code (bless after an edit, before its entries are recomputed)"
        )
    carried = read_blessing(state.tiers, calls.name, maker.qualname, earlier, state.secret_keys)
    previous = [earlier, *(carried["from"] if carried else [])]
    if isinstance(check, bool):
        raise ConfigError(
            f"check takes the items to check or how many stored calls to sample, not {check}"
        )
    if isinstance(check, int):
        items: list[Any] = _sampled(calls, entries, earlier, check)
        if check > 0 and not items:
            raise MemoError(
                f"cannot check a sample: no entry the earlier code of {maker.qualname} stored "
                "records arguments memo can call it with again (each a plain literal); "
                "pass the items to check instead, check=[...]"
            )
    else:
        items = list(check or ())
    for item in items:
        args, kwargs = normalize(item)
        call_kwargs, extra = maker.split_extra(kwargs)
        _, labels, values = maker.bind(args, call_kwargs, extra)
        stored = MISS
        for code in previous:
            stored = calls.lookup(state, maker.key_under(code, labels, values, extra))
            if stored is not MISS:
                break
        if stored is MISS:
            raise MemoError(f"cannot check {item!r}: the earlier code stored no entry for it")
        if not _same_result(stored, calls.func(*args, **call_kwargs)):
            raise MemoError(
                f"not blessed: for {item!r} the current code of {maker.qualname} computes "
                "another value than the earlier code stored"
            )
    record = write_blessing(
        state.writer, calls.name, maker.qualname, current, previous, state.secret
    )
    calls.forget_blessings()
    return record


def _sampled(
    calls: _Calls, entries: list[dict[str, Any]], code: str, count: int
) -> list[dict[str, Any]]:
    """Up to ``count`` calls (as keywords) that ``code`` stored entries for, newest first,
    rebuilt from the arguments each entry's metadata records: where every one is a Python
    literal and keying the rebuilt call under ``code`` gives that entry's key again (so it is
    that very call). Entries of other arguments (an array, an object) are passed over."""
    found: list[dict[str, Any]] = []
    for entry in entries:
        shown = entry.get("arguments")
        if len(found) >= count:
            break
        if entry.get("components", {}).get("code") != code or not isinstance(shown, dict):
            continue
        try:
            kwargs = {name: ast.literal_eval(text) for name, text in shown.items()}
            call_kwargs, extra = calls.maker.split_extra(dict(kwargs))
            _, labels, values = calls.maker.bind((), call_kwargs, extra)
        except Exception:  # (not a literal, or not a call by keywords: positional-only, ...)
            continue
        if calls.maker.key_under(code, labels, values, extra) == entry.get("key"):
            found.append(kwargs)
    return found


def _same_result(stored: Any, fresh: Any) -> bool:
    """Whether the current code's value (a coroutine is awaited first: an ``async def``'s)
    is the value the earlier code stored: by their canonical encoding (arrays, frames and
    containers by content), else by ``==``."""
    if inspect.iscoroutine(fresh):
        import asyncio

        fresh = asyncio.run(fresh)
    try:
        return hash_args(stored) == hash_args(fresh)
    except Exception:
        try:
            return bool(stored == fresh)
        except Exception:
            return False
