"""Start-up without the whole program: each command's module is imported only when it runs.

``servesim --help`` (and a bare ``servesim``) lists the commands from the table below, so it
imports none of them; ``servesim simulate ...`` imports ``cli/simulate.py`` and what it needs,
not the planner or the policy lab. The table's one-line summaries are checked against the
commands' own docstrings by a test, so they cannot drift.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by new_app: the root help (print_root_help) needs only rich
    import typer

APP_HELP = "Simulate LLM serving deployments and find the best one before paying for GPUs."

# command -> (module that registers it, its one-line summary), in the order --help lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "models": (
        "specs",
        "List the built-in models, or show one model (or a config.json) in detail.",
    ),
    "gpus": ("specs", "List the built-in GPUs, or show one GPU with the source of every figure."),
    "workload": (
        "workload",
        "Inspect workloads: presets, traces and synthetic arrival/length mixes.",
    ),
    "perf": (
        "perf",
        "Predict one iteration of a batch op by op (or, with --op, one operator's time).",
    ),
    "calibration": (
        "calibrate",
        "Held-out error of the calibration per (GPU, kernel stack, op, dtype, regime).",
    ),
    "calibrate": (
        "calibrate",
        "Fit a calibration from measured kernel tables, or (--from-runs) an engine's host time "
        "from your own vllm bench serve runs; use it with --calibration FILE.",
    ),
    "simulate": ("simulate", "Simulate one deployment on one workload and print its summary."),
    "version": ("simulate", "Print the servesim version."),
    "validate": (
        "validate",
        "Replay measured vLLM runs (apex_vllm_llama70b, blis_vllm_v1_h100, or your own vllm "
        "bench serve result with --vllm-bench); print predicted vs measured.",
    ),
    "capacity": (
        "plan",
        "Highest arrival rate at which one deployment holds the SLO (bracketing + bisection).",
    ),
    "plan": ("plan", "Search deployments for the best one within an SLO."),
    "report": (
        "report",
        "Rebuild the self-contained HTML page of a result folder (opens offline).",
    ),
    "evaluate": ("lab", "Score a policy on a standard suite (each run isolated, with limits)."),
    "compare": ("lab", "Paired A/B of two policies on the same runs, with a confidence interval."),
}

MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def new_app() -> typer.Typer:
    """An empty root app with servesim's settings (commands are added by ``register``)."""
    import typer

    from servesim.cli.common import help_markup_mode

    app = typer.Typer(
        name="servesim",
        help=APP_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=help_markup_mode(),
    )

    @app.callback()
    def _root() -> None:
        """Simulate LLM serving deployments and find the best one before paying for GPUs."""

    return app


def register(app: typer.Typer, modules: Iterable[str]) -> typer.Typer:
    """Import ``servesim.cli.<module>`` for each module and add its commands to ``app``."""
    for name in modules:
        importlib.import_module(f"servesim.cli.{name}").register(app)
    return app


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs (its first word), or None for the root's own help."""
    for word in argv:
        if word in ("--help", "-h"):
            return None
        if not word.startswith("-"):
            return word
    return None


def app_for(argv: Sequence[str]) -> typer.Typer | None:
    """The app that runs ``argv`` with only its command's module loaded; None when ``argv``
    asks for the root help (``print_root_help``). An unknown command loads them all, so the
    usage error lists every command."""
    name = command_of(argv)
    if name is None:
        return None
    entry = COMMANDS.get(name)
    modules = MODULES if entry is None else (entry[0],)
    return register(new_app(), modules)


def print_root_help() -> None:
    """``servesim --help`` from the table: usage, the app's line and each command's line."""
    from rich.table import Table

    from servesim.cli.common import console

    console.print("\n Usage: servesim [OPTIONS] COMMAND [ARGS]...\n", highlight=False)
    console.print(f" {APP_HELP}\n", highlight=False)
    table = Table(box=None, show_header=False, padding=(0, 2), pad_edge=True)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row("--help", "Show this message and exit.")
    console.print(" Options:", highlight=False)
    console.print(table)
    commands = Table(box=None, show_header=False, padding=(0, 2), pad_edge=True)
    commands.add_column(style="bold cyan", no_wrap=True)
    commands.add_column()
    for name, (_, summary) in COMMANDS.items():
        commands.add_row(name, summary)
    console.print(" Commands:", highlight=False)
    console.print(commands)
    console.print("\n Run 'servesim COMMAND --help' for a command's options.\n", highlight=False)
