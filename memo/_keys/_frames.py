"""Encoding rules for polars and xarray values, hashed from their buffers.

Like the pandas rules in ``_pydata``, these apply only once the user has imported the package;
memo never imports polars or xarray itself, and nothing is pickled.  Columns backed by Arrow
are keyed by the encoding of ``_arrow``, as pyarrow's own arrays are.

What each key covers:

- ``polars.DataFrame``: the type, height and width, then each column in order as for a Series.
- ``polars.Series``: the type, its name, its polars dtype (so ``Categorical`` and ``Enum``
  differ, and an ``Enum``'s categories count), then its values through the pyarrow rule of
  ``_pydata`` (validity mask, logical values, chunking and slice offsets never matter).
  ``Object`` columns and types Arrow cannot hold (``Int128``) are encoded element by element.
- ``polars.LazyFrame``: refused. It is a query plan whose result depends on files and sources
  outside it; ``.collect()`` it first, or pass what defines it (its input files, e.g. as
  ``memo.File``, and the parameters that build the query).
- ``xarray.Variable``: its dimension names in order, its data through memo's rule for the data's
  own type (numpy arrays by dtype, shape and C-order bytes, so memory layout never matters; a
  pandas extension array through the pandas rule), and its attrs as a dict.
- ``xarray.DataArray``: the type, its name, its variable, its coordinates (index and non-index
  ones, each as a variable) and the names of the indexed coordinates.
- ``xarray.Dataset``: the type, its dimension sizes, its data variables, its coordinates, the
  names of the indexed coordinates and its attrs.

Coordinates and data variables are keyed by name, in no particular order, as xarray's own
``equals``/``identical`` compare them and as memo treats dicts. Dimension order within a
variable does count (a transposed array is another value). attrs count, compared like dicts;
``encoding`` (on-disk storage hints) does not. Variables backed by dask (or any chunked array)
are refused: building the key would compute the whole graph, outside the cached function and
again inside it. ``.compute()`` or ``.load()`` the value first, or pass what defines it.
"""

from __future__ import annotations

import sys
from typing import Any

from ._arrow import arrow_content
from ._bytes import Context, UnencodableError, pack_q, qualified, text
from ._canonical import (
    Handler,
    _dict,
    _first,
    _list,
    _to_bytes,
    _tuple,
    add_plugin,
    encode_into,
    enter,
    leave,
)

__all__ = ["plugin"]

# Type tags: "B" (polars) and "H" (xarray) start no other encoding.
_LAZY_FRAME = (
    "a polars LazyFrame is a query plan, not data, and its result depends on sources outside "
    "it; call .collect() and pass the DataFrame, or pass what defines the plan (its input "
    "files, e.g. as memo.File, and the parameters that build the query)"
)
_CHUNKED = (
    "its data is a chunked (dask) array, and building the key would compute the whole graph, "
    "outside the cached function and again inside it; call .compute() or .load() first, or "
    "pass what defines the data (its input files, e.g. as memo.File, and parameters)"
)


def _exact_type(obj: Any, base: type, out: bytearray) -> None:
    """Mark subclasses by name; the base class itself gets no name, so a package moving it
    between modules does not change keys."""
    tp = type(obj)
    if tp is base:
        out += b"="
    else:
        out += b"<"
        out += qualified(tp)


# --- polars ------------------------------------------------------------------------------------


def _as_arrow(series: Any) -> Any:
    """The series as a pyarrow Array, or ``None`` when Arrow cannot hold its values."""
    pl = sys.modules["polars"]
    if series.dtype == pl.Object:
        return None  # Arrow would hold the objects' addresses, not their values
    compat = getattr(pl, "CompatLevel", None)
    # The oldest Arrow layout (large_string, not string_view) hashes strings from one buffer,
    # and pinning it keeps keys from changing when polars changes its default.
    kwargs = {} if compat is None else {"compat_level": compat.oldest()}
    try:
        return series.to_arrow(**kwargs)
    except ValueError:  # a type Arrow has no layout for, such as Int128
        return None


def _pl_values(series: Any, out: bytearray, ctx: Context) -> None:
    out += text(series.name)
    out += text(str(series.dtype))
    array = _as_arrow(series)
    if array is None:
        out += b"o"
        _list(series.to_list(), out, ctx)
    else:
        out += b"a"
        arrow_content(array, out, ctx)


def _pl_series(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"BS"
    _exact_type(obj, sys.modules["polars"].Series, out)
    _pl_values(obj, out, ctx)
    leave(ident, ctx)


def _pl_frame(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"BD"
    _exact_type(obj, sys.modules["polars"].DataFrame, out)
    out += pack_q(obj.height)
    out += pack_q(obj.width)
    for series in obj.get_columns():
        try:
            _pl_values(series, out, ctx)
        except UnencodableError as exc:
            exc.path.append(f"[{series.name!r:.40}]")
            raise
    leave(ident, ctx)


def _pl_lazy(obj: Any, out: bytearray, ctx: Context) -> None:
    raise UnencodableError(type(obj), _LAZY_FRAME)


# --- xarray ------------------------------------------------------------------------------------


def _variable(var: Any, out: bytearray, ctx: Context) -> None:
    """Dimension names, data and attrs of one ``xarray.Variable``."""
    out += b"v"
    _tuple(tuple(var.dims), out, ctx)
    if var.chunks is not None:
        raise UnencodableError(type(var.data), _CHUNKED)
    # ``.data`` loads lazily-opened (non-dask) file data, and gives plain numpy for indexes.
    encode_into(var.data, out, ctx)
    try:
        _dict(dict(var.attrs), out, ctx)
    except UnencodableError as exc:
        exc.path.append(".attrs")
        raise


def _variables(variables: Any, where: str, out: bytearray, ctx: Context) -> None:
    """A name -> Variable mapping, sorted by the encoded names so that order does not count."""
    items = [(_to_bytes(name, ctx), name, var) for name, var in variables.items()]
    items.sort(key=_first)
    out += pack_q(len(items))
    for encoded, name, var in items:
        out += encoded
        try:
            _variable(var, out, ctx)
        except UnencodableError as exc:
            exc.path.append(f"{where}[{name!r:.40}]")
            raise


def _indexed(obj: Any, out: bytearray, ctx: Context) -> None:
    """The names of the indexed coordinates (dimension coordinates, or set with set_xindex)."""
    out += b"Z"
    names = sorted(_to_bytes(name, ctx) for name in obj.xindexes)
    out += pack_q(len(names))
    for name in names:
        out += name


def _xr_variable(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"HV"
    _exact_type(obj, sys.modules["xarray"].Variable, out)
    _variable(obj, out, ctx)
    leave(ident, ctx)


def _xr_data_array(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"HA"
    _exact_type(obj, sys.modules["xarray"].DataArray, out)
    encode_into(obj.name, out, ctx)
    _variable(obj.variable, out, ctx)
    _variables({name: coord.variable for name, coord in obj.coords.items()}, ".coords", out, ctx)
    _indexed(obj, out, ctx)
    leave(ident, ctx)


def _xr_dataset(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"HD"
    _exact_type(obj, sys.modules["xarray"].Dataset, out)
    _dict(dict(obj.sizes), out, ctx)
    _variables({name: data.variable for name, data in obj.data_vars.items()}, "", out, ctx)
    _variables({name: coord.variable for name, coord in obj.coords.items()}, ".coords", out, ctx)
    _indexed(obj, out, ctx)
    try:
        _dict(dict(obj.attrs), out, ctx)
    except UnencodableError as exc:
        exc.path.append(".attrs")
        raise
    leave(ident, ctx)


# --- dispatch ----------------------------------------------------------------------------------


def plugin(tp: type) -> Handler | None:
    """The rule for a polars or xarray type, or ``None`` (called with the rule tables locked,
    so it must not register anything itself)."""
    pl = sys.modules.get("polars")
    if pl is not None:
        if issubclass(tp, pl.DataFrame):
            return _pl_frame
        if issubclass(tp, pl.Series):
            return _pl_series
        if issubclass(tp, pl.LazyFrame):
            return _pl_lazy
    xr = sys.modules.get("xarray")
    if xr is not None:
        if issubclass(tp, xr.DataArray):
            return _xr_data_array
        if issubclass(tp, xr.Dataset):
            return _xr_dataset
        if issubclass(tp, xr.Variable):
            return _xr_variable
    return None


add_plugin(plugin)
