"""CLI commands for the simulate area."""

from __future__ import annotations

import typer

from servesim import __version__


def register(app: typer.Typer) -> None:
    """Add this area's commands to the servesim app."""

    @app.command("version")
    def version() -> None:
        """Print the servesim version."""
        print(__version__)
