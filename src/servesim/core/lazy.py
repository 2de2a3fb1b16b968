"""Lazy package exports (PEP 562): a package names what it re-exports and from which of its
modules, and each module is imported on first use of one of its names.

Why: a process imports one module of a package (``servesim.engine.config`` from the
cluster's config) and Python runs the package's ``__init__`` first; an ``__init__`` that
imported every re-export would load the whole package (the SGLang and TensorRT-LLM profiles,
data parallelism, ...) into every run. Usage, in a package's ``__init__``::

    __getattr__, __dir__ = lazy_exports(__name__, {"Batch": "batch", ...})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` whose name ``N`` is defined
    in ``package.exports[N]``; a resolved name is stored in the package (looked up once)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
