"""Keys of pandas, pyarrow and scipy.sparse arguments: equal data, equal keys; else different."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import memo
from tests.frame_strategies import FAST, mixed_frames

FRAMES = mixed_frames(min_rows=1)


def key(value: Any) -> str:
    """The cache key of one argument."""
    return memo.hash_args(value)


def test_pandas_not_needed_for_other_types() -> None:
    """Plain values still hash when pandas is loaded (the plugin declines other types)."""
    assert key([1, "a"]) == key([1, "a"])


@FAST
@given(FRAMES)
def test_equal_frames_equal_keys(frame: pd.DataFrame) -> None:
    """A copy, a column-by-column rebuild and a Fortran-ordered rebuild hash alike."""
    expected = key(frame)
    assert key(frame.copy()) == expected
    rebuilt = pd.DataFrame({name: frame[name].copy() for name in frame.columns})
    assert key(rebuilt) == expected
    numeric = pd.DataFrame({"a": frame["floats"], "b": frame["floats"] * 2})
    fortran = np.asfortranarray(numeric.to_numpy())
    assert key(pd.DataFrame(fortran, columns=numeric.columns)) == key(numeric)
    assert key(pd.DataFrame(np.ascontiguousarray(fortran), columns=numeric.columns)) == key(numeric)


@FAST
@given(FRAMES, st.data())
def test_changed_frames_differ(frame: pd.DataFrame, data: st.DataObject) -> None:
    """A changed value, a renamed column, swapped columns or another index change the key."""
    expected = key(frame)
    row = data.draw(st.integers(0, len(frame) - 1))
    changed = frame.copy()
    changed.loc[changed.index[row], "ints"] = int(frame["ints"].iloc[row]) ^ 1
    assert key(changed) != expected
    assert key(frame.rename(columns={"ints": "integers"})) != expected
    assert key(frame[["floats", "ints", "flags", "text", "when"]]) != expected
    assert key(frame.set_axis(frame.index + 1)) != expected
    assert key(frame["ints"]) != key(frame[["ints"]])
    assert key(frame["ints"]) != key(pd.Index(frame["ints"]))


@FAST
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)))
def test_layout_does_not_matter(values: np.ndarray[Any, Any]) -> None:
    """C order, Fortran order and a strided view of the same values give the same key."""
    frame = pd.DataFrame(np.ascontiguousarray(values))
    assert key(pd.DataFrame(np.asfortranarray(values))) == key(frame)
    doubled = np.repeat(values, 2, axis=1)[:, ::2]
    assert key(pd.DataFrame(doubled)) == key(frame)
    assert key(frame.T.T) == key(frame)


def test_dtype_and_names_count() -> None:
    """dtype, series name and index name are part of the key."""
    series = pd.Series([1, 2, 3], name="a")
    assert key(series) == key(pd.Series([1, 2, 3], name="a"))
    assert key(series) != key(series.astype("int32"))
    assert key(series) != key(series.astype("float64"))
    assert key(series) != key(series.rename("b"))
    assert key(series) != key(series.rename_axis("rows"))


def test_range_index_equals_materialised_index() -> None:
    """A RangeIndex and the same numbers as an int64 Index are the same labels."""
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    assert key(frame) == key(frame.set_axis(pd.Index([0, 1, 2], dtype="int64")))


def test_time_zones() -> None:
    """The same instants in another time zone give a different key; equal ones the same."""
    utc = pd.Series(pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC"))
    paris = utc.dt.tz_convert("Europe/Paris")
    assert (utc == paris).all()
    assert key(utc) != key(paris)
    assert key(paris) == key(utc.dt.tz_convert("Europe/Paris"))
    assert key(utc) != key(utc.dt.tz_localize(None))


def test_categoricals() -> None:
    """Categories, codes and ordered all count."""
    values = ["b", "a", "b", None]
    plain = pd.Series(pd.Categorical(values))
    assert key(plain) == key(pd.Series(pd.Categorical(values)))
    assert key(plain) != key(pd.Series(pd.Categorical(values, ordered=True)))
    assert key(plain) != key(pd.Series(pd.Categorical(values, categories=["b", "a"])))
    assert key(plain) != key(pd.Series(pd.Categorical(["a", "a", "b", None])))
    assert key(plain) != key(pd.Series(values, dtype=object))


def test_nullable_dtypes() -> None:
    """Missing values are a mask; the data under a missing slot does not count."""
    ints = pd.array([1, None, 3], dtype="Int64")
    assert key(ints) == key(pd.array([1, None, 3], dtype="Int64"))
    assert key(ints) != key(pd.array([1, 0, 3], dtype="Int64"))
    assert key(ints) != key(pd.array([1, None, 3], dtype="Int32"))
    filled = pd.array([1, 7, 3], dtype="Int64")
    filled[1] = pd.NA
    assert key(filled) == key(ints)
    flags = pd.Series([True, None, False], dtype="boolean")
    assert key(flags) == key(pd.Series([True, None, False], dtype="boolean"))
    assert key(flags) != key(pd.Series([True, False, False], dtype="boolean"))
    strings = pd.Series(["x", None, "z"], dtype="string")
    assert key(strings) == key(pd.Series(["x", None, "z"], dtype="string"))
    assert key(strings) != key(pd.Series(["x", "", "z"], dtype="string"))
    assert key(pd.Series(["x", None], dtype=object)) != key(pd.Series(["x", np.nan], dtype=object))


def test_object_columns() -> None:
    """Object columns encode element by element: str, int, None, NaN are told apart."""
    base = pd.Series(["ab", "c", 1, None, np.nan], dtype=object)
    assert key(base) == key(pd.Series(["ab", "c", 1, None, float("nan")], dtype=object))
    assert key(base) != key(pd.Series(["a", "bc", 1, None, np.nan], dtype=object))
    assert key(base) != key(pd.Series(["ab", "c", "1", None, np.nan], dtype=object))
    assert key(pd.Series(["é", "\x00"], dtype=object)) != key(
        pd.Series(["é\x00", ""], dtype=object)
    )


def test_multi_index() -> None:
    """A MultiIndex hashes by its per-row values: unused levels do not count, names do."""
    index = pd.MultiIndex.from_product([[1, 2, 3], ["a", "b"]], names=["n", "s"])
    sliced = index[:4]
    rebuilt = pd.MultiIndex.from_tuples(list(sliced), names=["n", "s"])
    assert key(sliced) == key(rebuilt)
    assert key(sliced) != key(rebuilt.set_names(["n", "t"]))
    assert key(index) != key(index.swaplevel())
    frame = pd.DataFrame({"v": range(6)}, index=index)
    assert key(frame) != key(frame.reset_index(drop=True))


def test_pyarrow_chunking() -> None:
    """Chunking and slicing do not change a pyarrow key; values, nulls and types do."""
    one = pa.chunked_array([[1, None, 3, 4]])
    assert key(one) == key(pa.chunked_array([[1], [None, 3], [4]]))
    assert key(one) == key(pa.chunked_array([[9, 1, None, 3, 4]]).slice(1))
    assert key(one) != key(pa.chunked_array([[1, 0, 3, 4]]))
    assert key(one) != key(pa.chunked_array([[1, None, 3, 4]], type=pa.int32()))
    words = pa.chunked_array([["a", "bc"], [None, ""]])
    assert key(words) == key(pa.chunked_array([["x", "a"], ["bc", None, ""]]).slice(1))
    assert key(words) != key(pa.chunked_array([["ab", "c", None, ""]]))
    table = pa.table({"n": one, "w": words})
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert key(table) == key(rechunked)
    assert key(table) != key(table.select(["w", "n"]))
    assert key(table) != key(table.rename_columns(["n", "x"]))
    nested = pa.chunked_array([[[1, 2]], [[3], None]])
    assert key(nested) == key(pa.chunked_array([[[1, 2], [3], None]]))


def test_arrow_backed_pandas() -> None:
    """pandas columns backed by pyarrow hash their values (chunking does not count)."""
    series = pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([[1, 2], [None]])))
    same = pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([[1, 2, None]])))
    assert key(series) == key(same)
    assert key(series) != key(pd.Series([1, 2, None], dtype="Int64"))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr"])
def test_sparse_format_independent(fmt: str) -> None:
    """Every format of the same matrix (duplicates summed) hashes as the CSR form."""
    rows = np.array([0, 2, 2, 1, 0])
    cols = np.array([1, 0, 0, 2, 1])
    data = np.array([1.0, 2.0, 3.0, 4.0, -1.0])
    coo = sp.coo_matrix((data, (rows, cols)), shape=(3, 4))
    dense = sp.csr_matrix(coo.toarray())
    assert key(coo.asformat(fmt)) == key(dense)
    assert key(sp.coo_array(coo).asformat(fmt)) == key(sp.csr_array(dense))
    assert key(dense) != key(sp.csr_array(dense))
    assert key(dense) != key(dense.astype(np.float32))
    assert key(dense) != key(sp.csr_matrix(coo.toarray(), shape=(3, 4)).T)
    assert key(dense) != key(sp.csr_matrix((3, 5)))


def test_memoized_frame_argument_hits(cache_dir: Path) -> None:
    """An equal but distinct DataFrame argument hits the cache on the second call."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def total(frame: pd.DataFrame) -> float:
        calls.append(1)
        return float(frame["x"].sum())

    first = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    second = pd.DataFrame({"y": ["a", "b"], "x": [1.0, 2.0]})[["x", "y"]]
    assert total(first) == 3.0
    assert total(second) == 3.0
    assert len(calls) == 1
    assert total(first.assign(x=[1.0, 3.0])) == 4.0
    assert len(calls) == 2
