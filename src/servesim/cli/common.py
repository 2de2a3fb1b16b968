"""Helpers shared by the CLI modules: consoles, error formatting, JSON output."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from rich.console import Console

# Piped output (CI logs, files) is not a terminal: rich would assume 80 columns and cut names;
# give tables room instead.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


# Below this width rich's option tables cut long option names and values ("--gpu-memory-
# utilizat…"); click's plain help wraps instead and never truncates.
RICH_HELP_MIN_COLUMNS = 100


def help_markup_mode() -> str | None:
    """``"rich"`` (panelled help) on a terminal of at least ``RICH_HELP_MIN_COLUMNS``, else
    None: click's plain help, which wraps every line instead of truncating."""
    columns = shutil.get_terminal_size(fallback=(80, 24)).columns
    return "rich" if columns >= RICH_HELP_MIN_COLUMNS else None


def format_validation_error(exc: ValidationError) -> Iterator[str]:
    """One line per problem: ``field.path=value: constraint``."""
    for problem in exc.errors():
        path = ".".join(str(p) for p in problem["loc"]) or "<root>"
        value = problem.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        yield f"{path}={shown}: {problem['msg']}"


def print_json(data: Any) -> None:
    """Print ``data`` as indented, key-sorted JSON (deterministic) to stdout."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
