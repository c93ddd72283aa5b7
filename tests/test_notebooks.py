"""Notebooks for real: memoized functions defined in cells, executed by ipykernel kernels.

Every memoized function in these notebooks appends a line to a log file whenever its body runs,
so the log counts executions across kernels: a new kernel is a restart, and a cache that
survives it shows up as no new lines. Results come back as JSON printed by the last cell.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import memo

# Kernel startup dominates; a stuck kernel must fail the test, not hang the suite.
pytestmark = pytest.mark.timeout(240)

KERNEL = "memo-tests-python"
REPO = Path(memo.__file__).resolve().parent.parent
# nbformat ships py.typed but leaves its notebook builders unannotated.
V4: Any = nbformat.v4

SETUP = """\
import json
import os

import memo


def record(name, x):
    with open(os.environ["MEMO_NOTEBOOK_LOG"], "a") as log:
        log.write(f"{name} {x}\\n")
"""

SCALE = """\
def scale(x):
    return 3 * x
"""

AFFINE = """\
@memo.cache
def affine(x):
    record("affine", x)
    return scale(x) + 1
"""

SQUARE = """\
@memo.cache
def square(x):
    record("square", x)
    return x * x
"""

LABEL = """\
@memo.cache
def label(x):
    record("label", x)
    return f"<{x}>"
"""

CALLS = """\
print(json.dumps({
    "affine": [affine(x) for x in range(3)],
    "square": [square(x) for x in range(4)],
    "label": [label(x) for x in range(2)],
    "cell_files": sorted({f.__wrapped__.__code__.co_filename for f in (affine, square, label)}),
}))
"""

# Calls per function in CALLS: what a first run computes and an edit of one function repeats.
COUNTS = {"affine": 3, "square": 4, "label": 2}


class Kernels:
    """Runs notebooks, each in a new kernel, against one cache directory and one log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "executions.log"
        self.cache = root / "cache"
        self.work = root / "work"
        self.work.mkdir()
        self._read = 0

    def run(self, *cells: str) -> list[str]:
        """Execute a notebook of these code cells in a new kernel; each cell's printed text."""
        notebook = V4.new_notebook(
            cells=[V4.new_code_cell(source) for source in cells],
            metadata={"kernelspec": {"name": KERNEL, "display_name": KERNEL}},
        )
        env = {
            **os.environ,
            "MEMO_CACHE_DIR": str(self.cache),
            "MEMO_NOTEBOOK_LOG": str(self.log),
            # The memo under test, even when it is not installed in the interpreter.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "IPYTHONDIR": str(self.root / "ipython"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        client = NotebookClient(
            notebook,
            kernel_name=KERNEL,
            timeout=60,
            startup_timeout=60,
            resources={"metadata": {"path": str(self.work)}},
        )
        client.execute(env=env)
        return [_stdout(cell) for cell in notebook.cells]

    def results(self, *cells: str) -> dict[str, Any]:
        """Run the notebook and decode the JSON its last cell printed."""
        decoded: dict[str, Any] = json.loads(self.run(*cells)[-1])
        return decoded

    def executions(self) -> Counter[str]:
        """How many times each function's body ran since the previous look at the log."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        fresh, self._read = lines[self._read :], len(lines)
        return Counter(line.split()[0] for line in fresh)


def _stdout(cell: Any) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kernels:
    """Notebook runs in kernels of this very interpreter, with a private cache and log."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    # A kernel name found nowhere else, so no installed kernelspec (another interpreter,
    # another environment) can be picked instead.
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return Kernels(tmp_path)


NOTEBOOK = (SETUP, SCALE, AFFINE, SQUARE, LABEL, CALLS)


def test_results_survive_a_kernel_restart(kernels: Kernels) -> None:
    """A second kernel running the same notebook computes nothing and gets the same results."""
    first = kernels.results(*NOTEBOOK)
    assert kernels.executions() == COUNTS
    assert first["affine"] == [1, 4, 7]
    assert first["square"] == [0, 1, 4, 9]
    assert first["label"] == ["<0>", "<1>"]

    second = kernels.results(*NOTEBOOK)
    assert kernels.executions() == {}
    # Keys that include the cell's file name miss here (joblib's known notebook failure):
    # ipykernel names the file after the kernel's process, so the two runs' names differ.
    first_files, second_files = first.pop("cell_files"), second.pop("cell_files")
    assert set(first_files).isdisjoint(second_files)
    assert second == first


def test_editing_a_cell_recomputes_exactly_its_functions(kernels: Kernels) -> None:
    """An edited function, or a helper it calls, recomputes its calls only; the rest hit."""
    kernels.results(*NOTEBOOK)
    assert kernels.executions() == COUNTS

    edited_helper = SCALE.replace("3 * x", "5 * x")
    results = kernels.results(SETUP, edited_helper, AFFINE, SQUARE, LABEL, CALLS)
    assert kernels.executions() == {"affine": COUNTS["affine"]}
    assert results["affine"] == [1, 6, 11]

    edited_square = SQUARE.replace("x * x", "x * x * x")
    results = kernels.results(SETUP, SCALE, AFFINE, edited_square, LABEL, CALLS)
    assert kernels.executions() == {"square": COUNTS["square"]}
    assert results["square"] == [0, 1, 8, 27]
    assert results["affine"] == [1, 4, 7]

    # Comments, blank lines and a docstring change the cell's text (and so its file name in
    # the kernel) but not what the function does: nothing recomputes.
    cosmetic = '# squares\n\n@memo.cache\ndef square(x):\n    """Square."""\n' + (
        '    record("square", x)  # counted\n\n    return x * x\n'
    )
    results = kernels.results(SETUP, SCALE, AFFINE, cosmetic, LABEL, CALLS)
    assert kernels.executions() == {}
    assert results["square"] == [0, 1, 4, 9]


NOTEBOOK_A = """\
OFFSET = 1000


@memo.cache
def f(x):
    record("f", x)
    return x + 100


@memo.cache
def g(x):
    record("g", x)
    return x + OFFSET
"""

NOTEBOOK_B = """\
OFFSET = 2000


@memo.cache
def f(x):
    record("f", x)
    return x * 100


@memo.cache
def g(x):
    record("g", x)
    return x + OFFSET
"""

CALL_F_G = 'print(json.dumps({"f": [f(x) for x in range(3)], "g": [g(x) for x in range(3)]}))\n'


def test_same_named_functions_of_two_notebooks_never_share(kernels: Kernels) -> None:
    """Two notebooks' `f` (different bodies) and `g` (different globals) each keep their own."""
    expected_a = {"f": [100, 101, 102], "g": [1000, 1001, 1002]}
    expected_b = {"f": [0, 100, 200], "g": [2000, 2001, 2002]}

    assert kernels.results(SETUP, NOTEBOOK_A, CALL_F_G) == expected_a
    assert kernels.executions() == {"f": 3, "g": 3}
    assert kernels.results(SETUP, NOTEBOOK_B, CALL_F_G) == expected_b
    assert kernels.executions() == {"f": 3, "g": 3}

    # Both notebooks' entries now sit side by side in the one cache; each finds its own.
    assert kernels.results(SETUP, NOTEBOOK_A, CALL_F_G) == expected_a
    assert kernels.executions() == {}
    assert kernels.results(SETUP, NOTEBOOK_B, CALL_F_G) == expected_b
    assert kernels.executions() == {}


def test_redefining_in_the_same_kernel_recomputes(kernels: Kernels) -> None:
    """Within one kernel, a redefined function (or one redefined after its helper) recomputes."""
    define_f = '@memo.cache\ndef f(x):\n    record("f", x)\n    return x + 1\n'
    redefine_f = '@memo.cache\ndef f(x):\n    record("f", x)\n    return x + 2\n'
    helper = "def step(x):\n    return x + 10\n"
    redefined_helper = "def step(x):\n    return x + 20\n"
    define_h = '@memo.cache\ndef h(x):\n    record("h", x)\n    return step(x)\n'
    outputs = kernels.run(
        SETUP,
        define_f,
        "print(f(1), f(1))",
        redefine_f,
        "print(f(1), f(1))",
        define_f,
        "print(f(1))",
        helper,
        define_h,
        "print(h(1), h(1))",
        redefined_helper,
        define_h,
        "print(h(1), h(1))",
    )
    printed = [text.strip() for text in outputs if text.strip()]
    assert printed == ["2 2", "3 3", "2", "11 11", "21 21"]
    # f: once per distinct body, the returning first body hits; h: once per helper.
    assert kernels.executions() == {"f": 2, "h": 2}


def test_re_running_a_global_cell_recomputes_in_the_same_kernel(kernels: Kernels) -> None:
    """Re-running `SCALE = 3` after a first call with `SCALE = 2` is seen by the next call in
    that kernel (no stale hit); `SCALE = 2` again hits the first result."""
    scaled = '@memo.cache\ndef scaled(x):\n    record("scaled", x)\n    return SCALE * x\n'
    outputs = kernels.run(
        SETUP,
        "SCALE = 2",
        scaled,
        "print(scaled(5))",
        "SCALE = 3",
        "print(scaled(5))",
        "SCALE = 2",
        "print(scaled(5))",
    )
    assert [text.strip() for text in outputs if text.strip()] == ["10", "15", "10"]
    assert kernels.executions() == {"scaled": 2}
