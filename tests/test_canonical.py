"""Canonical encoding: type-tagged, injective, independent of order and hash seed."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import math
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memo._keys._bytes import UnencodableError
from memo._keys._canonical import encode

# Values that compare equal or look alike in Python but must not share a key.
LOOKALIKES: list[Any] = [
    1,
    1.0,
    True,
    "1",
    b"1",
    [1],
    (1,),
    {1},
    frozenset({1}),
    {1: 0},
    {"1": 0},
    {True: 0},
    {1.0: 0},
    Path("a"),
    "a",
    PureWindowsPath("a"),
    0,
    0.0,
    -0.0,
    False,
    None,
    "",
    b"",
    bytearray(b""),
    [],
    (),
    {},
    set(),
    frozenset(),
    [[]],
    [()],
    ([],),
    ["a", "b"],
    ["ab"],
    [["a"], "b"],
    ("a", ("b",)),
    collections.OrderedDict([(1, 2), (3, 4)]),
    collections.OrderedDict([(3, 4), (1, 2)]),
    {1: 2, 3: 4},
    range(3),
    [0, 1, 2],
    slice(1, 2),
    decimal.Decimal("1"),
    fractions.Fraction(1, 1),
    complex(1, 0),
    datetime.date(2020, 1, 1),
    datetime.datetime(2020, 1, 1),
    datetime.timedelta(days=1),
    datetime.timedelta(seconds=86400.5),
    np.int64(1),
    np.float64(1.0),
    np.array([1]),
    np.array([1.0]),
    np.array([[1]]),
    np.array([1], dtype=np.int32),
]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
    ),
    max_leaves=12,
)


class Color(enum.Enum):
    """A plain enum for the tests."""

    RED = 1
    GREEN = 2


class Pair(NamedTuple):
    """A namedtuple for the tests."""

    a: int
    b: int


@dataclasses.dataclass
class Point:
    """A dataclass for the tests."""

    x: float
    y: float


def test_lookalikes_all_differ() -> None:
    """Values that are equal or similar in Python still get distinct encodings."""
    encodings = [encode(value) for value in LOOKALIKES]
    assert len(set(encodings)) == len(LOOKALIKES)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_distinct_values_distinct_encodings(a: Any, b: Any) -> None:
    """Two values with different canonical meaning never share an encoding."""
    if _canonical_repr(a) != _canonical_repr(b):
        assert encode(a) != encode(b)
    else:
        assert encode(a) == encode(b)


def _canonical_repr(value: Any) -> Any:
    """A reference model of what the encoding distinguishes (type, order-free containers)."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, bool | int | str | bytes | type(None)):
        return (type(value).__name__, value)
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_canonical_repr(v) for v in value))
    if isinstance(value, frozenset):
        return ("frozenset", tuple(sorted(repr(_canonical_repr(v)) for v in value)))
    if isinstance(value, dict):
        items = sorted(repr((_canonical_repr(k), _canonical_repr(v))) for k, v in value.items())
        return ("dict", tuple(items))
    raise AssertionError(type(value))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8) | st.integers(), st.integers(), max_size=8))
def test_dict_order_does_not_matter(mapping: dict[Any, int]) -> None:
    """Insertion order of a dict never changes its encoding."""
    reversed_mapping = dict(reversed(list(mapping.items())))
    assert encode(mapping) == encode(reversed_mapping)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text(max_size=8) | st.integers(), max_size=10))
def test_set_order_does_not_matter(items: set[Any]) -> None:
    """Sets encode the same whatever order they were built in."""
    rebuilt = set()
    for item in sorted(items, key=repr, reverse=True):
        rebuilt.add(item)
    assert encode(items) == encode(rebuilt)
    assert encode(frozenset(items)) == encode(frozenset(sorted(items, key=repr)))


def test_float_specials_are_deterministic() -> None:
    """All NaNs encode alike; -0.0 differs from 0.0; infinities are stable."""
    assert encode(float("nan")) == encode(-float("nan")) == encode(math.nan)
    assert encode(0.0) != encode(-0.0)
    assert encode(math.inf) != encode(-math.inf)
    assert encode([math.inf]) == encode([float("inf")])


def test_big_ints_and_surrogates() -> None:
    """Huge integers and lone surrogates in strings are encoded, not rejected."""
    big = 10**5000
    assert encode(big) != encode(big + 1)
    assert encode(-(2**63)) != encode(2**63)
    assert encode("\ud800") != encode("\ud801")


def test_standard_types() -> None:
    """Enum, namedtuple, dataclass, UUID, datetime with tz and Path are encodable and distinct."""
    values = [
        Color.RED,
        Color.GREEN,
        Pair(1, 2),
        (1, 2),
        Point(1.0, 2.0),
        uuid.UUID(int=5),
        datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(2020, 1, 1),
        datetime.time(12, 0),
        Path("/tmp/x"),
        ...,
    ]
    encodings = [encode(v) for v in values]
    assert len(set(encodings)) == len(values)
    assert encode(Point(1.0, 2.0)) == encode(Point(1.0, 2.0))
    assert encode(Path("a")) == encode(PurePosixPath("a"))  # equal paths, one key


def test_numpy_arrays() -> None:
    """Arrays encode by dtype, shape and bytes; views and copies of equal data agree."""
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert encode(base) == encode(base.copy())
    assert encode(base.T) == encode(np.ascontiguousarray(base.T))
    assert encode(base) != encode(base.reshape(4, 3))
    assert encode(base) != encode(base.astype(np.float32))
    changed = base.copy()
    changed[2, 3] += 1
    assert encode(base) != encode(changed)
    objects = np.array([1, "a"], dtype=object)
    assert encode(objects) == encode(np.array([1, "a"], dtype=object))


def test_subclasses_are_tagged() -> None:
    """A subclass of a builtin encodes differently from the builtin itself."""

    class MyInt(int):
        pass

    assert encode(MyInt(3)) != encode(3)
    assert encode(collections.defaultdict(int, {1: 2})) != encode({1: 2})


def test_cycles_and_depth_raise_clearly() -> None:
    """Self-containing and absurdly deep values raise UnencodableError, not RecursionError."""
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnencodableError, match="cycle"):
        encode(loop)
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(UnencodableError, match="deeper"):
        encode(deep)
    shared = [1, 2]
    assert encode([shared, shared]) == encode([[1, 2], [1, 2]])


def test_unknown_types_are_rejected() -> None:
    """An object no rule covers is rejected, never encoded by repr or id."""

    class Opaque:
        pass

    with pytest.raises(UnencodableError):
        encode(Opaque())
    with pytest.raises(UnencodableError):
        encode({"a": [Opaque()]})


def test_hash_seed_independence() -> None:
    """Keys of sets, dicts and strings are the same under different PYTHONHASHSEED values."""
    script = textwrap.dedent(
        """
        import memo
        value = {"b": {3, "x", (1, 2)}, "a": frozenset({"p", "q", "r"}), 7: ["z", {"k": 1}]}
        print(memo.hash_args(value, s={"one", "two", "three"}, x=1))
        """
    )
    digests = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        digests.add(result.stdout.strip())
    assert len(digests) == 1
    assert len(next(iter(digests))) == 32


def test_numpy_is_not_imported_by_memo() -> None:
    """Importing memo and hashing plain values never imports numpy or pandas."""
    script = (
        "import sys, memo; memo.hash_args([1, 'a'], x={1: 2});"
        "print('numpy' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
