"""Keys of polars and xarray arguments: equal data, equal keys; else different."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import memo
from tests.frame_strategies import FAST, mixed_frames

FRAMES = mixed_frames(min_rows=2)
MATRICES = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=6))


def key(value: Any) -> str:
    """The cache key of one argument."""
    return memo.hash_args(value)


def other(value: float) -> float:
    """A float whose bytes differ from ``value``'s (NaN and -0.0 included)."""
    return 1.0 if value == 0 else 0.0


def labelled(values: np.ndarray[Any, Any]) -> xr.DataArray:
    """A DataArray over ``values`` with index, non-index and scalar coordinates and attrs."""
    rows, cols = values.shape
    return xr.DataArray(
        values,
        dims=("row", "col"),
        coords={
            "row": np.arange(rows) * 10,
            "col": [f"c{i}" for i in range(cols)],
            "weight": ("row", np.linspace(0.0, 1.0, rows)),
            "run": 7,
        },
        name="v",
        attrs={"units": "m", "scale": np.array([1.0, 2.0])},
    )


# --- polars ------------------------------------------------------------------------------------


@FAST
@given(FRAMES, st.data())
def test_polars_chunking_does_not_matter(frame: pd.DataFrame, data: st.DataObject) -> None:
    """A frame split into chunks, rechunked, or sliced out of a larger one hashes alike."""
    polars_frame = pl.from_pandas(frame)
    expected = key(polars_frame)
    cut = data.draw(st.integers(1, len(frame) - 1))
    # polars itself decides whether to keep the chunks (it merges constant columns, for one);
    # test_polars_chunks_kept pins a case where every column has two.
    chunked = pl.concat([polars_frame[:cut], polars_frame[cut:]], rechunk=False)
    assert key(chunked) == expected
    assert key(chunked.rechunk()) == expected
    assert key(pl.concat([polars_frame, polars_frame]).slice(len(frame), len(frame))) == expected
    assert key(polars_frame["text"]) == key(chunked["text"])


@FAST
@given(FRAMES, st.data())
def test_polars_changes_differ(frame: pd.DataFrame, data: st.DataObject) -> None:
    """A changed cell, name, dtype or column order changes a polars key."""
    polars_frame = pl.from_pandas(frame)
    expected = key(polars_frame)
    row = data.draw(st.integers(0, len(frame) - 1))
    changed = polars_frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.col("ints") ^ 1)
        .otherwise(pl.col("ints"))
        .alias("ints")
    )
    assert key(changed) != expected
    assert key(polars_frame.rename({"ints": "integers"})) != expected
    assert key(polars_frame.select(["floats", "ints", "flags", "text", "when"])) != expected
    assert key(polars_frame.with_columns(pl.col("flags").cast(pl.UInt8))) != expected
    assert key(polars_frame.head(len(frame) - 1)) != expected
    assert key(polars_frame["ints"]) != key(polars_frame.select("ints"))


def test_polars_chunks_kept() -> None:
    """A frame whose every column has two chunks hashes as its rechunked copy."""
    first = pl.DataFrame({"n": [1, 2], "s": ["a", None], "c": ["x", "y"]})
    second = pl.DataFrame({"n": [None, 4], "s": ["bc", "d"], "c": ["y", "z"]})
    first = first.with_columns(pl.col("c").cast(pl.Categorical))
    second = second.with_columns(pl.col("c").cast(pl.Categorical))
    chunked = pl.concat([first, second], rechunk=False)
    assert chunked.n_chunks("all") == [2, 2, 2]
    assert key(chunked) == key(chunked.rechunk())
    assert key(chunked) == key(pl.concat([first, second], rechunk=True))
    assert key(chunked.slice(1, 2)) == key(chunked.rechunk().slice(1, 2))
    assert key(chunked) != key(pl.concat([second, first], rechunk=False))


def test_polars_is_not_pandas() -> None:
    """A polars Series or DataFrame never shares a key with the pandas one of the same data."""
    series = pl.Series("a", [1, 2, 3])
    assert key(series) == key(pl.Series("a", [1, 2, 3]))
    assert key(series) != key(series.to_pandas())
    assert key(series.to_frame()) != key(series.to_frame().to_pandas())
    assert key(series) != key(series.to_arrow())


def test_polars_dtypes_and_nulls() -> None:
    """Nulls, NaN, categoricals, enums and time zones are all told apart."""
    floats = pl.Series("x", [1.0, None, 3.0])
    assert key(floats) != key(pl.Series("x", [1.0, float("nan"), 3.0]))
    assert key(floats) != key(pl.Series("x", [1.0, 0.0, 3.0]))
    assert key(pl.Series("x", [1.0, 7.0, 3.0]).scatter(1, None)) == key(floats)
    words = ["b", "a", "b", None]
    strings = pl.Series("w", words)
    categorical = pl.Series("w", words, dtype=pl.Categorical)
    enum = pl.Series("w", words, dtype=pl.Enum(["b", "a"]))
    assert len({key(strings), key(categorical), key(enum)}) == 3
    assert key(enum) != key(pl.Series("w", words, dtype=pl.Enum(["a", "b"])))
    assert key(categorical) == key(pl.Series("w", words, dtype=pl.Categorical))
    utc = pl.Series("t", [0, 3_600_000_000], dtype=pl.Datetime("us", "UTC"))
    assert key(utc) != key(utc.dt.convert_time_zone("Europe/Paris"))
    assert key(utc) != key(utc.dt.replace_time_zone(None))
    wide = pl.Series("i", [1, 2**100], dtype=pl.Int128)
    assert key(wide) == key(pl.Series("i", [1, 2**100], dtype=pl.Int128))
    assert key(wide) != key(pl.Series("i", [1, 2**100 + 1], dtype=pl.Int128))
    assert key(pl.Series("i", [1, 2], dtype=pl.Int128)) != key(pl.Series("i", [1, 2]))
    nested = pl.Series("n", [[1, 2], None, [3]])
    assert key(nested) == key(pl.concat([nested[:1], nested[1:]], rechunk=False))
    assert key(nested) != key(pl.Series("n", [[1], [2], [3]]))


def test_polars_objects_by_value() -> None:
    """Object columns hash their values, not the addresses Arrow would hold."""
    series = pl.Series("o", [{"a": 1}, (2, 3)], dtype=pl.Object)
    assert key(series) == key(pl.Series("o", [{"a": 1}, (2, 3)], dtype=pl.Object))
    assert key(series) != key(pl.Series("o", [{"a": 2}, (2, 3)], dtype=pl.Object))


def test_polars_lazy_frame_refused() -> None:
    """A LazyFrame raises EncodingError telling the user to collect it first."""
    lazy = pl.DataFrame({"a": [1, 2]}).lazy()
    with pytest.raises(memo.EncodingError, match=r"LazyFrame is a query plan.*\.collect\(\)"):
        key(lazy)
    with pytest.raises(memo.EncodingError, match=r"\['plan'\]"):
        key({"plan": lazy})


# --- xarray ------------------------------------------------------------------------------------


@FAST
@given(MATRICES)
def test_xarray_layout_does_not_matter(values: np.ndarray[Any, Any]) -> None:
    """C order, Fortran order, a transposed copy and a strided view give the same key."""
    expected = key(labelled(np.ascontiguousarray(values)))
    assert key(labelled(np.asfortranarray(values))) == expected
    assert key(labelled(np.ascontiguousarray(values.T).T)) == expected
    strided = np.repeat(values, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    assert key(labelled(strided)) == expected
    dataset = labelled(values).to_dataset()
    assert key(labelled(np.asfortranarray(values)).to_dataset()) == key(dataset)
    assert key(dataset.copy(deep=True)) == key(dataset)


@FAST
@given(MATRICES, st.data())
def test_xarray_changes_differ(values: np.ndarray[Any, Any], data: st.DataObject) -> None:
    """A changed value, dtype, shape, name, dimension, coordinate or attr changes the key."""
    array = labelled(values)
    expected = key(array)
    row = data.draw(st.integers(0, values.shape[0] - 1))
    col = data.draw(st.integers(0, values.shape[1] - 1))
    changed = values.copy()
    changed[row, col] = other(values[row, col])
    assert key(labelled(changed)) != expected
    with np.errstate(over="ignore"):
        assert key(labelled(values.astype(np.float32))) != expected
    assert key(labelled(np.concatenate([values, values]))) != expected
    assert key(array.rename("w")) != expected
    assert key(array.rename({"col": "column"})) != expected
    assert key(array.transpose()) != expected
    assert key(array.assign_coords(row=array["row"] + 1)) != expected
    weights = array["weight"].values.copy()
    weights[row] = other(weights[row])
    assert key(array.assign_coords(weight=("row", weights))) != expected
    assert key(array.assign_coords(run=8)) != expected
    assert key(array.drop_vars("run")) != expected
    assert key(array.assign_attrs(units="km")) != expected
    assert key(array.assign_attrs(scale=np.array([1.0, 3.0]))) != expected
    assert key(array.variable) != expected


def test_xarray_order_of_names_does_not_matter() -> None:
    """attrs, coordinates and data variables count by name, not by insertion order."""
    values = np.arange(6.0).reshape(2, 3)
    one = xr.Dataset(
        {"a": (("x", "y"), values), "b": ("x", [1, 2])},
        coords={"x": [0, 1], "label": ("x", ["p", "q"])},
        attrs={"source": "s", "version": 2},
    )
    two = xr.Dataset(
        {"b": ("x", [1, 2]), "a": (("x", "y"), values)},
        coords={"label": ("x", ["p", "q"]), "x": [0, 1]},
        attrs={"version": 2, "source": "s"},
    )
    assert list(one.data_vars) != list(two.data_vars)
    assert key(one) == key(two)
    assert key(one) != key(one.set_coords("b"))
    assert key(one) != key(one.assign_attrs(version=3))
    assert key(one) != key(one.rename_vars({"b": "c"}))
    assert key(one["a"]) != key(one[["a"]])
    assert key(one) != key(one.set_xindex("label"))


def test_xarray_from_pandas() -> None:
    """A Dataset built from a pandas frame, categoricals included, hashes its values."""
    frame = pd.DataFrame(
        {"k": pd.Categorical(["a", "b", "a"]), "v": [1.0, 2.0, 3.0]},
        index=pd.Index([10, 20, 30], name="i"),
    )
    dataset = xr.Dataset.from_dataframe(frame)
    assert key(dataset) == key(xr.Dataset.from_dataframe(frame.copy()))
    recoded = frame.assign(k=pd.Categorical(["a", "b", "b"]))
    assert key(dataset) != key(xr.Dataset.from_dataframe(recoded))


def test_xarray_lazily_opened_file(tmp_path: Path) -> None:
    """A file opened without dask hashes as its loaded data (its values are read for the key)."""
    path = tmp_path / "grid.nc"
    labelled(np.arange(6.0).reshape(2, 3)).to_dataset().to_netcdf(path, engine="scipy")
    with xr.open_dataset(path, engine="scipy") as lazy:
        expected = key(lazy)
        assert key(lazy.load()) == expected
        assert key(lazy.assign_attrs(units="km")) != expected


def test_xarray_dask_refused() -> None:
    """dask-backed data raises EncodingError naming the variable; computed data hashes."""
    dataset = labelled(np.arange(6.0).reshape(2, 3)).to_dataset()
    chunked = dataset.chunk({"row": 1})
    with pytest.raises(memo.EncodingError, match=r"\['v'\].*chunked \(dask\).*\.compute\(\)"):
        key(chunked)
    with pytest.raises(memo.EncodingError, match=r"\.compute\(\)"):
        key(chunked["v"])
    assert key(chunked.compute()) == key(dataset)


def test_attrs_must_be_encodable() -> None:
    """An attr no rule covers is reported with its place in the value."""
    array = xr.DataArray([1, 2], dims="x", attrs={"bad": object()})
    with pytest.raises(memo.EncodingError, match=r"\.attrs\['bad'\]"):
        key(array)


# --- both --------------------------------------------------------------------------------------


def test_not_imported_by_memo() -> None:
    """Importing memo and hashing other values (pandas too) never imports polars or xarray."""
    script = (
        "import sys, memo, pandas; memo.hash_args([1, 'a'], f=pandas.DataFrame({'a': [1]}));"
        "print('polars' in sys.modules, 'xarray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_memoized_polars_and_xarray_arguments(cache_dir: Path) -> None:
    """Equal but distinct polars and xarray arguments hit; changed data misses."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir)
    def total(frame: pl.DataFrame, dataset: xr.Dataset) -> float:
        calls.append(1)
        return float(frame["x"].sum()) + float(dataset["v"].sum())

    frame = pl.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    dataset = labelled(np.ones((2, 3))).to_dataset()
    assert total(frame, dataset) == 9.0
    chunked = pl.concat([frame[:1], frame[1:]], rechunk=False)
    assert total(chunked, labelled(np.asfortranarray(np.ones((2, 3)))).to_dataset()) == 9.0
    assert len(calls) == 1
    assert total(frame.with_columns(x=pl.Series([1.0, 3.0])), dataset) == 10.0
    assert total(frame, dataset.assign(v=dataset["v"] * 2)) == 15.0
    assert len(calls) == 3
