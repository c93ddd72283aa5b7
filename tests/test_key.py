"""Keys of calls: signature binding, ignore, version, key=, and _extra_cache_key."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import memo
from memo._explain import changed_arguments
from memo._keys._digest import value_digest
from memo._keys._key import NO_EXTRA, KeyMaker, _label_name


def test_binding_applies_defaults(cache_dir: Path) -> None:
    """f(1), f(a=1) and f(1, b=<default>) share a key; another b does not."""

    @memo.cache(cache_path=cache_dir)
    def f(a: int, b: int = 2, *, c: str = "x") -> int:
        return a

    key = f.key(1)
    assert key == f.key(a=1) == f.key(1, 2) == f.key(1, b=2) == f.key(b=2, a=1)
    assert key == f.key(1, c="x")
    assert key != f.key(1, 3)
    assert key != f.key(1, c="y")
    assert len(key) == 32


def test_positional_only_and_varargs(cache_dir: Path) -> None:
    """*args and **kwargs are part of the key, keyword order is not."""

    @memo.cache(cache_path=cache_dir)
    def g(a: int, /, *rest: int, **options: Any) -> int:
        return a

    assert g.key(1, 2, 3, x=1, y=2) == g.key(1, 2, 3, y=2, x=1)
    assert g.key(1, 2, 3) != g.key(1, 2)
    assert g.key(1, x=1) != g.key(1, x=2)


def test_wrong_arguments_raise_type_error(cache_dir: Path) -> None:
    """A call that does not fit the signature fails like the plain function would."""

    @memo.cache(cache_path=cache_dir)
    def f(a: int, b: int = 2) -> int:
        return a

    with pytest.raises(TypeError, match=r"f\(\)"):
        f()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f(1, c=3)  # type: ignore[call-arg]


def test_ignore_leaves_names_out(cache_dir: Path) -> None:
    """Ignored arguments do not change the key, even inside **kwargs."""

    @memo.cache(cache_path=cache_dir, ignore=["verbose"])
    def f(x: int, verbose: bool = False) -> int:
        return x

    assert f.key(1, verbose=True) == f.key(1, verbose=False) == f.key(1)

    @memo.cache(cache_path=cache_dir, ignore=["timeout_min"])
    def launch(config: str, **options: Any) -> str:
        return config

    assert launch.key("a", timeout_min=5) == launch.key("a", timeout_min=60) == launch.key("a")
    assert launch.key("a", nodes=2) != launch.key("a", nodes=3)


def test_ignore_unknown_name_is_an_error(cache_dir: Path) -> None:
    """Ignoring a parameter the function does not have fails at decoration time."""
    with pytest.raises(TypeError, match="no such parameter"):

        @memo.cache(cache_path=cache_dir, ignore=["verbsoe"])
        def f(x: int, verbose: bool = False) -> int:
            return x


def test_version_is_part_of_the_key(cache_dir: Path) -> None:
    """Bumping version gives new keys; the same version the same keys."""

    def body(x: int) -> int:
        return x

    one = memo.decorate(body, cache_path=cache_dir, version=1)
    one_again = memo.decorate(body, cache_path=cache_dir, version=1)
    two = memo.decorate(body, cache_path=cache_dir, version=2)
    assert one.key(5) == one_again.key(5)
    assert one.key(5) != two.key(5)


def test_custom_key_callable(cache_dir: Path) -> None:
    """key= replaces the argument part with the callable's result."""
    seen: list[inspect.BoundArguments] = []

    def by_name(bound: inspect.BoundArguments) -> Any:
        seen.append(bound)
        return bound.arguments["config"]["name"]

    @memo.cache(cache_path=cache_dir, key=by_name)
    def run(config: dict[str, Any], workers: int = 4) -> str:
        return str(config["name"])

    assert run.key({"name": "a", "seed": 1}) == run.key({"name": "a", "seed": 2}, workers=8)
    assert run.key({"name": "a"}) != run.key({"name": "b"})
    assert seen[0].arguments["workers"] == 4  # defaults are applied


def test_extra_cache_key_undeclared(cache_dir: Path) -> None:
    """An undeclared _extra_cache_key changes the key and is not passed to the function."""
    received: list[dict[str, Any]] = []

    @memo.cache(cache_path=cache_dir)
    def load(path: str, **kwargs: Any) -> str:
        received.append(kwargs)
        return path

    assert load("p", _extra_cache_key="v1") == "p"
    assert received == [{}]
    assert load("p", _extra_cache_key="v1") == "p"
    assert len(received) == 1
    assert load("p", _extra_cache_key="v2") == "p"
    assert len(received) == 2
    assert load.key("p", _extra_cache_key="v1") != load.key("p")


def test_extra_cache_key_declared(cache_dir: Path) -> None:
    """A declared _extra_cache_key is passed through and is part of the key."""
    received: list[Any] = []

    @memo.cache(cache_path=cache_dir)
    def load(path: str, _extra_cache_key: Any = None) -> str:
        received.append(_extra_cache_key)
        return path

    load("p", _extra_cache_key="h1")
    load("p", "h1")
    load("p", _extra_cache_key="h2")
    assert received == ["h1", "h2"]


def test_extra_cache_key_cannot_be_ignored(cache_dir: Path) -> None:
    """_extra_cache_key is always part of the key."""
    with pytest.raises(ValueError, match="_extra_cache_key"):

        @memo.cache(cache_path=cache_dir, ignore=["_extra_cache_key"])
        def load(path: str, _extra_cache_key: Any = None) -> str:
            return path


def test_unencodable_argument_names_parameter_before_body_runs(cache_dir: Path) -> None:
    """EncodingError names the parameter, its type and the fixes; the body never runs."""
    ran: list[int] = []

    class Opaque:
        pass

    @memo.cache(cache_path=cache_dir)
    def f(x: int, model: Any) -> int:
        ran.append(x)
        return x

    with pytest.raises(memo.EncodingError) as info:
        f(1, {"layers": [Opaque()]})
    message = str(info.value)
    assert "'model'" in message
    assert "Opaque" in message
    assert "['layers'][0]" in message
    assert "Encoder.register" in message
    assert "ignore=['model']" in message
    assert ran == []


def test_cyclic_argument_is_a_clear_error(cache_dir: Path) -> None:
    """A self-containing argument raises EncodingError mentioning the cycle."""

    @memo.cache(cache_path=cache_dir)
    def f(x: Any) -> int:
        return 1

    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(memo.EncodingError, match="cycle"):
        f(loop)


def test_functions_as_arguments_key_by_code(cache_dir: Path) -> None:
    """A function argument is keyed by its code fingerprint, not its identity."""

    @memo.cache(cache_path=cache_dir)
    def apply(fn: Any, x: int) -> int:
        return int(fn(x))

    def make(k: int) -> Any:
        return lambda v: v * k

    assert apply.key(make(2), 1) == apply.key(make(2), 1)
    assert apply.key(make(2), 1) != apply.key(make(3), 1)
    assert apply(make(2), 5) == 10


_ARGUMENTS = st.one_of(
    st.text(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.binary(max_size=8),
)


def _exact(value: Any) -> bool:
    return type(value) in (int, float, bool, type(None)) or (
        type(value) is str and len(value) <= 60
    )


def _described(maker: KeyMaker, args: Any, kwargs: Any, extra: Any) -> Any:
    _, labels, values = maker.bind(args, kwargs, extra)
    return json.loads("{" + maker.describe(labels, values, extra) + "}")


def _fully_bound(func: Any, args: Any, kwargs: Any) -> list[Any]:
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    return list(bound.arguments.values())


@given(st.integers(0, 3), st.booleans(), st.integers())
def test_bind_completes_calls_as_the_signature_does(
    given_count: int, keyword: bool, x: int
) -> None:
    """bind's values are the signature's bound arguments with defaults, and its key is key()'s."""

    def f(a, b, c=2.5, *, d="d"):  # type: ignore[no-untyped-def]
        return a

    maker = KeyMaker(f)
    args = (x, "b", None)[:given_count]
    kwargs = {"d": x} if keyword else {}
    try:
        expected = _fully_bound(f, args, kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            maker.bind(args, kwargs)
        return
    key, labels, values = maker.bind(args, kwargs)
    assert list(values) == expected
    assert [_label_name(label) for label in labels] == ["a", "b", "c", "d"]
    assert key == maker.key(args, kwargs)
    assert key == KeyMaker(f).key(tuple(expected[:3]), {"d": expected[3]})


def _expected_digests(arguments: dict[str, Any]) -> dict[str, str]:
    return {name: value_digest(value) for name, value in arguments.items() if not _exact(value)}


@given(_ARGUMENTS, _ARGUMENTS, st.one_of(st.just(NO_EXTRA), _ARGUMENTS))
def test_described_call_is_json_with_a_summary_and_digest_per_argument(
    first: Any, second: Any, extra: Any
) -> None:
    """An entry's argument metadata (built as text) parses: a summary of each argument, the
    exact repr of numbers and short strings, and a digest of every other argument."""

    def f(plain, ünïcodé="default"):  # type: ignore[no-untyped-def]
        return plain

    maker = KeyMaker(f)
    for args, kwargs in (((first, second), {}), ((first,), {"ünïcodé": second})):
        described = _described(maker, args, kwargs, extra)
        assert list(described["arguments"]) == ["plain", "ünïcodé"]
        bound = {"plain": first, "ünïcodé": second}
        assert described["argument_digests"] == _expected_digests(bound)
        for name, value in bound.items():
            shown = described["arguments"][name]
            assert isinstance(shown, str)
            assert shown == repr(value) or not _exact(value)
        assert described["extra"] == (None if extra is NO_EXTRA else value_digest(extra))

    def g(a, *rest, **named):  # type: ignore[no-untyped-def]
        return a

    described = _described(KeyMaker(g), (first,), {"b": second}, extra)
    assert list(described["arguments"]) == ["a", "rest", "named"]
    assert described["argument_digests"] == _expected_digests(
        {"a": first, "rest": (), "named": {"b": second}}
    )


@given(_ARGUMENTS, _ARGUMENTS)
def test_described_arguments_differ_exactly_when_the_values_differ(first: Any, second: Any) -> None:
    """Two calls' metadata name an argument as changed exactly when its key encoding differs,
    whether it is recorded by digest or (a number or short string) by its repr."""

    def f(x):  # type: ignore[no-untyped-def]
        return x

    maker = KeyMaker(f)
    one, two = (_described(maker, (v,), {}, NO_EXTRA) for v in (first, second))
    changed = [name for name, _, _ in changed_arguments(one, two)]
    assert changed == ([] if value_digest(first) == value_digest(second) else ["x"])


def test_an_int_too_long_to_print_is_summarized_not_an_error(cache_dir: Path) -> None:
    """An argument Python refuses to print (an int over sys.get_int_max_str_digits digits)
    is stored with a summary and a digest, and tells calls apart by its digest."""
    huge = 10**5000

    @memo.decorate(cache_path=cache_dir)
    def f(x):  # type: ignore[no-untyped-def]
        return 1

    assert [f(huge), f([huge]), f(huge + 1)] == [1, 1, 1]
    assert f.cache_info().stores == 3
    arguments = [entry["arguments"]["x"] for entry in f.entries()]
    assert sorted(arguments) == ["<builtins.int>", "<builtins.int>", "<builtins.list>"]
    assert len({entry["argument_digests"]["x"] for entry in f.entries()}) == 3


_NUMBERS_AND_STRINGS = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.text(min_size=55, max_size=70),
    st.booleans(),
    st.none(),
)


def _short_defaults(a, b="default", c=2.5, d=7):  # type: ignore[no-untyped-def]
    return a


def _long_default(a, b="default", c=2.5, d="x" * 70):  # type: ignore[no-untyped-def]
    return a  # d's default is too long to show whole: such calls are described generally


@pytest.mark.parametrize("function", [_short_defaults, _long_default])
@given(
    calls=st.lists(st.tuples(_NUMBERS_AND_STRINGS, _NUMBERS_AND_STRINGS), min_size=1, max_size=6)
)
def test_keys_of_numbers_and_strings_are_the_general_keys(
    function: Any, calls: list[tuple[Any, Any]]
) -> None:
    """Calls keyed (and described) through the code written for the first call's kinds get
    the keys and metadata the general path gives, whatever kinds later calls have, with the
    defaults filled in (encoded and shown once) or passed as equal values anew."""
    maker, general = KeyMaker(function), KeyMaker(function)
    general._atoms_tried = True  # never writes an encoder: stream_digest every time
    equal = ("".join(["def", "ault"]), float("2.5"))  # the defaults' values, as new objects
    variants = [
        call for a, b in calls for call in ((a, b), (a,), (a, b, 2.5), (b, *equal), (a, b, a, b))
    ]
    for args in variants:
        key, labels, values = maker.bind(args, {})
        general_key, general_labels, general_values = general.bind(args, {})
        assert key == general_key
        described = maker.describe(labels, values, NO_EXTRA)
        assert described == general.describe(general_labels, general_values, NO_EXTRA)


_MODEL = """
import dataclasses
from typing import NamedTuple

import memo


@dataclasses.dataclass
class Model:
    weight: int

    def predict(self, x):
        return self.weight * x{edit}


class Point(NamedTuple):
    x: int

    def scaled(self):
        return self.x * 2{edit}


@memo.cache(cache_path={cache!r})
def run(model, point):
    return model.predict(2) + point.scaled()


print(run(Model(3), Point(5)), run.cache_info().misses)
"""


def test_editing_a_method_of_an_argument_class_recomputes(tmp_path: Path) -> None:
    """A dataclass or namedtuple argument of the user's own class brings its class's code
    into the key: after its method is edited a new process recomputes; unedited, it hits."""
    import subprocess
    import sys

    module = tmp_path / "models.py"

    def run(edit: str) -> list[str]:
        module.write_text(_MODEL.format(edit=edit, cache=str(tmp_path / "cache")))
        shown = subprocess.run(
            [sys.executable, str(module)], capture_output=True, text=True, check=True
        )
        return shown.stdout.split()

    assert run("") == ["16", "1"]  # computed
    assert run("") == ["16", "0"]  # the same code: a hit
    assert run(" + 1") == ["18", "1"]  # both methods edited: computed again
    assert run(" + 1") == ["18", "0"]
