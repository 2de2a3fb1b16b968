"""servesim: simulate LLM serving deployments and find the best one before paying for GPUs.

The public functions are loaded on first use, so importing a low-level module
(``servesim.core``, ``servesim.specs``) does not pull in the whole simulator::

    import servesim
    result = servesim.simulate({"model": "llama-3.1-8b", "workload": {"rate_per_s": 4}})
    print(result.summary.ttft.p99_s)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

# the opt-in compiled build (mypyc, build_backend/servesim_build.py): SERVESIM_PURE=1 runs the
# .py sources even where compiled; a source checkout compiled in place falls back to them when a
# compiled module is older than its edited source (servesim/_pure.py)
_PACKAGE = Path(__file__).parent
if os.environ.get("SERVESIM_PURE") == "1":
    from servesim import _pure

    _pure.install()
elif "site-packages" not in _PACKAGE.parts and any(_PACKAGE.parent.glob("*__mypyc.*")):
    from servesim import _pure

    _pure.guard_stale(_PACKAGE)

# name -> module that defines it (DESIGN.md: simulate, capacity, plan, validate, perf.explain).
_PUBLIC = {
    "simulate": "servesim.api",
    "capacity": "servesim.api",
    "plan": "servesim.api",
    "SimConfig": "servesim.config",
    "validate_apex": "servesim.validate",
    "evaluate": "servesim.lab",
    "compare": "servesim.lab",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Resolve the public API lazily (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'servesim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
