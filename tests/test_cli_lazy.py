"""Lazy start-up: the command table matches the real commands, and ``servesim --help`` loads
none of them."""

from __future__ import annotations

import subprocess
import sys

import typer

from servesim.cli.lazy import COMMANDS, MODULES, new_app, register


def _full_group() -> typer.core.TyperGroup:
    return typer.main.get_command(register(new_app(), MODULES))  # type: ignore[return-value]


def test_table_lists_every_command_with_its_module_and_summary() -> None:
    group = _full_group()
    names = group.list_commands(None)  # type: ignore[arg-type]
    assert sorted(names) == sorted(COMMANDS)
    for name in names:
        command = group.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None
        module, summary = COMMANDS[name]
        assert command.get_short_help_str(limit=500) == summary, name
        if command.callback is not None:
            # registered by the module the table names (its callback may live next to it)
            owner = typer.main.get_command(register(new_app(), [module]))
            assert name in owner.list_commands(None)  # type: ignore[attr-defined,arg-type]


def _modules_loaded(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from servesim.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('servesim', 'scipy')))\n"
        "print('MODULES:', ' '.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = out.stdout.rsplit("MODULES:", 1)[1]
    return set(line.split())


def test_root_help_loads_no_command_module() -> None:
    loaded = _modules_loaded(["--help"])
    assert not any(m.startswith("scipy") for m in loaded)
    for heavy in ("servesim.api", "servesim.config", "servesim.planner", "servesim.lab"):
        assert heavy not in loaded, heavy
    assert not {f"servesim.cli.{m}" for m in MODULES} & loaded


def test_a_command_loads_only_its_module() -> None:
    loaded = _modules_loaded(["gpus", "--json"])
    assert "servesim.cli.specs" in loaded
    assert not {"servesim.cli.plan", "servesim.cli.lab", "servesim.planner"} & loaded
