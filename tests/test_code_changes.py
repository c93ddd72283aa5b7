"""Code edits between two processes: a behaviour edit recomputes, a cosmetic edit hits.

Each case is a small package of the user's own (a ``main`` module with the memoized ``run``
and the helpers it reaches) written once per edit. One process calls every package's
``run(2)`` and stores it; the files are edited; a second process calls each again. An edit
that changes what ``run(2)`` returns must be a miss that returns the new value; an edit that
does not (comments, docstrings, annotations, moving code) must be a hit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Edit:
    """One edit of a case's files: ``old`` replaced by ``new`` in ``file``."""

    label: str
    file: str
    old: str
    new: str
    behaviour: bool  # True: run(2) returns another value after it


@dataclass(frozen=True)
class Case:
    """A construct of user code: the package's files (``{pkg}`` is the package's name)."""

    construct: str
    files: dict[str, str]
    edits: tuple[Edit, ...]


def _b(file: str, old: str, new: str, label: str = "behaviour") -> Edit:
    return Edit(label, file, old, new, True)


def _c(file: str, old: str, new: str, label: str = "cosmetic") -> Edit:
    return Edit(label, file, old, new, False)


_RUN = "import memo\n\n\n@memo.cache\ndef run(x):\n"

CASES = [
    Case(
        "helper in the same module",
        {"main.py": "import memo\n\ndef scale(x):\n    return x + 1\n\n" + _RUN.split("\n", 1)[1]
         + "    return scale(x)\n"},
        (
            _b("main.py", "x + 1", "x + 10"),
            _c("main.py", "    return x + 1", "    # why: one more\n    return x + 1", "comment"),
            _c("main.py", "def scale(x):\n", 'def scale(x):\n    """Scaled."""\n', "docstring"),
        ),
    ),
    Case(
        "from-import of a helper",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": "from .helpers import scale\n" + _RUN + "    return scale(x)\n"},
        (
            _b("helpers.py", "x * 2", "x * 3"),
            _c("helpers.py", "def scale", "def other():\n    return 0\n\n\ndef scale", "move"),
        ),
    ),
    Case(
        "a helper module's attribute (from pkg import helpers)",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": "from {pkg} import helpers\n" + _RUN + "    return helpers.scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a submodule's attribute (import pkg.helpers)",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": "import {pkg}.helpers\n" + _RUN + "    return {pkg}.helpers.scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a submodule's attribute two levels down (import pkg.sub.deep)",
        {"sub/__init__.py": "", "sub/deep.py": "def scale(x):\n    return x * 2\n",
         "main.py": "import {pkg}.sub.deep\n" + _RUN + "    return {pkg}.sub.deep.scale(x)\n"},
        (_b("sub/deep.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a helper imported inside the function",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": _RUN + "    from .helpers import scale\n\n    return scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a module imported inside the function",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": _RUN + "    import {pkg}.helpers\n\n    return {pkg}.helpers.scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a helper re-exported by the package's __init__",
        {"__init__.py": "from .helpers import scale\n",
         "helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": "import {pkg}\n" + _RUN + "    return {pkg}.scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a star import",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": "from .helpers import *\n" + _RUN + "    return scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a global constant of a helper's module",
        {"helpers.py": "FACTOR = 2\n\n\ndef scale(x):\n    return x * FACTOR\n",
         "main.py": "from .helpers import scale\n" + _RUN + "    return scale(x)\n"},
        (_b("helpers.py", "FACTOR = 2", "FACTOR = 3"),),
    ),
    Case(
        "a helper's default argument",
        {"helpers.py": "def scale(x, by=2):\n    return x * by\n",
         "main.py": "from .helpers import scale\n" + _RUN + "    return scale(x)\n"},
        (_b("helpers.py", "by=2", "by=3"),),
    ),
    Case(
        "a method, a staticmethod, a classmethod, a property and a class attribute",
        {"helpers.py": textwrap.dedent("""\
            class Model:
                BIAS = 1

                def predict(self, x):
                    return x * 2

                @staticmethod
                def offset():
                    return 10

                @classmethod
                def make(cls):
                    return cls()

                @property
                def width(self):
                    return 100
            """),
         "main.py": "from .helpers import Model\n" + _RUN
         + "    m = Model.make()\n    return m.predict(x) + m.offset() + m.width + m.BIAS\n"},
        (
            _b("helpers.py", "x * 2", "x * 3", "method"),
            _b("helpers.py", "return 10", "return 20", "staticmethod"),
            _b("helpers.py", "return cls()",
               "made = cls()\n        made.BIAS = 3\n        return made", "classmethod"),
            _b("helpers.py", "return 100", "return 200", "property"),
            _b("helpers.py", "BIAS = 1", "BIAS = 5", "class attribute"),
        ),
    ),
    Case(
        "a method inherited from a base class in another module",
        {"base.py": "class Base:\n    def predict(self, x):\n        return x * 2\n",
         "helpers.py": "from .base import Base\n\n\nclass Model(Base):\n    pass\n",
         "main.py": "from .helpers import Model\n" + _RUN + "    return Model().predict(x)\n"},
        (_b("base.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a method of an instance held in a global",
        {"helpers.py": "class Model:\n    def predict(self, x):\n        return x * 2\n\n\n"
                       "MODEL = Model()\n",
         "main.py": "from .helpers import MODEL\n" + _RUN + "    return MODEL.predict(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "functools.lru_cache and functools.cache",
        {"helpers.py": "import functools\n\n\n@functools.lru_cache(maxsize=None)\n"
                       "def scale(x):\n    return x * 2\n\n\n@functools.cache\n"
                       "def shift(x):\n    return x + 1\n",
         "main.py": "from .helpers import scale, shift\n" + _RUN + "    return shift(scale(x))\n"},
        (
            _b("helpers.py", "x * 2", "x * 3", "lru_cache"),
            _b("helpers.py", "x + 1", "x + 5", "cache"),
        ),
    ),
    Case(
        "functools.cached_property",
        {"helpers.py": "import functools\n\n\nclass Model:\n    @functools.cached_property\n"
                       "    def factor(self):\n        return 2\n",
         "main.py": "from .helpers import Model\n" + _RUN + "    return x * Model().factor\n"},
        (_b("helpers.py", "return 2", "return 3"),),
    ),
    Case(
        "functools.singledispatch",
        {"helpers.py": "import functools\n\n\n@functools.singledispatch\n"
                       "def scale(x):\n    return x\n\n\n@scale.register\n"
                       "def _(x: int):\n    return x * 2\n",
         "main.py": "from .helpers import scale\n" + _RUN + "    return scale(x)\n"},
        (
            _b("helpers.py", "x * 2", "x * 3", "a registered implementation"),
            _c("helpers.py", "def scale(x):\n", 'def scale(x):\n    """Any."""\n', "docstring"),
        ),
    ),
    Case(
        "functools.partial",
        {"helpers.py": "import functools\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
                       "triple = functools.partial(mul, 3)\n",
         "main.py": "from .helpers import triple\n" + _RUN + "    return triple(x)\n"},
        (
            _b("helpers.py", "return a * b", "return a * b + 1", "the wrapped function"),
            _b("helpers.py", "partial(mul, 3)", "partial(mul, 4)", "its arguments"),
        ),
    ),
    Case(
        "a functools.wraps decorator of the user's",
        {"helpers.py": "import functools\n\n\ndef logged(f):\n    @functools.wraps(f)\n"
                       "    def wrapper(*a):\n        return f(*a)\n\n    return wrapper\n\n\n"
                       "@logged\ndef scale(x):\n    return x * 2\n",
         "main.py": "from .helpers import scale\n" + _RUN + "    return scale(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "functions and memoized helpers held in containers",
        {"helpers.py": "import memo\n\n\n@memo.cache\ndef scale(x):\n    return x * 2\n\n\n"
                       "def shift(x):\n    return x + 1\n\n\n"
                       "ROUTES = {{'scale': scale, 'shift': shift}}\nSTEPS = [shift]\n",
         "main.py": "from .helpers import ROUTES, STEPS\n" + _RUN
         + "    return STEPS[0](ROUTES['shift'](ROUTES['scale'](x)))\n"},
        (
            _b("helpers.py", "x * 2", "x * 3", "a memoized helper in a dict"),
            _b("helpers.py", "x + 1", "x + 5", "a function in a dict and a list"),
        ),
    ),
    Case(
        "a lambda held in a global",
        {"helpers.py": "SCALE = lambda x: x * 2  # noqa: E731\n",
         "main.py": "from .helpers import SCALE\n" + _RUN + "    return SCALE(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
    Case(
        "an enum member read through a global, and through its class",
        {"helpers.py": "import enum\n\n\nclass Mode(enum.Enum):\n    FAST = 2\n    SLOW = 7\n\n\n"
                       "MODE = Mode.FAST\n",
         "main.py": "from .helpers import MODE, Mode\n" + _RUN
         + "    return x * MODE.value + Mode.SLOW.value\n"},
        (
            _b("helpers.py", "FAST = 2", "FAST = 3", "the global member's value"),
            _b("helpers.py", "SLOW = 7", "SLOW = 9", "a member read through the class"),
        ),
    ),
    Case(
        "instances with __slots__ and dataclasses held in globals",
        {"helpers.py": "import dataclasses\n\n\nclass Cfg:\n    __slots__ = ('n',)\n\n"
                       "    def __init__(self, n):\n        self.n = n\n\n\n"
                       "@dataclasses.dataclass\nclass Opt:\n    k: int\n\n\n"
                       "CFG = Cfg(2)\nOPT = Opt(1)\n",
         "main.py": "from .helpers import CFG, OPT\n" + _RUN + "    return x * CFG.n + OPT.k\n"},
        (
            _b("helpers.py", "CFG = Cfg(2)", "CFG = Cfg(3)", "a slots instance"),
            _b("helpers.py", "OPT = Opt(1)", "OPT = Opt(4)", "a dataclass instance"),
        ),
    ),
    Case(
        "a closure over a __slots__ instance",
        {"helpers.py": "class Cfg:\n    __slots__ = ('n',)\n\n"
                       "    def __init__(self, n):\n        self.n = n\n\n\n"
                       "def make(cfg):\n    def scale(x):\n        return x * cfg.n\n\n"
                       "    return scale\n\n\nscale = make(Cfg(2))\n",
         "main.py": "from .helpers import scale\n" + _RUN + "    return scale(x)\n"},
        (_b("helpers.py", "make(Cfg(2))", "make(Cfg(3))"),),
    ),
    Case(
        "nested functions, comprehensions and generators",
        {"helpers.py": "def scale(x):\n    return x * 2\n\n\ndef counts(n):\n"
                       "    yield from range(n)\n",
         "main.py": "from .helpers import counts, scale\n" + _RUN
         + "    def inner(y: int) -> int:\n        return scale(y)\n\n"
         "    return inner(x) + sum([scale(v) for v in counts(x)])\n"},
        (
            _b("helpers.py", "x * 2", "x * 3", "a helper called from a nested function"),
            _b("helpers.py", "range(n)", "range(n + 1)", "a generator helper"),
            _c("main.py", "def inner(y: int) -> int:", "def inner(y: float) -> float:",
               "a nested function's annotations"),
            _c("main.py", "def run(x):", "def run(x: int) -> int:", "the function's annotations"),
        ),
    ),
    Case(
        "nested function annotations under from __future__ import annotations",
        {"main.py": "from __future__ import annotations\n\n" + _RUN
         + "    def inner(y: int) -> int:\n        return y + 1\n\n    return inner(x)\n"},
        (
            _c("main.py", "(y: int) -> int", "(y: list[int]) -> float", "annotations"),
            _b("main.py", "y + 1", "y + 2", "the nested body"),
        ),
    ),
    Case(
        "a memoized method (ignore=['self']) reaching self.helper()",
        {"main.py": "import memo\n\n\nclass Model:\n    def helper(self, x):\n"
                    "        return x * 2\n\n    @memo.cache(ignore=['self'])\n"
                    "    def predict(self, x):\n        return self.helper(x)\n\n\n"
                    "def run(x):\n    return Model().predict(x)\n\n\nCOUNTED = Model.predict\n"},
        (_b("main.py", "x * 2", "x * 3"),),
    ),
    Case(
        "a function given as a default value",
        {"helpers.py": "def scale(x):\n    return x * 2\n",
         "main.py": "from .helpers import scale\n" + _RUN.replace("(x)", "(x, fn=scale)")
         + "    return fn(x)\n"},
        (_b("helpers.py", "x * 2", "x * 3"),),
    ),
]  # fmt: skip


_RUNNER = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
out = {}
for name in sys.argv[2:]:
    module = importlib.import_module(name + ".main")
    value = module.run(2)
    counted = getattr(module, "COUNTED", module.run)  # the memoized function, if run is not
    out[name] = {"value": value, "misses": counted.cache_info().misses}
print(json.dumps(out))
"""

_PACKAGES = [
    (f"case{c}_{e}", case, edit)
    for c, case in enumerate(CASES)
    for e, edit in enumerate(case.edits)
]


def _write(root: Path, package: str, files: dict[str, str]) -> None:
    directory = root / package
    for name, source in {"__init__.py": "", **files}.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source.replace("{pkg}", package).replace("{{", "{").replace("}}", "}"))


def _run_all(root: Path, cache: Path, disabled: bool = False) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "MEMO_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    if disabled:
        env["MEMO_DISABLE"] = "1"  # what the code computes now, with no cache
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(root), *(name for name, _, _ in _PACKAGES)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ...]]:
    """For each package, ``run(2)``: before the edit, after it, again in a fresh process, and
    what the edited code computes with the cache disabled."""
    root = tmp_path_factory.mktemp("user-code")
    cache = tmp_path_factory.mktemp("cache")
    for name, case, _ in _PACKAGES:
        _write(root, name, case.files)
    before = _run_all(root, cache)
    for name, case, edit in _PACKAGES:
        source = case.files[edit.file]
        assert edit.old in source, f"{case.construct}: {edit.old!r} not in {edit.file}"
        _write(root, name, {**case.files, edit.file: source.replace(edit.old, edit.new, 1)})
    after = _run_all(root, cache)
    again = _run_all(root, cache)
    truth = _run_all(root, cache, disabled=True)
    return {
        name: (before[name], after[name], again[name], truth[name]["value"])
        for name, _, _ in _PACKAGES
    }


@pytest.mark.parametrize(
    ("package", "case", "edit"),
    _PACKAGES,
    ids=[f"{case.construct}: {edit.label}" for _, case, edit in _PACKAGES],
)
def test_an_edit_between_processes(
    outcomes: dict[str, tuple[Any, ...]], package: str, case: Case, edit: Edit
) -> None:
    """A behaviour edit recomputes and returns the new value; a cosmetic edit hits."""
    before, after, again, truth = outcomes[package]
    assert before["misses"] == 1
    assert (truth != before["value"]) == edit.behaviour, "the template's edit is mislabelled"
    assert after["value"] == truth, f"a stale value: {case.construct} ({edit.label}) not seen"
    assert after["misses"] == int(edit.behaviour), f"{case.construct} ({edit.label}) recomputed"
    assert again == {"value": truth, "misses": 0}, "the edited code's entry hits"


# --- edits in one process --------------------------------------------------------------------

_HELPERS = "FACTOR = 2\n\n\ndef scale(x):\n    return x * FACTOR\n"


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any) -> Any:
    """A fresh user package ``name`` on sys.path: write its files, import its modules."""
    import importlib

    name = "inproc_" + re.sub(r"\W", "_", request.node.name)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    class Package:
        def write(self, files: dict[str, str]) -> None:
            _write(tmp_path, name, files)
            importlib.invalidate_caches()

        def load(self, module: str) -> Any:
            return importlib.import_module(f"{name}.{module}")

    yield Package()
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


@pytest.mark.parametrize(
    "main",
    [
        "import {pkg}.helpers\n" + _RUN + "    return {pkg}.helpers.scale(x)\n",
        "from {pkg} import helpers\n" + _RUN + "    return helpers.scale(x)\n",
    ],
    ids=["import pkg.helpers", "from pkg import helpers"],
)
def test_importlib_reload_is_seen_in_the_same_process(package: Any, main: str) -> None:
    """After a helper module is edited and reloaded, the next call recomputes."""
    import importlib

    package.write({"helpers.py": _HELPERS, "main.py": main})
    run = package.load("main").run
    assert run(2) == 4
    package.write({"helpers.py": _HELPERS.replace("x * FACTOR", "x * FACTOR + 1"), "main.py": main})
    importlib.reload(package.load("helpers"))
    assert run(2) == 5
    assert run.cache_info().misses == 2


def test_replaced_code_is_seen_in_the_same_process(package: Any) -> None:
    """A helper whose __code__ is replaced in place (what IPython's autoreload does) is seen
    at the next call, through a from-import too."""
    main = "from .helpers import scale\n" + _RUN + "    return scale(x)\n"
    package.write({"helpers.py": _HELPERS, "main.py": main})
    run = package.load("main").run
    helpers = package.load("helpers")
    assert run(2) == 4

    def edited(x: int) -> int:
        return x * 10

    helpers.scale.__code__ = edited.__code__
    assert run(2) == 20
    assert run.cache_info().misses == 2
    assert run(2) == 20
    assert run.cache_info().hits == 1


def test_a_function_argument_is_watched_like_the_function(package: Any) -> None:
    """apply(helper, x): rebinding a global the helper reads recomputes in the same process,
    and binding it back hits the first entry."""
    main = "import memo\n\n\n@memo.cache\ndef apply(fn, x):\n    return fn(x)\n"
    package.write({"helpers.py": _HELPERS, "main.py": main})
    apply, helpers = package.load("main").apply, package.load("helpers")
    assert apply(helpers.scale, 2) == 4
    helpers.FACTOR = 3
    assert apply(helpers.scale, 2) == 6
    helpers.FACTOR = 2
    assert apply(helpers.scale, 2) == 4
    assert apply.cache_info().misses == 2
    assert apply.cache_info().hits == 1


def test_a_memoized_helper_in_a_container_is_watched(package: Any) -> None:
    """ROUTES = {"s": scale} with scale memoized: rebinding what scale reads recomputes."""
    helpers = "import memo\n\nFACTOR = 2\n\n\n@memo.cache\ndef scale(x):\n    return x * FACTOR\n"
    helpers += "\n\nROUTES = {{'s': scale}}\n"
    main = "from .helpers import ROUTES\n" + _RUN + "    return ROUTES['s'](x)\n"
    package.write({"helpers.py": helpers, "main.py": main})
    run, module = package.load("main").run, package.load("helpers")
    assert run(2) == 4
    module.FACTOR = 5
    assert run(2) == 10
    assert run.cache_info().misses == 2


def test_an_enum_members_value_edited_through_a_global_in_the_same_process(package: Any) -> None:
    """An enum class replaced by an edited one (a reload) is seen through a global member."""
    import importlib

    helpers = "import enum\n\n\nclass Mode(enum.Enum):\n    FAST = 2\n\n\nMODE = Mode.FAST\n"
    main = "from {pkg} import helpers\n" + _RUN + "    return x * helpers.MODE.value\n"
    package.write({"helpers.py": helpers, "main.py": main})
    run = package.load("main").run
    assert run(2) == 4
    package.write({"helpers.py": helpers.replace("FAST = 2", "FAST = 3"), "main.py": main})
    importlib.reload(package.load("helpers"))
    assert run(2) == 6
