"""Encoding rules for standard-library types, dataclasses, namedtuples and functions."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import functools
import pathlib
import sys
import types
from typing import Any

from ._bytes import Context, UnencodableError, pack_q, qualified, text
from ._canonical import (
    Handler,
    _dict,
    _int,
    _list,
    _tuple,
    add_plugin,
    add_rules,
    encode_into,
    enter,
    leave,
    set_class_code,
)
from ._code import class_fingerprint
from ._zones import tzinfo_identity

__all__: list[str] = []


def _path(obj: Any, out: bytearray, ctx: Context) -> None:
    flavour = b"w" if isinstance(obj, pathlib.PureWindowsPath) else b"p"
    out += b"P" + flavour
    out += text(str(obj))


def _enum(obj: Any, out: bytearray, ctx: Context) -> None:
    # The member's value and its class's code count, not only its name: editing
    # `RED = 1` to `RED = 4`, or a method of the enum, changes what a function computes.
    # A flag's empty or combined member may have no name.
    out += b"E"
    out += qualified(type(obj))
    out += _code_of(type(obj))
    name = obj._name_
    out += b"N" if name is None else text(name)
    try:
        encode_into(obj._value_, out, ctx)
    except UnencodableError as exc:
        exc.path.append(".value")
        raise


def _datetime(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"D"
    out += text(obj.replace(tzinfo=None).isoformat())
    out += b"1" if obj.fold else b"0"
    try:
        out += tzinfo_identity(obj.tzinfo)
    except UnencodableError as exc:
        exc.path.append(".tzinfo")
        raise


def _date(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"a"
    out += text(obj.isoformat())


def _time(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"h"
    out += text(obj.replace(tzinfo=None).isoformat())
    out += b"1" if obj.fold else b"0"
    try:
        out += tzinfo_identity(obj.tzinfo)
    except UnencodableError as exc:
        exc.path.append(".tzinfo")
        raise


def _timedelta(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"e"
    _tuple((obj.days, obj.seconds, obj.microseconds), out, ctx)


def _deque(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"q"
    encode_into(obj.maxlen, out, ctx)
    _list(obj, out, ctx)


def _defaultdict(obj: Any, out: bytearray, ctx: Context) -> None:
    # The default factory is what a missing key gives: defaultdict(int) and
    # defaultdict(list) with equal items behave differently.
    out += b"w"
    try:
        encode_into(obj.default_factory, out, ctx)
    except UnencodableError as exc:
        exc.path.append(".default_factory")
        raise
    _dict(obj, out, ctx)


def _decimal(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"M"
    out += text(str(obj))


def _fraction(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"Q"
    _int(obj.numerator, out, ctx)
    _int(obj.denominator, out, ctx)


def _uuid(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"U"
    out += obj.bytes


def _range(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"r"
    _tuple((obj.start, obj.stop, obj.step), out, ctx)


def _slice(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"x"
    _tuple((obj.start, obj.stop, obj.step), out, ctx)


def _code_of(cls: type) -> bytes:
    """``cls``'s code fingerprint (its methods, properties and class attributes, and its bases
    from the user's modules; a library's class counts by its package's version; kept per
    class): an instance encoded by its fields brings it into the key, so editing a method of
    a config or model class recomputes the calls that take one."""
    return text(class_fingerprint(cls))


def _dataclass(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"C"
    out += qualified(type(obj))
    out += _code_of(type(obj))
    fields = dataclasses.fields(obj)
    out += pack_q(len(fields))
    for field in fields:
        out += text(field.name)
        try:
            encode_into(getattr(obj, field.name), out, ctx)
        except UnencodableError as exc:
            exc.path.append(f".{field.name}")
            raise
    leave(ident, ctx)


def _namedtuple(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"n"
    out += qualified(type(obj))
    out += _code_of(type(obj))
    out += pack_q(len(obj))
    for name, value in zip(obj._fields, obj, strict=True):
        out += text(name)
        try:
            encode_into(value, out, ctx)
        except UnencodableError as exc:
            exc.path.append(f".{name}")
            raise
    leave(ident, ctx)


def _type(obj: Any, out: bytearray, ctx: Context) -> None:
    from ._code import class_fingerprint

    out += b"K"
    out += text(class_fingerprint(obj))


def _function(obj: Any, out: bytearray, ctx: Context) -> None:
    from ._code import watched_fingerprint

    # Watched as the decorated function's own code is: apply(helper, 1) recomputes once a
    # global helper reads is rebound (or its code replaced), not only in a new process.
    out += b"L"
    out += text(watched_fingerprint(obj)[0])


def _builtin(obj: Any, out: bytearray, ctx: Context) -> None:
    owner = getattr(obj, "__self__", None)
    out += b"W"
    out += text(f"{getattr(obj, '__module__', None)}:{obj.__qualname__}")
    if owner is not None and not isinstance(owner, types.ModuleType):
        encode_into(owner, out, ctx)
    else:
        out += b"N"


def _method(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"m"
    _function(obj.__func__, out, ctx)
    try:
        encode_into(obj.__self__, out, ctx)
    except UnencodableError as exc:
        exc.path.append(".__self__")
        raise


def _partial(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"_"
    encode_into(obj.func, out, ctx)
    _tuple(obj.args, out, ctx)
    _dict(obj.keywords, out, ctx)


# Types of standard-library modules memo does not import itself (importing them would cost
# every `import memo`): a value of one means its module is loaded. By exact type, as before.
_LOADED_TYPES = (("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"))


def _plugin(tp: type) -> Handler | None:
    for module_name, type_name in _LOADED_TYPES:
        module = sys.modules.get(module_name)
        if module is not None and tp is getattr(module, type_name):
            return _BY_NAME[type_name]
    if dataclasses.is_dataclass(tp):
        return _dataclass
    if issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _namedtuple
    if issubclass(tp, types.FunctionType):
        return _function
    return None


_BY_NAME: dict[str, Handler] = {"Decimal": _decimal, "Fraction": _fraction, "UUID": _uuid}

add_rules(
    {
        datetime.datetime: _datetime,
        datetime.date: _date,
        datetime.time: _time,
        datetime.timedelta: _timedelta,
        range: _range,
        slice: _slice,
        types.FunctionType: _function,
        types.BuiltinFunctionType: _builtin,
        types.MethodType: _method,
        functools.partial: _partial,
        collections.deque: _deque,
        collections.defaultdict: _defaultdict,
    },
    [(enum.Enum, _enum), (pathlib.PurePath, _path), (type, _type)],
    # After the plugins, so that pandas' Timestamp and Timedelta get rules of their own;
    # a user's subclass is tagged with its type.
    subclassable=[
        (datetime.datetime, _datetime),
        (datetime.date, _date),
        (datetime.time, _time),
        (datetime.timedelta, _timedelta),
        (collections.deque, _deque),
        (collections.defaultdict, _defaultdict),
    ],
)
add_plugin(_plugin)
set_class_code(_code_of)
