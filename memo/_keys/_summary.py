"""How a call's arguments are shown in its entry's metadata: whole when short and exact (a
number, None, a short string), else a shortened repr or the type, with a digest beside it."""

from __future__ import annotations

import os
import reprlib
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

__all__ = ["SHORT", "SHOWN_HEAD", "SHOWN_TAIL", "exactly", "summarize"]

SHORT = 60  # a string up to this long is shown whole in the metadata
# The text around the shown arguments of a call with no digests and no extra key.
SHOWN_HEAD = '"arguments":{'
SHOWN_TAIL = '},"argument_digests":{},"extra":null'
_summary = reprlib.Repr()
_summary.maxstring = SHORT
_summary.maxother = SHORT
_summary.maxlist = _summary.maxtuple = _summary.maxdict = _summary.maxset = 6
_ATOMS = frozenset({int, float, bool, type(None)})
_PLAIN = (int, float, complex, bool, str, bytes, type(None), list, tuple, dict, set, frozenset)


def exactly(value: Any, kind: type) -> str | None:
    """The JSON string showing an argument whole: a number, None or a short string, whose repr
    tells values apart as their key encoding does; None for anything else."""
    if kind is str:
        return json_string(repr(value)) if len(value) <= SHORT else None
    if kind in _ATOMS:
        try:
            return f'"{value!r}"'  # the repr of a number has nothing to escape
        except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
            return None
    return None


def summarize(value: Any, kind: type) -> str:
    """A short description of an argument ``exactly`` does not show: a shortened repr
    of a plain value or container, else the type (and shape, if any)."""
    if isinstance(value, (*_PLAIN, os.PathLike)):
        try:
            return _summary.repr(value)
        except ValueError:  # it holds an int too long to print
            pass
    shape = getattr(value, "shape", None)
    name = f"{kind.__module__}.{kind.__qualname__}"
    return f"<{name} shape={shape}>" if isinstance(shape, tuple) else f"<{name}>"
