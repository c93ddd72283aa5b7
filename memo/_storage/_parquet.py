"""Parquet payloads: a frame is written only if it reads back as it was.

pyarrow's trip through Parquet changes some frames: an object column of Python ints comes
back int64 (or overflows), ``datetime64[s]`` comes back ``datetime64[ms]`` (Parquet has no
seconds), integer column labels come back a ``RangeIndex``, categories of numbers come back
plain numbers, an index's ``freq`` is dropped. ``difference`` says how the written file would
load differently, from its schema alone where that can tell (the dtypes, index and labels a
load gives, made from an empty table): numeric data is not read a second time. Only
categorical columns, whose categories are data, are read back.
"""

from __future__ import annotations

import io
import json
from typing import Any

__all__ = ["difference", "restore", "write"]

# Kept in the file's schema metadata: pandas' own records neither a frame's index's freq
# (restored here) nor, for pyarrow's reader, its attrs (pd.read_parquet restores those too).
_FREQ = b"memo.index_freq"
_ATTRS = b"PANDAS_ATTRS"  # where pandas' to_parquet keeps DataFrame.attrs


def write(frame: Any) -> Any:
    """The frame as the bytes of a Parquet file (pyarrow's errors if it cannot convert it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame)
    extra: dict[bytes, bytes] = {}
    if frame.attrs:
        extra[_ATTRS] = json.dumps(frame.attrs).encode()  # (TypeError if not JSON)
    freq = getattr(frame.index, "freq", None)
    if freq is not None:
        extra[_FREQ] = freq.freqstr.encode()
    if extra:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    sink = io.BytesIO()  # (grows faster than pyarrow's BufferOutputStream)
    pq.write_table(table, sink)
    return sink.getbuffer()


def restore(frame: Any, metadata: dict[bytes, bytes] | None) -> Any:
    """``frame``, as loaded by pyarrow, with the attrs and index freq ``write`` recorded."""
    if metadata:
        attrs = metadata.get(_ATTRS)
        if attrs is not None:
            frame.attrs = json.loads(attrs)
        freq = metadata.get(_FREQ)
        if freq is not None:  # (a DatetimeIndex or TimedeltaIndex: checks the freq fits)
            frame.index = type(frame.index)(frame.index, freq=freq.decode())
    return frame


def difference(frame: Any, data: Any) -> str | None:
    """How the frame a load of the Parquet file ``data`` gives would differ from ``frame``
    (None: it would not)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pandas.api.types import is_object_dtype

    if type(frame) is not pd.DataFrame:
        return f"it would come back a DataFrame, not a {type(frame).__qualname__}"
    if not frame.flags.allows_duplicate_labels:
        return "its flags (allows_duplicate_labels=False) would be lost"
    schema = pq.read_schema(pa.BufferReader(pa.py_buffer(data)))
    loaded = restore(schema.empty_table().to_pandas(), schema.metadata)
    if loaded.attrs != frame.attrs:
        return "its attrs would not survive JSON unchanged"
    for what, ours, theirs in (
        ("index", frame.index, loaded.index),
        ("column labels", frame.columns, loaded.columns),
    ):
        why = _index_difference(ours, theirs)
        if why is not None:
            return f"its {what} would come back {why}"
    if not frame.columns.equals(loaded.columns):
        return "its column labels would come back different"
    categorical = []
    for position, (ours, theirs) in enumerate(zip(frame.dtypes, loaded.dtypes, strict=True)):
        label = frame.columns[position]
        if is_object_dtype(ours):
            # Parquet holds typed columns: Python objects come back as other types (ints
            # as int64, lists as arrays, str as str, NaN as None).
            return f"column {label!r} holds Python objects"
        if isinstance(ours, pd.CategoricalDtype) and isinstance(theirs, pd.CategoricalDtype):
            categorical.append(position)  # (their categories are data: checked below)
        elif type(ours) is not type(theirs) or ours != theirs:
            return f"column {label!r} would come back {_shown(theirs, ours)}"
    if categorical:
        names = [schema.field(position).name for position in categorical]
        read = pq.read_table(pa.BufferReader(pa.py_buffer(data)), columns=names).to_pandas()
        for position, name in zip(categorical, names, strict=True):
            ours, theirs = frame.dtypes.iloc[position], read[name].dtype
            if not _same_categories(ours, theirs):
                return f"categorical column {frame.columns[position]!r} would come back {theirs}"
    return None


def _index_difference(ours: Any, theirs: Any) -> str | None:
    """How a loaded index's kind, dtypes, names and freq differ from the stored one's (its
    values are the file's data, or, for a RangeIndex, pandas' own metadata)."""
    import pandas as pd
    from pandas.api.types import is_object_dtype

    if type(ours) is not type(theirs):
        return f"a {type(theirs).__name__}, not a {type(ours).__name__}"
    if list(ours.names) != list(theirs.names):
        return f"named {list(theirs.names)}, not {list(ours.names)}"
    multi = isinstance(ours, pd.MultiIndex)
    for mine, loaded in zip(
        ours.dtypes if multi else [ours.dtype],
        theirs.dtypes if multi else [theirs.dtype],
        strict=True,
    ):
        if is_object_dtype(mine):
            return "with its Python objects as other types"
        if type(mine) is not type(loaded) or mine != loaded or not _same_categories(mine, loaded):
            return f"of dtype {_shown(loaded, mine)}"
    if getattr(ours, "freq", None) != getattr(theirs, "freq", None):
        return f"with freq {getattr(theirs, 'freq', None)}, not {getattr(ours, 'freq', None)}"
    return None


def _same_categories(ours: Any, theirs: Any) -> bool:
    """Whether two dtypes are equal, categories in order included (== on unordered
    categoricals ignores the order, which the codes depend on)."""
    import pandas as pd

    if not isinstance(ours, pd.CategoricalDtype):
        return bool(ours == theirs)
    return (
        isinstance(theirs, pd.CategoricalDtype)
        and ours.ordered == theirs.ordered
        and ours.categories.dtype == theirs.categories.dtype
        and ours.categories.equals(theirs.categories)
    )


def _shown(theirs: Any, ours: Any) -> str:
    """'<loaded dtype>, not <stored dtype>', by repr where their names are alike
    (``string``: pyarrow's or Python's storage; ``category``: which categories)."""
    if str(theirs) == str(ours):
        return f"{theirs!r}, not {ours!r}"
    return f"{theirs}, not {ours}"
