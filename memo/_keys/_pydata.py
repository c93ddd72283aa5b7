"""Encoding rules for pandas and pyarrow values, hashed from their buffers.

The rules apply only once the user has imported the package (``sys.modules`` is checked when a
type is first seen); memo never imports pandas or pyarrow itself. Nothing is pickled:
numeric buffers are streamed into the hasher as they are (copied only to make them contiguous),
so equal data gives equal keys whatever its memory layout (C or Fortran order of pandas blocks,
strided views, block consolidation, copies). Every key is exact, no value is reduced to a
64-bit hash first.

What each key covers:

- ``pandas.DataFrame``: the type, the column labels (as an Index, so their order and dtype
  count), the row index, and each column's values with its dtype, in column order.
- ``pandas.Series``: the type, its name, its index and its values with their dtype.
- ``pandas.Index`` (every subclass): the kind (flat or ``MultiIndex``), the names, and the
  values with their dtype. A ``RangeIndex`` is hashed as its int64 values, so it equals the
  materialised ``Index`` of the same numbers. A ``MultiIndex`` is hashed level by level as the
  full per-row values (``get_level_values``), so unused levels and code widths do not count.
- Values by dtype: numpy dtypes by their bytes; ``object`` columns element by element through
  memo's normal encoder, with strings (the common case) packed as one UTF-8 buffer plus
  code-point lengths (exact, and fast); categoricals as categories, codes and ``ordered``;
  datetimes, timedeltas and periods as int64 ticks with the dtype string (unit and time zone
  included, so the same instants in another zone differ); nullable ``Int*``/``Float*``/
  ``boolean`` as the missing-value mask plus the values with missing slots zeroed; pyarrow-backed
  columns (``str``, ``string[pyarrow]``, ``ArrowDtype``) through the pyarrow rule below; string
  storage (python or pyarrow) and the missing-value marker are part of the dtype's identity.
- ``pyarrow.Array``/``ChunkedArray``: the type, length and validity mask, then the logical
  values (chunks combined, slice offsets applied, null slots zeroed): fixed-width types by their
  bytes, strings/binary as byte lengths plus data, dictionaries decoded, nested types element by
  element. Chunking never matters. ``Table``/``RecordBatch``: field names, types and
  nullability, then each column.
- ``Timestamp``/``Timedelta`` as their numpy value (every nanosecond, and the unit) with the
  time zone's identity, never reduced to the ``datetime`` they subclass; ``Period``,
  ``Interval``, ``NaT`` and ``NA`` by what they are.

polars and xarray values are covered by ``_frames``, reached through this module's type hook.
"""

from __future__ import annotations

import sys
from typing import Any

from ._arrays import raw as _raw
from ._arrow import arrow_array, arrow_content, arrow_table
from ._bytes import Context, UnencodableError, pack_q, qualified, text
from ._canonical import Handler, _list, _tuple, add_plugin, encode_into, enter, leave
from ._zones import tzinfo_identity

__all__: list[str] = []


def _objects(values: Any, out: bytearray, ctx: Context) -> None:
    """A 1-D object array: strings packed together, anything else through ``encode_into``."""
    import numpy as np

    items = values.tolist()
    if set(map(type, items)) <= {str}:
        strings = items
        out += b"s"
    else:
        positions = [i for i, item in enumerate(items) if type(item) is not str]
        strings = [item for item in items if type(item) is str]
        out += b"m"
        _raw(np.asarray(positions, dtype=np.int64), out, ctx)
        _list([items[i] for i in positions], out, ctx)
    data = "".join(strings).encode("utf-8", "surrogatepass")
    _raw(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)), out, ctx)
    out += pack_q(len(data))
    ctx.feed(out, data)


def _numpy_values(values: Any, out: bytearray, ctx: Context) -> None:
    if values.dtype.hasobject:
        _objects(values.reshape(-1), out, ctx)
    else:
        out += b"n"
        _raw(values, out, ctx)


def _values(values: Any, out: bytearray, ctx: Context) -> None:
    """A column's values (numpy array or pandas ExtensionArray), with its dtype."""
    import numpy as np

    pd = sys.modules["pandas"]
    if isinstance(values, pd.arrays.NumpyExtensionArray):
        values = values.to_numpy()
    dtype = values.dtype
    out += b"V"
    if isinstance(dtype, np.dtype):
        out += text(dtype.str if dtype.fields is None else str(dtype.descr))
        out += pack_q(len(values))
        _numpy_values(np.asarray(values), out, ctx)
        return
    out += text(str(dtype))
    out += pack_q(len(values))
    if isinstance(values, pd.Categorical):
        out += b"c"
        out += b"T" if dtype.ordered else b"F"
        _index(dtype.categories, out, ctx)
        _raw(np.asarray(values.codes, dtype=np.int64), out, ctx)
    elif isinstance(values, pd.arrays.DatetimeArray | pd.arrays.TimedeltaArray):
        out += b"t"
        _raw(np.asarray(values.asi8), out, ctx)
    elif isinstance(values, pd.arrays.PeriodArray):
        out += b"p"
        _raw(np.asarray(values.asi8), out, ctx)
    elif isinstance(values, pd.arrays.IntervalArray):
        out += b"i"
        _values(values.left.array, out, ctx)
        _values(values.right.array, out, ctx)
    elif isinstance(
        values, pd.arrays.IntegerArray | pd.arrays.FloatingArray | pd.arrays.BooleanArray
    ):
        out += b"k"
        mask = np.asarray(values.isna(), dtype=bool)
        _raw(mask, out, ctx)
        zero = False if isinstance(values, pd.arrays.BooleanArray) else 0
        _raw(values.to_numpy(dtype=dtype.numpy_dtype, na_value=zero), out, ctx)
    elif isinstance(dtype, pd.ArrowDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
    ):
        out += b"a"
        out += text(f"{dtype.storage}|{dtype.na_value!r}" if hasattr(dtype, "na_value") else "")
        arrow_content(values.__arrow_array__(), out, ctx)
    else:
        out += b"o"
        if isinstance(dtype, pd.StringDtype):
            out += text(f"{dtype.storage}|{dtype.na_value!r}")
            _objects(values.to_numpy(dtype=object, na_value=None), out, ctx)
        else:
            _numpy_values(np.asarray(values.to_numpy()), out, ctx)


def _index(index: Any, out: bytearray, ctx: Context) -> None:
    import numpy as np

    pd = sys.modules["pandas"]
    out += b"pI"
    _list(list(index.names), out, ctx)
    if isinstance(index, pd.MultiIndex):
        out += b"M"
        out += pack_q(index.nlevels)
        for level in range(index.nlevels):
            _values(index.get_level_values(level).array, out, ctx)
    elif isinstance(index, pd.RangeIndex):
        out += b"I"
        _values(np.arange(index.start, index.stop, index.step, dtype=np.int64), out, ctx)
    else:
        out += b"I"
        _values(index.array, out, ctx)
    freq = getattr(index, "freq", None)
    if freq is not None:  # a DatetimeIndex's frequency changes what shift() and resample() do
        out += b"f"
        out += text(freq.freqstr)


def _series_values(series: Any) -> Any:
    import numpy as np

    dtype = series.dtype
    return series.to_numpy(copy=False) if isinstance(dtype, np.dtype) else series.array


def _attrs(obj: Any, out: bytearray, ctx: Context) -> None:
    # ``attrs`` is the user's own metadata, and functions may read it; empty in the usual case.
    if obj.attrs:
        out += b"+"
        try:
            encode_into(obj.attrs, out, ctx)
        except UnencodableError as exc:
            exc.path.append(".attrs")
            raise


def _pd_index(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    _index(obj, out, ctx)
    leave(ident, ctx)


def _pd_series(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"pS"
    out += qualified(type(obj))
    encode_into(obj.name, out, ctx)
    _index(obj.index, out, ctx)
    _values(_series_values(obj), out, ctx)
    _attrs(obj, out, ctx)
    leave(ident, ctx)


def _pd_frame(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"pD"
    out += qualified(type(obj))
    _tuple(tuple(obj.shape), out, ctx)
    _index(obj.columns, out, ctx)
    _index(obj.index, out, ctx)
    for position in range(obj.shape[1]):
        _values(_series_values(obj.iloc[:, position]), out, ctx)
    _attrs(obj, out, ctx)
    leave(ident, ctx)


def _pd_array(obj: Any, out: bytearray, ctx: Context) -> None:
    ident = enter(obj, ctx)
    out += b"pA"
    _values(obj, out, ctx)
    leave(ident, ctx)


def _pd_na(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"pN"


def _pd_nat(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"pn"


def _pd_timestamp(obj: Any, out: bytearray, ctx: Context) -> None:
    # As its numpy datetime64 (every nanosecond, and the unit), plus the time zone it is in:
    # not reduced to the datetime it subclasses.
    out += b"pT"
    encode_into(obj.asm8, out, ctx)
    try:
        out += tzinfo_identity(obj.tzinfo)
    except UnencodableError as exc:
        exc.path.append(".tzinfo")
        raise


def _pd_timedelta(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"pt"
    encode_into(obj.asm8, out, ctx)


def _pd_period(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"pP"
    out += text(obj.freqstr)
    encode_into(int(obj.ordinal), out, ctx)


def _pd_interval(obj: Any, out: bytearray, ctx: Context) -> None:
    out += b"pV"
    out += text(obj.closed)
    encode_into(obj.left, out, ctx)
    encode_into(obj.right, out, ctx)


# --- dispatch ----------------------------------------------------------------------------------


def _plugin(tp: type) -> Handler | None:
    pd = sys.modules.get("pandas")
    if pd is not None:
        if issubclass(tp, pd.DataFrame):
            return _pd_frame
        if issubclass(tp, pd.Series):
            return _pd_series
        if issubclass(tp, pd.Index):
            return _pd_index
        if issubclass(tp, pd.api.extensions.ExtensionArray):
            return _pd_array
        if tp is type(pd.NA):
            return _pd_na
        if tp is type(pd.NaT):
            return _pd_nat
        for base, rule in (
            (pd.Timestamp, _pd_timestamp),
            (pd.Timedelta, _pd_timedelta),
            (pd.Period, _pd_period),
            (pd.Interval, _pd_interval),
        ):
            if tp is base:
                return rule
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        if issubclass(tp, pa.Array | pa.ChunkedArray):
            return arrow_array
        if issubclass(tp, pa.Table | pa.RecordBatch):
            return arrow_table
    return None


add_plugin(_plugin)
