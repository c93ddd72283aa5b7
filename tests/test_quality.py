"""The code stays typed and tidy: mypy --strict, ruff check and ruff format, run as tests.

This is also what makes tests/test_typing.py's checks part of every CI run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_mypy_strict() -> None:
    """mypy --strict (configured in pyproject.toml) finds no error."""
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_check_and_format() -> None:
    """ruff finds nothing to fix and nothing to reformat."""
    check = _run("ruff", "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def _imports() -> dict[str, set[str]]:
    """Each module of memo/, and the modules of memo/ it imports (at any depth in its code)."""
    import ast

    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (ROOT / "memo").rglob("*.py")
    }
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                if not node.level:
                    target = node.module or ""
                candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
                found[name] |= {c for c in candidates if c in modules and c != name}
            elif isinstance(node, ast.Import):
                found[name] |= {alias.name for alias in node.names if alias.name in modules}
    return found


def test_no_import_cycles_inside_memo() -> None:
    """No module of memo/ imports, through any chain, a module that imports it back (lazy
    imports inside functions count too)."""
    imports = _imports()
    cycles = []
    for start in imports:
        seen, todo = set(), list(imports[start])
        while todo:
            module = todo.pop()
            if module == start and start != "memo":
                cycles.append(start)
                break
            if module not in seen:
                seen.add(module)
                todo.extend(imports[module])
    assert cycles == []


def _longest_chain(imports: dict[str, set[str]]) -> list[str]:
    """The longest chain of imports between modules of memo/ (the front door left out)."""
    chains: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in chains:
            below = [chain(name) for name in imports[module] if name != "memo"]
            chains[module] = [module, *max(below, key=len, default=[])]
        return chains[module]

    return max((chain(name) for name in imports if name != "memo"), key=len)


def test_import_graph_has_at_most_nine_floors() -> None:
    """No chain of imports inside memo/ is longer than nine modules (decorator, memoized
    function, call path, then keys or storage): a deeper one means a concept is split across
    floors, or a module reaches for a helper that belongs lower."""
    longest = _longest_chain(_imports())
    assert len(longest) <= 9, " -> ".join(longest)


def test_no_module_over_600_lines() -> None:
    """Every module of memo/ can be read in one sitting (a smell detector: past ~400 lines a
    module is looked at, and one that holds a single concept whole may grow to 600)."""
    long = {
        str(path.relative_to(ROOT)): count
        for path in (ROOT / "memo").rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 600
    }
    assert long == {}


def test_environment_is_read_in_config_only() -> None:
    """Every MEMO_* variable is read in memo/_config.py: no other module reads os.environ,
    and nothing under memo/_storage imports _config (it is given plain values)."""
    readers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "memo").rglob("*.py")
        if path.name != "_config.py"
        and ("os.environ" in path.read_text() or "getenv" in path.read_text())
    ]
    assert readers == []
    imports = _imports()
    storage = [name for name in imports if name.startswith("memo._storage")]
    assert [name for name in storage if "memo._config" in imports[name]] == []
