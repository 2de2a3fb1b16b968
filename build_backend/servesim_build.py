"""servesim's PEP 517 build backend: setuptools, plus a mypyc build of the engine's hot loop.

``pip install .`` compiles the engine's hot loop (``HOT_MODULES``) with mypyc into a platform
wheel wherever a C compiler and Python's headers are present (issue 14: "built at install when
a C compiler is present, with the pure-Python path as fallback"); results are bit-identical to
the pure-Python package (tests/engine/test_compiled_identity.py) and bench/bench_engine.py
takes about half the CPU time (docs/architecture.md). ``SERVESIM_COMPILE=0`` builds the pure
wheel (every hook setuptools' own), ``SERVESIM_COMPILE=1`` asks for the compiled one even
where no compiler was found. Editable builds never compile (a compiled module would shadow
the source being edited). If the compiled build fails (no C compiler, no Python headers, a
type error mypyc refuses) the wheel is built pure, with one printed line saying why, unless
``SERVESIM_COMPILE_STRICT=1`` (CI) makes the failure the build's.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every other hook: setuptools' own)

# the mypy (mypyc) the compiled build was verified with; only fetched when compiling
MYPY_REQUIREMENT = "mypy==2.4.1"

# the modules the profile of bench/bench_engine.py spends its time in (the engine hot loop).
# Not engine/columns.py or engine/records.py: tests replace their functions' __defaults__,
# which a compiled function does not have.
HOT_MODULES = (
    "servesim/core/events.py",
    "servesim/engine/batch.py",
    "servesim/engine/blocks.py",
    "servesim/engine/contracts.py",
    "servesim/engine/features.py",
    "servesim/engine/group.py",
    "servesim/engine/outbox.py",
    "servesim/engine/rows.py",
    "servesim/engine/schedulers/base.py",
    "servesim/engine/schedulers/queues.py",
    "servesim/engine/schedulers/vllm.py",
    "servesim/engine/sequence.py",
    "servesim/engine/skip.py",
    "servesim/engine/state.py",
    "servesim/engine/state_kv.py",
    "servesim/engine/timeline.py",
    "servesim/engine/vengine.py",
    "servesim/engine/view.py",
    "servesim/perf/fast_attention.py",
    "servesim/perf/fastcost.py",
)


def can_compile() -> bool:
    """True where this interpreter's C compiler and ``Python.h`` are present (mypyc needs both)."""
    import shutil
    import sysconfig

    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return bool(compiler) and shutil.which(compiler[0]) is not None and os.path.exists(headers)


def compile_requested() -> bool:
    """Whether to build the compiled wheel: ``SERVESIM_COMPILE`` 1 yes, 0 no, unset or
    ``auto`` where ``can_compile``.

    Raises:
        SystemExit: any other value (one line naming it).
    """
    value = os.environ.get("SERVESIM_COMPILE", "auto").strip().lower() or "auto"
    if value not in ("0", "1", "auto"):
        raise SystemExit(f"servesim: SERVESIM_COMPILE={value!r}: must be 0, 1 or auto")
    return value == "1" or (value == "auto" and can_compile())


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, plus the pinned mypy when compiling."""
    requires = list(_setuptools.get_requires_for_build_wheel(config_settings))
    return [*requires, MYPY_REQUIREMENT] if compile_requested() else requires


def _compiled_backend() -> Any:
    """setuptools' backend whose ``setup()`` call carries the mypyc extensions (defined only
    when compiling: the default build never touches setuptools' private backend class)."""

    class CompiledBackend(_setuptools._BuildMetaBackend):  # type: ignore[misc,name-defined]
        def run_setup(self, setup_script: str = "setup.py") -> None:
            """``setup()`` with the hot modules compiled (the project has no setup.py)."""
            from mypyc.build import mypycify
            from setuptools import setup

            # mypy checks the hot modules and reads, without checking, what they import
            flags = ["--follow-imports=silent", "--ignore-missing-imports"]
            paths = [f"src/{module}" for module in HOT_MODULES]
            extensions = mypycify([*flags, *paths], opt_level="3", target_dir="build/mypyc")
            setup(ext_modules=extensions)

    return CompiledBackend()


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """setuptools' wheel; compiled with mypyc when ``SERVESIM_COMPILE=1`` (pure if that fails,
    unless ``SERVESIM_COMPILE_STRICT=1``: then the failure is the build's)."""
    if not compile_requested():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    argv = list(sys.argv)
    try:
        return _compiled_backend().build_wheel(wheel_directory, config_settings, metadata_directory)
    except (Exception, SystemExit) as exc:  # mypy and setup() report failures by exiting
        sys.argv = argv
        if isinstance(exc, SystemExit):
            why = f"exit status {exc.code}, its errors above"
        else:
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        if os.environ.get("SERVESIM_COMPILE_STRICT") == "1":
            # CI: a hot module that stops type-checking must fail the build, not ship pure
            print(f"servesim: mypyc build failed ({why})", file=sys.stderr)
            raise
        print(f"servesim: mypyc build failed ({why}); building the pure wheel", file=sys.stderr)
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
