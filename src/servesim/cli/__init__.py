"""The ``servesim`` command line: thin wrappers that parse, call the Python API and render.

Each area registers its commands from its own module (``cli/specs.py``, ``cli/workload.py``,
...); ``main`` imports only the module of the command it runs (``cli/lazy.py``), so start-up
does not pay for the planner, the policy lab or the simulator to print ``--help``. ``app`` is
the whole command line, built on first use (tests, embedding). ``main`` turns every user error
into one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, NoReturn


def __getattr__(name: str) -> Any:
    """``servesim.cli.app``: every command registered (built once, on first access)."""
    if name == "app":
        from servesim.cli import lazy

        app = lazy.register(lazy.new_app(), lazy.MODULES)
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script (and of ``python -m servesim.cli``).

    Called without ``argv`` it is the process's entry point: the process ends when it returns,
    and the objects it made stay frozen for the interpreter's shutdown (below). A program that
    goes on after it passes ``argv``, and gets the collector back as it was.

    Every refusal is one line on stderr and exit code 2, never a traceback: usage errors
    (an unknown flag, ``--rate abc``), ``ServesimError`` (multi-line messages joined), a
    pydantic ``ValidationError`` (all its problems on one line), an ``OSError`` of a file the
    user named, and an exception raised inside a user plug-in (file, class, line).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # Start-up (numpy, pydantic, typer, the command's modules) allocates only long-lived
    # objects: hundreds of thousands of functions, classes and pydantic schemas, no garbage.
    # The cyclic collector would traverse them all again at each full collection while they
    # pile up (0.06-0.08 of the 0.7 CPU-s of bench/bench_startup.py's Vidur scenario), so it
    # is off until the command's modules are loaded; then they are frozen (never traversed
    # again) and it runs as usual for the command itself. Results never depend on it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        code = _run(args, gc_was_enabled)
    finally:
        if argv is None:
            # The process ends next, and its shutdown collects cyclic garbage across every
            # object still alive (0.09-0.15 of the ~0.7 CPU-s of bench/bench_startup.py's Vidur
            # scenario). Frozen, they are not traversed; what needs cleaning up at exit does it
            # through atexit (spill folders, pools, logging), which runs before that collection.
            gc.freeze()
        else:
            gc.unfreeze()  # a caller that goes on (tests) gets its objects collectable again
        if gc_was_enabled:
            gc.enable()
    sys.exit(code if isinstance(code, int) else 0)


def _run(args: list[str], gc_was_enabled: bool) -> Any:
    """Run one command (``main`` turns what it returns into the exit code)."""
    # Imported here, with the collector off (see ``main``): importing servesim.cli stays free.
    from servesim.cli import lazy

    try:
        app = lazy.app_for(args)
        if app is None:
            lazy.print_root_help()
            return 0 if args else 2  # a bare ``servesim`` is a usage error, as before
        gc.freeze()
        if gc_was_enabled:
            gc.enable()
        return app(args=args, prog_name="servesim", standalone_mode=False)
    except Exception as exc:
        refusal = _refusal(exc)
        if refusal is None:
            raise  # a servesim bug: the traceback is what its report needs
        _fail(*refusal)


def _refusal(exc: Exception) -> tuple[str, int] | None:
    """The one line and exit code a user error ends with; None for a servesim bug.

    The error types are imported here, on the way out: ``servesim --help`` needs neither
    pydantic nor numpy (``servesim.core`` imports it).
    """
    from pydantic import ValidationError
    from typer import Abort
    from typer.exceptions import TyperException

    from servesim.cli.common import format_validation_error, one_line, os_error_line, usage_line
    from servesim.core.errors import ServesimError
    from servesim.core.registry import plugin_failure

    if isinstance(exc, TyperException):  # click's usage errors (typer's vendored click)
        return usage_line(exc), int(getattr(exc, "exit_code", 2)) or 2
    if isinstance(exc, Abort):
        return "aborted", 1
    if isinstance(exc, ServesimError):
        return one_line(str(exc)), 2
    if isinstance(exc, ValidationError):
        return "; ".join(format_validation_error(exc)), 2
    if isinstance(exc, OSError):
        return os_error_line(exc), 2
    line = plugin_failure(exc)
    return None if line is None else (line, 2)


def _fail(line: str, code: int = 2) -> NoReturn:
    from servesim.cli.common import err_console

    err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
