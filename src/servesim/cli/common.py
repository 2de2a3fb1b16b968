"""Helpers shared by the CLI modules: consoles, error formatting, JSON output."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:  # only annotates here: servesim --help does not import pydantic
    from pydantic import ValidationError

# Piped output (CI logs, files) is not a terminal: rich would assume 80 columns and cut names;
# give tables room instead. No emoji codes: a name or message holding ``:fire:`` prints as
# written, and rich's 3,600-entry emoji table is not imported (2 ms of each command).
console = Console(width=None if sys.stdout.isatty() else 160, emoji=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160, emoji=False)


# Below this width rich's option tables cut long option names and values ("--gpu-memory-
# utilizat…"); click's plain help wraps instead and never truncates.
RICH_HELP_MIN_COLUMNS = 100


def help_markup_mode() -> str | None:
    """``"rich"`` (panelled help) on a terminal of at least ``RICH_HELP_MIN_COLUMNS``, else
    None: click's plain help, which wraps every line instead of truncating."""
    columns = shutil.get_terminal_size(fallback=(80, 24)).columns
    return "rich" if columns >= RICH_HELP_MIN_COLUMNS else None


def format_validation_error(exc: ValidationError) -> Iterator[str]:
    """One item per problem: ``field.path=value: constraint`` (no line breaks)."""
    for problem in exc.errors():
        path = ".".join(str(p) for p in problem["loc"]) or "<root>"
        value = problem.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = one_line(str(problem["msg"]).removeprefix("Value error, "))
        yield f"{path}={shown}: {message}"


def one_line(message: str) -> str:
    """A message on one line: ``"a:\n  b\n  c"`` -> ``"a: b; c"`` (the CLI's error form)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return message.strip()
    out = lines[0]
    for line in lines[1:]:
        out += (" " if out.endswith(":") else "; ") + line
    return out


def usage_line(exc: Exception) -> str:
    """A click usage error (``--rate abc``, an unknown flag) as one line, with where help is."""
    format_message = getattr(exc, "format_message", None)
    message = one_line(format_message() if callable(format_message) else str(exc))
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None)
    return f"{message} (see {command} --help)" if command else message


def os_error_line(exc: OSError) -> str:
    """``cannot write /proc/x: No such file or directory`` from an ``OSError``."""
    name = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or type(exc).__name__
    return f"{name}: {reason}" if name else one_line(str(exc) or reason)


def print_json(data: Any) -> None:
    """Print ``data`` as indented, key-sorted JSON (deterministic) to stdout."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
