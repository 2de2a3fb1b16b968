"""The ``servesim`` command line: thin wrappers that parse, call the Python API and render.

Each area registers its commands from its own module (``cli/specs.py``, ``cli/workload.py``,
...). ``main`` turns every user error into one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from servesim.cli import calibrate as calibrate_cmds
from servesim.cli import lab as lab_cmds
from servesim.cli import perf as perf_cmds
from servesim.cli import plan as plan_cmds
from servesim.cli import report as report_cmds
from servesim.cli import simulate as simulate_cmds
from servesim.cli import specs as specs_cmds
from servesim.cli import validate as validate_cmds
from servesim.cli import workload as workload_cmds
from servesim.cli.common import err_console, format_validation_error, help_markup_mode
from servesim.core.errors import ServesimError

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

    Typer/click handle usage errors themselves (exit 2); errors raised by the model for bad
    input are caught here and printed as one line each, also with exit code 2.
    """
    try:
        app(args=argv, prog_name="servesim")
    except ServesimError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except ValidationError as exc:
        for line in format_validation_error(exc):
            err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
