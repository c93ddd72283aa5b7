"""Which modules are the user's own (their code is fingerprinted), the standard library's (a
name is enough) or an installed package's (its version stands for its code)."""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig

__all__ = ["module_kind", "package_version", "path_kind"]


@functools.cache
def _library_roots() -> tuple[tuple[str, ...], tuple[str, ...]]:
    paths = sysconfig.get_paths()
    stdlib = {os.path.realpath(paths[name]) for name in ("stdlib", "platstdlib") if name in paths}
    packages = {os.path.realpath(p) for p in site.getsitepackages()}
    packages.add(os.path.realpath(site.getusersitepackages()))
    for name in ("purelib", "platlib"):
        if name in paths:
            packages.add(os.path.realpath(paths[name]))
    return tuple(sorted(stdlib)), tuple(sorted(packages))


@functools.cache
def module_kind(module_name: str) -> str:
    """``"user"``, ``"stdlib"`` or ``"package"``: how code from this module enters fingerprints."""
    top = module_name.partition(".")[0]
    if top == "memo":
        return "package"
    if module_name == "__main__":
        return "user"
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return "stdlib"
    module = sys.modules.get(module_name) or sys.modules.get(top)
    filename = getattr(module, "__file__", None)
    if not filename:
        return "package" if module is not None else "user"
    return path_kind(filename)


def path_kind(filename: str) -> str:
    """``module_kind`` of the module in file ``filename`` (one that need not be imported)."""
    path = os.path.realpath(filename)
    stdlib, packages = _library_roots()
    if "site-packages" in path or "dist-packages" in path:
        return "package"
    if any(path.startswith(root + os.sep) for root in packages):
        return "package"
    if any(path.startswith(root + os.sep) for root in stdlib):
        return "stdlib"
    return "user"


@functools.cache
def package_version(module_name: str) -> str:
    """The installed version of the distribution that provides ``module_name``."""
    import importlib.metadata  # (slow to import, and needed only when a package is met)

    top = module_name.partition(".")[0]
    try:
        return importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        pass
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return f"{dist}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return str(version) if version is not None else "unknown"
