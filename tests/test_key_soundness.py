"""Key soundness: two values share a key only if nothing a function can observe tells them apart.

Each family draws values from a small space of look-alikes (the same instant in two zones, one
nanosecond apart, the same data with another mask or dtype, a flag with no members), so that
near-collisions are common. For every pair with equal keys, every observer of behaviour must
agree; and every value's key is the same in fresh processes under other hash seeds.
"""

from __future__ import annotations

import collections
import datetime
import enum
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memo

ROOT = Path(__file__).resolve().parent.parent

Observer = Callable[[Any], Any]


def key(value: Any) -> str:
    return memo.hash_args(value)


# --- families ----------------------------------------------------------------------------------

ZONES: list[datetime.tzinfo | None] = [
    None,
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("Europe/Paris"),
    ZoneInfo("UTC"),
    datetime.UTC,
    datetime.timezone(datetime.timedelta(hours=1)),
    datetime.timezone(datetime.timedelta(hours=1), "CET"),
]
INSTANTS = [datetime.datetime(2021, 1, 10, 12), datetime.datetime(2021, 7, 10, 12)]


@st.composite
def datetimes(draw: st.DrawFn) -> Any:
    base = draw(st.sampled_from(INSTANTS)).replace(
        tzinfo=draw(st.sampled_from(ZONES)), fold=draw(st.sampled_from([0, 1]))
    )
    nanoseconds = draw(st.integers(0, 2))
    kind = draw(st.sampled_from(["datetime", "timestamp", "timestamp-s"]))
    if kind == "datetime":
        return base
    stamp = pd.Timestamp(base) + pd.Timedelta(nanoseconds, "ns")
    return stamp.as_unit("s") if kind == "timestamp-s" and not nanoseconds else stamp


def _dt_observers() -> list[Observer]:
    later = datetime.timedelta(days=182)
    return [
        type,
        lambda d: d.isoformat(),
        lambda d: d.tzname(),
        lambda d: str(d.tzinfo),
        lambda d: (d + later).isoformat(),
        lambda d: (d + later).utcoffset(),
        lambda d: getattr(d, "unit", None),
        lambda d: d.fold,
    ]


@st.composite
def timedeltas(draw: st.DrawFn) -> Any:
    nanoseconds = draw(st.integers(-2000, 2000))
    kind = draw(st.sampled_from(["timedelta", "pandas", "pandas-us"]))
    if kind == "timedelta":
        return datetime.timedelta(microseconds=nanoseconds // 1000)
    delta = pd.Timedelta(nanoseconds, "ns")
    return delta.as_unit("us") if kind == "pandas-us" and nanoseconds % 1000 == 0 else delta


def _td_observers() -> list[Observer]:
    return [type, str, lambda d: pd.Timedelta(d).value, lambda d: getattr(d, "unit", None)]


DTYPES = ["<i8", "<i4", "<f8", ">f8", "<M8[s]", "<M8[ms]", "|b1"]


@st.composite
def arrays(draw: st.DrawFn) -> Any:
    dtype = draw(st.sampled_from(DTYPES))
    size = draw(st.integers(0, 3))
    data = np.array(draw(st.lists(st.integers(0, 2), min_size=size, max_size=size)))
    array = data.astype(dtype)
    kind = draw(st.sampled_from(["plain", "fortran", "masked"]))
    if kind == "fortran":
        return np.asfortranarray(np.stack([array, array], axis=1))
    if kind == "masked":
        mask = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        fill = draw(st.sampled_from([None, 1]))
        masked = np.ma.array(array, mask=mask if draw(st.booleans()) else np.ma.nomask)
        if fill is not None:
            masked.fill_value = fill
        return masked
    return array


def _array_observers() -> list[Observer]:
    def plain(a: Any) -> Any:
        return np.asarray(a).tobytes() if not isinstance(a, np.ma.MaskedArray) else None

    return [
        type,
        lambda a: a.dtype.str,
        lambda a: a.shape,
        plain,
        lambda a: np.ma.getmaskarray(a).tolist() if isinstance(a, np.ma.MaskedArray) else None,
        lambda a: a.data.tobytes() if isinstance(a, np.ma.MaskedArray) else None,
        lambda a: a.fill_value.tolist() if isinstance(a, np.ma.MaskedArray) else None,
        lambda a: repr(a),
        lambda a: np.asarray(a).tolist(),
    ]


class Perm(enum.Flag):
    """A flag whose empty and combined members have no single name."""

    R = 1
    W = 2
    X = 4


class Level(enum.IntEnum):
    """An int enum: equal to ints, but not the same value for a function."""

    LOW = 1
    HIGH = 2


class Other(enum.Enum):
    """Another enum with the same names and values as Level."""

    LOW = 1
    HIGH = 2


ENUM_VALUES: list[Any] = [
    Perm(0),
    Perm.R,
    Perm.W,
    Perm.R | Perm.W,
    Perm.R | Perm.W | Perm.X,
    Level.LOW,
    Level.HIGH,
    Other.LOW,
    Other.HIGH,
    1,
    2,
]


def _enum_observers() -> list[Observer]:
    return [type, repr, lambda e: getattr(e, "value", e)]


@st.composite
def containers(draw: st.DrawFn) -> Any:
    items = draw(st.lists(st.integers(0, 2), max_size=3))
    kind = draw(st.sampled_from(["deque", "list", "defaultdict", "dict", "counter"]))
    if kind == "deque":
        return collections.deque(items, maxlen=draw(st.sampled_from([None, 3, 4])))
    if kind == "list":
        return items
    mapping = {item: item for item in items}
    if kind == "defaultdict":
        return collections.defaultdict(draw(st.sampled_from([int, list])), mapping)
    if kind == "counter":
        return collections.Counter(mapping)
    return mapping


def _container_observers() -> list[Observer]:
    def missing(c: Any) -> Any:
        return repr(c[99]) if isinstance(c, collections.defaultdict | collections.Counter) else None

    return [
        type,
        lambda c: sorted(c.items()) if isinstance(c, dict) else list(c),
        lambda c: getattr(c, "maxlen", None),
        missing,
    ]


DTYPE_VALUES = [
    np.dtype("<f8"),
    np.dtype(">f8"),
    np.dtype("<i8"),
    np.dtype("<M8[s]"),
    np.dtype("<M8[ns]"),
    np.dtype([("a", "<i1"), ("b", "<i8")]),
    np.dtype([("a", "<i1"), ("b", "<i8")], align=True),
    np.dtype("<U3"),
]


def _dtype_observers() -> list[Observer]:
    return [type, lambda d: d.str, lambda d: d.itemsize, lambda d: str(d.descr), lambda d: d.kind]


FAMILIES: dict[str, tuple[st.SearchStrategy[Any], list[Observer]]] = {
    "datetimes": (datetimes(), _dt_observers()),
    "timedeltas": (timedeltas(), _td_observers()),
    "arrays": (arrays(), _array_observers()),
    "enums": (st.sampled_from(ENUM_VALUES), _enum_observers()),
    "containers": (containers(), _container_observers()),
    "dtypes": (st.sampled_from(DTYPE_VALUES), _dtype_observers()),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_equal_keys_mean_equal_behaviour(family: str, data: st.DataObject) -> None:
    """Within each family, two values with one key agree on every observer of behaviour."""
    strategy, observers = FAMILIES[family]
    a, b = data.draw(strategy), data.draw(strategy)
    assert key(a) == key(a)
    if key(a) == key(b):
        for observe in observers:
            assert observe(a) == observe(b), (a, b)


def test_a_memmap_has_the_key_of_the_equal_array(tmp_path: Path) -> None:
    """A memory-mapped array and the equal in-memory array share one key (same behaviour)."""
    mapped = np.memmap(tmp_path / "a.bin", dtype="<f8", mode="w+", shape=(3,))
    mapped[:] = [1.0, 2.0, 3.0]
    assert key(mapped) == key(np.array([1.0, 2.0, 3.0]))
    assert key(mapped[1:]) == key(np.array([2.0, 3.0]))


def test_families_leave_nothing_apart_that_is_the_same() -> None:
    """Look-alikes that really are the same value keep one key (the suite is not vacuous)."""
    berlin = ZoneInfo("Europe/Berlin")
    assert key(datetime.datetime(2021, 1, 1, tzinfo=berlin)) == key(
        datetime.datetime(2021, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    )
    assert key(pd.Timestamp(1, unit="ns")) == key(pd.Timestamp(1, unit="ns"))
    assert key(np.ma.array([1, 2], mask=[False, True])) == key(
        np.ma.array([1, 2], mask=[False, True])
    )
    assert key(collections.deque([1, 2])) == key(collections.deque([1, 2]))
    assert key(Perm.R | Perm.W) == key(Perm(3))


def test_look_alikes_named_in_the_field_get_their_own_keys() -> None:
    """The cases users meet: ns apart, subclass vs base, zone vs offset, mask, flag, factory."""
    pairs = [
        (pd.Timedelta(1, "ns"), pd.Timedelta(2, "ns")),
        (pd.Timestamp("2020-01-01"), datetime.datetime(2020, 1, 1)),
        (
            datetime.datetime(2021, 1, 1, tzinfo=ZoneInfo("Europe/Berlin")),
            datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
        ),
        (np.ma.array([1.0, 2.0], mask=[False, True]), np.ma.array([1.0, 2.0], mask=[False, False])),
        (np.ma.array([1, 2], mask=[False, True]), np.array([1, 2])),
        (Perm(0), Perm.R),
        (collections.defaultdict(int), collections.defaultdict(list)),
        (collections.deque([1], maxlen=2), collections.deque([1])),
        (np.dtype("<f8"), np.dtype(">f8")),
        (
            pd.Series([1], index=pd.date_range("2020", periods=1, freq="D")),
            pd.Series([1], index=pd.DatetimeIndex(["2020-01-01"])),
        ),
        (pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1]}).set_flags().pipe(_with_attrs)),
    ]
    for a, b in pairs:
        assert key(a) != key(b), (a, b)


def _with_attrs(frame: pd.DataFrame) -> pd.DataFrame:
    frame.attrs["unit"] = "m"
    return frame


def test_a_builtin_subclass_counts_by_its_code() -> None:
    """Two dict subclasses of one name whose __missing__ differs do not share a key."""

    class Zero(dict[str, int]):
        def __missing__(self, name: str) -> int:
            return 0

    first = Zero

    class Zero(dict[str, int]):  # type: ignore[no-redef]
        def __missing__(self, name: str) -> int:
            return 1

    assert first.__qualname__ == Zero.__qualname__
    assert key(first(a=1)) != key(Zero(a=1))


class Tagged(int):
    """An int subclass that carries a unit besides its value."""

    unit: str

    def __new__(cls, value: int, unit: str) -> Tagged:
        made = super().__new__(cls, value)
        made.unit = unit
        return made


class Slotted(str):
    """A str subclass with a slot of its own."""

    __slots__ = ("lang",)


def test_subclasses_with_state_of_their_own_are_refused() -> None:
    """A builtin's subclass that adds attributes or slots is refused, not reduced to its base."""
    with pytest.raises(memo.EncodingError, match="attributes"):
        key(Tagged(1, "m"))
    with pytest.raises(memo.EncodingError, match="slots"):
        key(Slotted("x"))


def test_unknown_array_subclasses_and_zones_are_refused() -> None:
    """An ndarray subclass or a time zone memo cannot identify is refused with the fix."""

    class Quantity(np.ndarray):
        pass

    with pytest.raises(memo.EncodingError, match=r"numpy\.asarray"):
        key(np.zeros(2).view(Quantity))

    class Local(datetime.tzinfo):
        def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
            return datetime.timedelta(hours=2)

        def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
            return datetime.timedelta(0)

        def tzname(self, dt: datetime.datetime | None) -> str:
            return "local"

    with pytest.raises(memo.EncodingError, match="ZoneInfo"):
        key(datetime.datetime(2021, 1, 1, tzinfo=Local()))


def test_memoized_functions_are_values() -> None:
    """A memoized function as an argument is keyed by the code of the function it wraps."""

    @memo.cache
    def double(x: int) -> int:
        return 2 * x

    @memo.cache
    def triple(x: int) -> int:
        return 3 * x

    assert key(double) != key(triple)
    assert key({"route": double}) == key({"route": double})


# --- stable across processes and hash seeds ----------------------------------------------------


def samples() -> list[Any]:
    """One value of every family, built the same way in every process."""
    return [
        datetime.datetime(2021, 7, 1, 12, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime.time(1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=-3), "X")),
        pd.Timestamp("2021-03-01 00:00:00.000000001", tz="UTC"),
        pd.Timedelta(7, "ns"),
        pd.Period("2021-03", freq="M"),
        pd.Interval(0, 1, closed="left"),
        pd.NaT,
        np.ma.array([1, 2, 3], mask=[False, True, False], fill_value=9),
        np.dtype([("a", "<i1"), ("b", "<f8")], align=True),
        np.rec.array([(1, 2.0)], dtype=[("a", "<i8"), ("b", "<f8")]),
        Perm(0),
        Perm.R | Perm.X,
        Level.HIGH,
        collections.deque({"b": 1, "a": 2}, maxlen=5),
        collections.defaultdict(list, {frozenset({"x", "y"}): {"z"}}),
    ]


def test_keys_are_stable_across_processes_and_hash_seeds() -> None:
    """Every family's key is the same in fresh interpreters with other PYTHONHASHSEEDs."""
    here = [key(value) for value in samples()]
    script = (
        "import json, memo, tests.test_key_soundness as t; "
        "print(json.dumps([memo.hash_args(v) for v in t.samples()]))"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == here
