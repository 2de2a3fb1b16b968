"""``mypyc_attr`` for the classes the opt-in compiled build (mypyc) compiles.

mypyc reads the decorator at compile time (``build_backend/servesim_build.py`` builds with
mypy, which brings mypy-extensions); at run time it is a no-op, so the pure-Python install
does not need mypy-extensions and falls back to the stand-in below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the default install: mypy-extensions is not a dependency

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[_T], _T]:  # type: ignore[misc]
        """No-op stand-in for ``mypy_extensions.mypyc_attr`` (same signature)."""
        return lambda cls: cls


__all__ = ["mypyc_attr"]
