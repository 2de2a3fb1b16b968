"""The ``servesim`` command line: thin wrappers that parse, call the Python API and render.

Each area registers its commands from its own module (``cli/specs.py``, ``cli/workload.py``,
...). ``main`` turns every user error into one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from pydantic import ValidationError
from typer import Abort
from typer.exceptions import TyperException

from servesim.cli import calibrate as calibrate_cmds
from servesim.cli import lab as lab_cmds
from servesim.cli import perf as perf_cmds
from servesim.cli import plan as plan_cmds
from servesim.cli import report as report_cmds
from servesim.cli import simulate as simulate_cmds
from servesim.cli import specs as specs_cmds
from servesim.cli import validate as validate_cmds
from servesim.cli import workload as workload_cmds
from servesim.cli.common import (
    err_console,
    format_validation_error,
    help_markup_mode,
    one_line,
    os_error_line,
    usage_line,
)
from servesim.core.errors import ServesimError
from servesim.core.registry import plugin_failure

app = typer.Typer(
    name="servesim",
    help="Simulate LLM serving deployments and find the best one before paying for GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=help_markup_mode(),
)


@app.callback()
def _root() -> None:
    """Simulate LLM serving deployments and find the best one before paying for GPUs."""


for _module in (
    specs_cmds,
    workload_cmds,
    perf_cmds,
    calibrate_cmds,
    simulate_cmds,
    validate_cmds,
    plan_cmds,
    report_cmds,
    lab_cmds,
):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script.

    Every refusal is one line on stderr and exit code 2, never a traceback: usage errors
    (an unknown flag, ``--rate abc``), ``ServesimError`` (multi-line messages joined), a
    pydantic ``ValidationError`` (all its problems on one line), an ``OSError`` of a file the
    user named, and an exception raised inside a user plug-in (file, class, line).
    """
    try:
        code = app(args=argv, prog_name="servesim", standalone_mode=False)
    except TyperException as exc:  # click's usage errors (typer's vendored click)
        _fail(usage_line(exc), int(getattr(exc, "exit_code", 2)) or 2)
    except Abort:
        _fail("aborted", 1)
    except ServesimError as exc:
        _fail(one_line(str(exc)))
    except ValidationError as exc:
        _fail("; ".join(format_validation_error(exc)))
    except OSError as exc:
        _fail(os_error_line(exc))
    except Exception as exc:
        line = plugin_failure(exc)
        if line is None:
            raise  # a servesim bug: the traceback is what its report needs
        _fail(line)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(line: str, code: int = 2) -> NoReturn:
    err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
