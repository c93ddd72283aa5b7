"""Code fingerprints: sensitive to what code does, blind to comments, docstrings and position."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memo
from memo import hash_code
from memo._keys._modules import module_kind

_counter = itertools.count()


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import source text as a fresh user module (its helpers can be imported by name)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def _load(source: str, **helpers: str) -> Any:
        suffix = next(_counter)
        for name, helper_source in helpers.items():
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(helper_source))
            sys.modules.pop(name, None)
        name = f"user_module_{suffix}"
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return _load


def fp(load: Any, source: str, name: str = "f", **helpers: str) -> str:
    """The fingerprint of function ``name`` defined by ``source``."""
    return memo.hash_code(getattr(load(source, **helpers), name))


BASE = """
def f(x, y=2):
    return x * y + 1
"""


def test_comments_docstrings_blank_lines_and_moves_do_not_matter(load: Any) -> None:
    """Only what the code does counts."""
    variants = [
        BASE,
        '''
        # a comment above
        def f(x, y=2):
            """A new docstring."""
            # a comment inside

            return x * y + 1  # trailing comment
        ''',
        "\n" * 40 + BASE,
        "def g():\n    return 0\n" + BASE,
    ]
    prints = {fp(load, source) for source in variants}
    assert len(prints) == 1


@pytest.mark.parametrize(
    "changed",
    [
        "def f(x, y=2):\n    return x * y + 2\n",  # int constant
        "def f(x, y=2):\n    return x * y + 1.0\n",  # float vs int constant
        "def f(x, y=2):\n    return x * y - 1\n",  # operator
        "def f(x, y=3):\n    return x * y + 1\n",  # default value
        "def f(x, z=2):\n    return x * z + 1\n",  # parameter name
        "def f(x, y=2):\n    return (x * y + 1, 'a')\n",  # str constant
        "def f(x, y=2):\n    return (x * y + 1, b'a')\n",  # bytes constant
        "def f(x, y=2):\n    return x * y + 1j\n",  # complex constant
        "def f(x, y=2):\n    return x * y + 1 if x in {1, 2} else 0\n",  # frozenset constant
        "def f(x, y=2):\n    return (lambda v: v + 1)(x * y)\n",  # nested code
    ],
)
def test_behaviour_changes_change_the_print(load: Any, changed: str) -> None:
    """Constants of every type, operators, defaults and nested code all count."""
    assert fp(load, BASE) != fp(load, changed)


def test_docstring_like_constant_counts(load: Any) -> None:
    """A string that is used (not a docstring) is part of the fingerprint."""
    a = fp(load, "def f():\n    x = 'one'\n    return x\n")
    b = fp(load, "def f():\n    x = 'two'\n    return x\n")
    assert a != b


def test_nested_function_constants_count(load: Any) -> None:
    """A constant inside an inner function changes the outer function's print."""
    a = fp(load, "def f():\n    def g():\n        return 1\n    return g()\n")
    b = fp(load, "def f():\n    def g():\n        return 2\n    return g()\n")
    assert a != b


def test_closure_values_count(load: Any) -> None:
    """The value captured in a closure cell is part of the print."""
    source = "def make(k):\n    def f(x):\n        return x * k\n    return f\n"
    module = load(source)
    assert memo.hash_code(module.make(2)) != memo.hash_code(module.make(3))
    assert memo.hash_code(module.make(2)) == memo.hash_code(module.make(2))


def test_global_constant_values_count(load: Any) -> None:
    """A module-level constant the code reads is part of the print."""
    a = fp(load, "SCALE = 2\ndef f(x):\n    return x * SCALE\n")
    b = fp(load, "SCALE = 3\ndef f(x):\n    return x * SCALE\n")
    assert a != b


def test_helper_in_same_module(load: Any) -> None:
    """Editing a helper the function calls changes the function's print."""
    a = fp(load, "def f(x):\n    return helper(x)\ndef helper(x):\n    return x + 1\n")
    b = fp(load, "def f(x):\n    return helper(x)\ndef helper(x):\n    return x + 2\n")
    c = fp(load, "def f(x):\n    return helper(x)\n\n\ndef helper(x):\n    return x + 1  # same\n")
    assert a != b
    assert a == c


def test_helper_in_other_user_module(load: Any) -> None:
    """Helpers imported from the user's other modules count, by name or via the module."""
    by_name = "from helpers_a import scale\ndef f(x):\n    return scale(x)\n"
    via_module = "import helpers_b\ndef f(x):\n    return helpers_b.scale(x)\n"
    one = "def scale(x):\n    return 2 * x\n"
    two = "def scale(x):\n    return 3 * x\n"
    assert fp(load, by_name, helpers_a=one) != fp(load, by_name, helpers_a=two)
    assert fp(load, via_module, helpers_b=one) != fp(load, via_module, helpers_b=two)


def test_helper_class_methods_count(load: Any) -> None:
    """A user class used by the function is fingerprinted through its methods."""
    template = (
        "class Model:\n    def predict(self, x):\n        return x + {n}\n"
        "def f(x):\n    return Model().predict(x)\n"
    )
    assert fp(load, template.format(n=1)) != fp(load, template.format(n=2))


def test_recursion_is_guarded(load: Any) -> None:
    """Self- and mutually recursive helpers terminate and give stable prints."""
    source = (
        "def f(n):\n    return 0 if n <= 0 else g(n - 1)\n"
        "def g(n):\n    return 1 if n <= 0 else f(n - 1)\n"
    )
    assert fp(load, source) == fp(load, source)
    changed = source.replace("return 1 if", "return 2 if")
    assert fp(load, source) != fp(load, changed)


def test_library_code_contributes_name_and_version(load: Any) -> None:
    """Standard-library and installed-package calls do not recurse into their source."""
    source = "import json, numpy\ndef f(x):\n    return json.dumps(numpy.asarray(x).tolist())\n"
    assert fp(load, source) == fp(load, source)
    assert module_kind("json") == "stdlib"
    assert module_kind("numpy") == "package"
    assert module_kind("memo") == "package"


def test_memoized_helper_is_seen_through(load: Any, tmp_path: Path) -> None:
    """A memoized helper counts by the code it wraps."""
    template = (
        "import memo\n@memo.cache(cache_path={path!r})\ndef helper(x):\n    return x + {n}\n"
        "def f(x):\n    return helper(x)\n"
    )
    a = fp(load, template.format(path=str(tmp_path / "c"), n=1))
    b = fp(load, template.format(path=str(tmp_path / "c"), n=2))
    assert a != b


def test_same_print_in_another_process(tmp_path: Path) -> None:
    """A fingerprint is the same in a fresh interpreter (no ids, no hash seeds)."""
    (tmp_path / "stable_mod.py").write_text(
        "CONST = {'b', 'a', 'c'}\ndef helper(x):\n    return sorted(CONST), x\n"
        "def f(x):\n    return helper(x)\n"
    )
    script = "import memo, stable_mod; print(memo.hash_code(stable_mod.f))"
    prints = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path), "PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(prints) == 1


def test_print_survives_cloudpickle(tmp_path: Path) -> None:
    """A script's function sent to another process by value (as dask does) keeps its print."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import cloudpickle, memo

            def uses_builtins(values):
                return float(len(values)) + max(values, default=0.0)

            clone = cloudpickle.loads(cloudpickle.dumps(uses_builtins))
            assert clone is not uses_builtins
            print(memo.hash_code(uses_builtins) == memo.hash_code(clone))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"


class _Scaler:
    """A plain class of the user's own: memo cannot encode its instances."""

    def __init__(self, factor: float, inner: object = None) -> None:
        self.factor = factor
        self.inner = inner


def _closure_over(scaler: _Scaler) -> Callable[[float], float]:
    def scaled(x: float) -> float:
        return x * scaler.factor

    return scaled


def test_closures_over_own_objects_differ_by_their_attributes() -> None:
    """Closures over instances of a user class count by the instances' attribute values."""
    two, three = _closure_over(_Scaler(2)), _closure_over(_Scaler(3))
    assert hash_code(two) != hash_code(three)
    assert hash_code(two) == hash_code(_closure_over(_Scaler(2)))
    nested = [_closure_over(_Scaler(1, _Scaler(n))) for n in (4, 5)]
    assert hash_code(nested[0]) != hash_code(nested[1])


def test_cyclic_own_objects_are_fingerprinted() -> None:
    """An object graph with a cycle still gets a stable fingerprint."""
    first, second = _Scaler(1), _Scaler(1)
    first.inner, second.inner = first, second
    assert hash_code(_closure_over(first)) == hash_code(_closure_over(second))


def test_library_objects_count_by_type_only() -> None:
    """A standard-library object's run-time state (a logger's level cache) leaves it alone."""
    log = logging.getLogger("memo-tests-fingerprint")

    def make() -> Callable[[int], int]:
        def logged(x: int) -> int:
            log.debug("x=%s", x)
            return x

        return logged

    before = hash_code(make())
    log.setLevel(logging.DEBUG)
    log.isEnabledFor(logging.INFO)  # fills the logger's internal cache
    assert hash_code(make()) == before


def test_bound_methods_count_the_object_they_are_bound_to() -> None:
    """Methods bound to instances with different attributes have different prints."""

    class Affine:
        def __init__(self, slope: float) -> None:
            self.slope = slope

        def apply(self, x: float) -> float:
            return self.slope * x

    assert hash_code(Affine(2).apply) != hash_code(Affine(5).apply)
    assert hash_code(Affine(2).apply) == hash_code(Affine(2).apply)


LARGE_GLOBAL: Any = None  # set by the test below: a large array a memoized function reads


def _reads_large_global(i: int) -> float:
    return float(LARGE_GLOBAL[i])


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the values hashed by digest (large buffers) during the test."""
    from memo._keys import _digest

    seen: list[int] = []
    real = _digest.value_digest

    def counting(value: Any) -> str:
        seen.append(id(value))
        return real(value)

    monkeypatch.setattr(_digest, "value_digest", counting)
    return seen


def test_a_large_global_is_hashed_once_by_digest(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, hashed: list[int]
) -> None:
    """A large array global is hashed like an argument (streamed, by digest), once for the
    first call's key and metadata together; a different array gives another key."""
    import numpy as np

    monkeypatch.setitem(globals(), "LARGE_GLOBAL", np.arange(1 << 20, dtype=np.float64))
    first = memo.decorate(_reads_large_global, cache_path=cache_dir)
    assert first(3) == 3.0
    assert hashed == [id(LARGE_GLOBAL)], "hashed once for the key and the metadata"
    key = first.key(3)
    monkeypatch.setitem(globals(), "LARGE_GLOBAL", np.arange(1 << 20, dtype=np.float64) * 2)
    # (A new function object: this process's fingerprint of the first one is kept.)
    again = types.FunctionType(_reads_large_global.__code__, globals(), "_reads_large_global")
    second = memo.decorate(again, cache_path=cache_dir)
    assert second.key(3) != key
    assert second(3) == 6.0


REBOUND: Any = 2  # rebound by the test below, as a notebook re-runs `SCALE = 3`


def _reads_rebound(x: int) -> Any:
    return REBOUND * x


@pytest.mark.parametrize("kind", ["int", "str", "array", "frame"])
def test_a_rebound_global_is_seen_at_the_next_call(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Rebinding a global the function reads changes its key in the same process: the next
    call recomputes; rebinding it back to an equal value hits the first entry."""
    import numpy as np
    import pandas as pd

    first, second = {
        "int": (2, 3),
        "str": ("ab", "cd"),
        "array": (np.arange(3), np.arange(3) + 1),
        "frame": (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 3]})),
    }[kind]
    monkeypatch.setitem(globals(), "REBOUND", first)
    func = memo.decorate(_reads_rebound, cache_path=cache_dir)
    func(2)
    key = func.key(2)
    assert func.is_cached(2)
    monkeypatch.setitem(globals(), "REBOUND", second)
    assert func.key(2) != key
    assert not func.is_cached(2)
    func(2)
    assert func.cache_info().misses == 2
    monkeypatch.setitem(globals(), "REBOUND", first if kind in ("int", "str") else first.copy())
    assert func.key(2) == key  # an equal value: the first entry again
    func(2)
    assert func.cache_info().hits == 1


def test_an_unchanged_large_global_is_not_hashed_again(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, hashed: list[int]
) -> None:
    """When one global is rebound the fingerprint is taken again, but a large global that did
    not change is not hashed again (its digest is known by identity)."""
    import numpy as np

    monkeypatch.setitem(globals(), "LARGE_GLOBAL", np.arange(1 << 20, dtype=np.float64))
    monkeypatch.setitem(globals(), "REBOUND", 2)

    def reads_both(i: int) -> float:
        return float(LARGE_GLOBAL[i]) * float(REBOUND)

    func = memo.decorate(reads_both, cache_path=cache_dir)
    assert func(3) == 6.0
    monkeypatch.setitem(globals(), "REBOUND", 5)
    assert func(3) == 15.0
    assert func.cache_info().misses == 2
    assert hashed == [id(LARGE_GLOBAL)], "the unchanged array is hashed once, not again"
