"""The front door: memo/__init__.py re-exports a sorted, documented public API."""

from __future__ import annotations

import inspect

import memo


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and lists exactly the public names memo exports."""
    assert list(memo.__all__) == sorted(memo.__all__)
    public = {name for name in vars(memo) if not name.startswith("_")}
    public -= {name for name, value in vars(memo).items() if inspect.ismodule(value)}
    assert public | {"__version__"} == set(memo.__all__)


def test_public_objects_have_docstrings() -> None:
    """Every public object, and every public method of public classes, is documented."""
    missing = []
    for name in memo.__all__:
        obj = getattr(memo, name)
        if name == "__version__":
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or (
                    not callable(value) and not isinstance(value, property)
                ):
                    continue
                if not inspect.getdoc(value):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_design_api_is_present() -> None:
    """The names the design fixes for this release are importable from memo."""
    for name in ("cache", "decorate", "Encoder", "hash_args", "hash_code", "hash_contents",
                 "Memoized", "MemoError", "EncodingError"):  # fmt: skip
        assert hasattr(memo, name), name
    assert issubclass(memo.EncodingError, TypeError)


def test_one_distribution_name_everywhere() -> None:
    """The distribution's name (not memo: another project has that one on the package index)
    is the one in pyproject.toml, the install hints, the README, the docs and --version."""
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    from memo._storage._urls import HINT

    root = Path(__file__).resolve().parents[1]
    name = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    assert name == "memo-cache"
    assert f'pip install "{name}[remote]"' == HINT
    texts = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for path in texts:
        text = path.read_text()
        assert 'pip install "memo[' not in text, path
        assert "pip install memo " not in text, path
    shown = subprocess.run(
        [sys.executable, "-m", "memo", "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == [name, memo.__version__]


def test_import_memo_leaves_out_what_a_hit_never_needs() -> None:
    """`import memo` pulls in no networking, e-mail, asyncio or executor modules (a feature
    that needs them imports them), nor numpy, pandas or fsspec."""
    import json
    import subprocess
    import sys

    code = "import json, sys; import memo; print(json.dumps(sorted(sys.modules)))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.partition(".")[0] for name in json.loads(shown.stdout)}
    loaded |= {name for name in json.loads(shown.stdout) if name.startswith("urllib.")}
    unwanted = {"urllib.request", "http", "email", "asyncio", "concurrent", "socket", "ssl"}
    unwanted |= {"numpy", "pandas", "pyarrow", "fsspec", "importlib_metadata"}
    assert loaded & unwanted == set()
    assert "importlib.metadata" not in json.loads(shown.stdout)
