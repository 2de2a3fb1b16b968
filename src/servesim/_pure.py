"""``SERVESIM_PURE=1``: import every servesim module from its ``.py`` source, never from a
compiled extension (mypyc) beside it.

For the identity test (compiled and pure runs must agree bit for bit), for profiling the hot
loop (cProfile cannot see inside compiled functions), and, automatically, in a source checkout
where a compiled module is older than its edited ``.py`` (Python would load the stale build).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# the packages the compiled build has modules in (HOT_MODULES, build_backend/servesim_build.py)
_COMPILED_DIRS = ("core", "engine", "engine/schedulers", "perf")

_SOURCE_ONLY = [(importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)]


class SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Finds ``servesim.*`` submodules among source files only."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """The spec of ``fullname``'s ``.py`` (or package ``__init__.py``), else None."""
        if not fullname.startswith("servesim.") or path is None:
            return None
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, *_SOURCE_ONLY).find_spec(fullname)
            if spec is not None:
                return spec
        return None


def install() -> None:
    """Put the source-only finder first (once)."""
    if not any(isinstance(f, SourceOnlyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceOnlyFinder())


def stale_modules(package: Path) -> list[str]:
    """Compiled modules older than their source (an edit not yet rebuilt), as paths."""
    stale = []
    for folder in _COMPILED_DIRS:
        for ext in (package / folder).glob("*.cpython-*.so"):
            source = ext.with_name(ext.name.split(".", 1)[0] + ".py")
            if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
                stale.append(str(source.relative_to(package.parent)))
    return stale


def guard_stale(package: Path) -> None:
    """In a source checkout (not site-packages), fall back to pure Python when a compiled
    module is stale, with one warning naming it and the rebuild command."""
    if "site-packages" in package.parts:
        return
    stale = stale_modules(package)
    if stale:
        install()
        warnings.warn(
            f"servesim: compiled {stale[0]} is older than its source ({len(stale)} stale); "
            "running pure Python (rebuild it, or delete the stale .so files)",
            stacklevel=3,
        )
