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
