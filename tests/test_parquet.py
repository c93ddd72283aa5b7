"""Parquet entries: a hit is the frame the function returned, dtypes, index, labels, attrs and
the index's freq included; a frame Parquet would give back changed is stored with pickle,
with one warning."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memo
from memo._exceptions import reset_warnings
from tests.frame_strategies import mixed_frames


def _assert_same(hit: Any, frame: pd.DataFrame) -> None:
    """``hit`` is ``frame``: values, dtypes, index and label kinds, freq, flags and attrs."""
    assert type(hit) is pd.DataFrame
    pd.testing.assert_frame_equal(
        hit,
        frame,
        check_dtype=True,
        check_index_type=True,
        check_column_type=True,
        check_exact=True,
        check_categorical=True,
        check_freq=True,
        check_flags=True,
    )
    assert hit.attrs == frame.attrs


def _store_and_hit(cache_dir: Path, frame: pd.DataFrame) -> tuple[Any, str, list[str]]:
    """A miss then a hit of a parquet function returning ``frame``: the hit, the serializer
    its entry records, and the MemoWarnings of both calls."""
    calls: list[int] = []

    @memo.cache(cache_path=cache_dir, serializer="parquet")
    def table(x: int) -> pd.DataFrame:
        calls.append(x)
        return frame

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table(1)
        hit = table(1)
    assert calls == [1], "the second call is a hit"
    (entry,) = table.entries()
    messages = [str(w.message) for w in caught if issubclass(w.category, memo.MemoWarning)]
    return hit, entry["serializer"], messages


def _seconds(*stamps: str) -> np.ndarray[Any, Any]:
    return np.array(stamps, dtype="datetime64[s]")


# Frames pyarrow's Parquet would give back changed, before memo checked.
_ALTERED: dict[str, Callable[[], pd.DataFrame]] = {
    "object-ints": lambda: pd.DataFrame({"n": pd.Series([1, 2, 3], dtype=object)}),
    "object-huge-ints": lambda: pd.DataFrame({"n": pd.Series([1, 2**70], dtype=object)}),
    "datetime64[s]": lambda: pd.DataFrame({"t": _seconds("2020-01-01", "2021-06-30T12:00")}),
    "datetime64[s]-index": lambda: pd.DataFrame(
        {"x": [1.0, 2.0]}, index=pd.DatetimeIndex(_seconds("2020-01-01", "2020-01-02"))
    ),
    "zoned-seconds": lambda: pd.DataFrame(
        {"t": pd.date_range("2020", periods=2, tz="Europe/Paris", unit="s")}
    ),
    "object-lists": lambda: pd.DataFrame({"l": pd.Series([[1], [2, 3]], dtype=object)}),
    "object-text": lambda: pd.DataFrame({"s": pd.Series(["a", None], dtype=object)}),
    "int-categories": lambda: pd.DataFrame({"c": pd.Categorical([1, 2, 1])}),
    "range-labels": lambda: pd.DataFrame(np.ones((2, 3))),
    "python-strings": lambda: pd.DataFrame(
        {"s": pd.array(["a", None], dtype=pd.StringDtype("python"))}
    ),
    "tuple-attrs": lambda: _with_attrs(pd.DataFrame({"x": [1]}), {"k": (1, 2)}),
}


def _with_attrs(frame: pd.DataFrame, attrs: dict[str, Any]) -> pd.DataFrame:
    frame.attrs = attrs
    return frame


@pytest.mark.parametrize("case", list(_ALTERED))
def test_frame_parquet_would_change_is_stored_with_pickle(cache_dir: Path, case: str) -> None:
    """A frame Parquet gives back changed (object ints, datetime64[s], lists, ...) is stored
    with pickle, with one warning, and its hit is the frame returned."""
    frame = _ALTERED[case]()
    hit, serializer, messages = _store_and_hit(cache_dir, frame)
    _assert_same(hit, frame)
    assert serializer == "pickle"
    assert len(messages) == 1, messages
    assert "stored with pickle, not parquet" in messages[0]


def test_parquet_keeps_seconds_that_parquet_can_hold(cache_dir: Path) -> None:
    """A timedelta64[s] column, a freq'd date index and attrs survive a parquet entry."""
    frame = pd.DataFrame(
        {"wait": np.array([1, 2, 3], dtype="timedelta64[s]"), "x": [1.0, 2.0, 3.0]},
        index=pd.date_range("2024-01-01", periods=3, freq="D", name="day"),
    )
    frame.attrs = {"source": "sensor", "version": 2}
    hit, serializer, messages = _store_and_hit(cache_dir, frame)
    _assert_same(hit, frame)
    assert hit.index.freq == "D"
    assert serializer == "parquet"
    assert messages == []


def test_parquet_keeps_the_order_and_unused_categories(cache_dir: Path) -> None:
    """A categorical column keeps its categories, unused ones and their order included."""
    frame = pd.DataFrame(
        {"kind": pd.Categorical(["x", "y"], categories=["z", "y", "x", "w"], ordered=True)}
    )
    hit, serializer, messages = _store_and_hit(cache_dir, frame)
    _assert_same(hit, frame)
    assert list(hit["kind"].cat.categories) == ["z", "y", "x", "w"]
    assert (serializer, messages) == ("parquet", [])


# --- a property over families of frames ---------------------------------------------------


def _rows(elements: st.SearchStrategy[Any], rows: int) -> st.SearchStrategy[list[Any]]:
    """Lists of exactly ``rows`` elements."""
    return st.lists(elements, min_size=rows, max_size=rows)


def _column(kind: str, rows: int) -> st.SearchStrategy[Any]:
    """A column of ``rows`` values of one family (numpy, pandas extension, Python objects)."""
    ints = st.integers(-(2**63), 2**63 - 1)
    seconds = st.integers(-(2**40), 2**40)
    text = st.text(max_size=4)
    makers: dict[str, st.SearchStrategy[Any]] = {
        "int64": _rows(ints, rows).map(lambda v: np.array(v, dtype=np.int64)),
        "float64": _rows(st.floats(), rows).map(lambda v: np.array(v, dtype=np.float64)),
        "bool": _rows(st.booleans(), rows).map(lambda v: np.array(v, dtype=bool)),
        "datetime64[ns]": _rows(seconds, rows).map(lambda v: np.array(v, "datetime64[ns]")),
        "datetime64[s]": _rows(seconds, rows).map(lambda v: np.array(v, "datetime64[s]")),
        "timedelta64[s]": _rows(seconds, rows).map(lambda v: np.array(v, "timedelta64[s]")),
        "object-ints": _rows(st.integers(), rows).map(lambda v: pd.Series(v, dtype=object)),
        "object-text": _rows(st.none() | text, rows).map(lambda v: pd.Series(v, dtype=object)),
        "str": _rows(st.none() | text, rows).map(lambda v: pd.array(v, dtype="str")),
        "Int64": _rows(st.none() | st.integers(-5, 5), rows).map(
            lambda v: pd.array(v, dtype="Int64")
        ),
        "category": st.tuples(
            _rows(st.sampled_from("xyz"), rows), st.permutations(["w", "x", "y", "z"])
        ).map(lambda v: pd.Categorical(v[0], categories=v[1])),
    }
    return makers[kind]


_INDEXES: dict[str, Callable[[int], pd.Index]] = {
    "range": lambda rows: pd.RangeIndex(rows),
    "stepped": lambda rows: pd.RangeIndex(5, 5 + 3 * rows, 3, name="r"),
    "int": lambda rows: pd.Index(np.arange(rows, dtype=np.int64) * 7, name="id"),
    "days": lambda rows: pd.date_range("2020-01-01", periods=rows, freq="D"),
    "seconds": lambda rows: pd.DatetimeIndex(np.arange(rows).astype("datetime64[s]")),
}


@st.composite
def _frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 5))
    kinds = draw(st.lists(st.sampled_from(sorted(_FAMILIES)), max_size=4))
    data = {f"c{i}": draw(_column(kind, rows)) for i, kind in enumerate(kinds)}
    frame = pd.DataFrame(data, index=_INDEXES[draw(st.sampled_from(sorted(_INDEXES)))](rows))
    if draw(st.booleans()):
        frame.columns = pd.Index(range(len(kinds)))  # int labels (or a RangeIndex)
    frame.attrs = draw(st.sampled_from([{}, {"unit": "m"}, {"pair": (1, 2)}]))
    return frame


_FAMILIES = [
    "int64",
    "float64",
    "bool",
    "datetime64[ns]",
    "datetime64[s]",
    "timedelta64[s]",
    "object-ints",
    "object-text",
    "str",
    "Int64",
    "category",
]


@settings(max_examples=150, deadline=None)
@given(frame=st.one_of(_frames(), mixed_frames(0)))
def test_a_parquet_hit_is_the_frame_returned(frame: pd.DataFrame) -> None:
    """Over frame families, a parquet function's hit is exactly the frame it returned: stored
    as Parquet with no warning, or with pickle after exactly one warning."""
    reset_warnings()
    with tempfile.TemporaryDirectory() as directory:
        hit, serializer, messages = _store_and_hit(Path(directory), frame)
    _assert_same(hit, frame)
    assert serializer in ("parquet", "pickle")
    assert len(messages) == (serializer == "pickle"), messages
