"""The progress bar that long CLI commands (``simulate --progress``, ``plan``) show on stderr."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from servesim.cli.common import err_console


def progress_bar(label: str, counter: str) -> Progress:
    """A transient bar on stderr: ``label``, the bar, the ``counter`` template, elapsed time.

    Transient and on stderr so that stdout (tables, ``--json``) stays clean when piped.
    """
    columns = (TextColumn(label), BarColumn(), TextColumn(counter), TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True)
