"""Commands declared as option tables (servesim/cli/params.py) read as the ``def`` they stand
for: the same options, help, defaults and parsed values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from servesim.cli.params import REQUIRED, Opt, with_options

TABLE = (
    Opt("ctx", typer.Context, None, REQUIRED),
    Opt("name", str, typer.Argument(help="Who."), REQUIRED),
    Opt("count", int, typer.Option("--count", "-n", help="How many.", show_default=True), 2),
    Opt("path", Path | None, typer.Option(help="Where.", rich_help_panel="Files")),
    Opt("loud", bool, typer.Option("--loud/--quiet", help="Shout."), False),
)


def _as_def(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who.")],
    count: Annotated[int, typer.Option("--count", "-n", help="How many.", show_default=True)] = 2,
    path: Annotated[Path | None, typer.Option(help="Where.", rich_help_panel="Files")] = None,
    loud: Annotated[bool, typer.Option("--loud/--quiet", help="Shout.")] = False,
) -> None:
    """Greet someone."""
    print(sorted({"name": name, "count": count, "path": path, "loud": loud}.items()))
    print(type(ctx).__name__)


@with_options(*TABLE)
def _as_table(**params: Any) -> None:
    """Greet someone."""
    ctx = params.pop("ctx")
    print(sorted(params.items()))
    print(type(ctx).__name__)


def _run(func: Any, args: list[str]) -> tuple[int, str]:
    app = typer.Typer(add_completion=False)
    app.command("greet")(func)
    app.command("other")(lambda: None)  # two commands: "greet" stays a subcommand
    result = CliRunner().invoke(app, ["greet", *args], env={"COLUMNS": "100"})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["ada"],
        ["ada", "-n", "5", "--path", "x.yaml", "--loud"],
        ["ada", "--count", "abc"],  # a usage error names the flag the same way
        [],  # the required argument is missing
    ],
)
def test_a_table_command_parses_and_helps_as_the_def(args: list[str]) -> None:
    assert _run(_as_table, args) == _run(_as_def, args)


def test_the_command_receives_every_option_by_name() -> None:
    code, out = _run(_as_table, ["ada", "-n", "5"])
    assert code == 0
    assert out.splitlines() == [
        "[('count', 5), ('loud', False), ('name', 'ada'), ('path', None)]",
        "Context",
    ]


def test_annotations_are_objects_not_strings() -> None:
    # typer evaluates string annotations at every parse (servesim/cli/simulate.py)
    hints = _as_table.__annotations__
    assert list(hints) == ["ctx", "name", "count", "path", "loud", "return"]
    assert hints["ctx"] is typer.Context
    assert not [name for name, hint in hints.items() if isinstance(hint, str)]


def test_an_option_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="options declared twice: count"):
        with_options(TABLE[2], TABLE[2])
