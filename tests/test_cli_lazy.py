"""Lazy start-up: the command table matches the real commands, and ``servesim --help`` loads
none of them."""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from servesim.cli import main
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
        "prefixes = ('servesim', 'scipy', 'rich', 'numpy', 'pydantic', 'typer', 'pyarrow',\n"
        "            'duckdb', 'plotly', 'matplotlib', 'yaml')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefixes))\n"
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
    # the table is printed with rich alone (0.1 CPU-s less than with typer, pydantic, numpy)
    assert not {"numpy", "pydantic", "typer"} & loaded


def test_a_command_loads_only_its_module() -> None:
    loaded = _modules_loaded(["gpus", "--json"])
    assert "servesim.cli.specs" in loaded
    assert not {"servesim.cli.plan", "servesim.cli.lab", "servesim.planner"} & loaded


# The Vidur reference scenario of bench/bench_startup.py, shortened: a preset workload.
_PRESET_RUN = ["simulate", "--model", "llama-3.1-8b", "--gpu", "a100-80gb", "--workload",
               "azure-conv", "--rate", "6.45", "--num-requests", "8", "--seed", "0"]  # fmt: skip


def test_a_preset_simulation_loads_no_optional_module() -> None:
    # scipy (its ndtr: 0.15 CPU-s), the trace readers, sessions, tags and shared prefixes, the
    # planner and rich.progress are for other workloads, flags and commands.
    loaded = _modules_loaded(_PRESET_RUN)
    assert "servesim.engine" in loaded  # it did simulate
    assert not any(m.startswith("scipy") for m in loaded)
    for optional in (
        "servesim.workload.traces",
        "servesim.workload.trace_reader",
        "servesim.workload.sessions",
        "servesim.workload.tags",
        "servesim.workload.shared_prefix",
        "servesim.planner",
        "servesim.lab",
        "servesim.cli.progress",
        "rich.progress",
    ):
        assert optional not in loaded, optional
    # the table writers and chart libraries only --out and other commands need
    assert not {m.split(".")[0] for m in loaded} & {"pyarrow", "duckdb", "plotly", "matplotlib"}
    # the catalogs come from catalog.json (servesim/specs/catalog/derived.py): no YAML parser
    # (~10 ms to import) for a run from flags
    assert "yaml" not in loaded
    # the consoles print no emoji codes: rich's emoji table stays unloaded (cli/common.py)
    assert "rich._emoji_codes" not in loaded


def test_importing_the_cli_package_loads_nothing_heavy() -> None:
    # main() imports them itself, with the cyclic collector off (servesim/cli/__init__.py)
    code = (
        "import sys, servesim.cli\n"
        "print(sorted(m for m in ('numpy', 'pydantic', 'typer', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_main_leaves_the_collector_as_it_found_it() -> None:
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        main(["version"])
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # start-up objects frozen for the command only
    gc.disable()
    try:
        with pytest.raises(SystemExit):
            main(["version"])
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


def test_an_entry_point_call_leaves_its_objects_frozen_for_the_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # main() without argv is the console script: the process ends next, and frozen objects
    # spare its shutdown collection a traversal of every one of them (~0.1 CPU-s)
    monkeypatch.setattr(sys, "argv", ["servesim", "version"])
    try:
        with pytest.raises(SystemExit):
            main()
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_an_entry_point_run_still_removes_its_spill_folder_at_exit(tmp_path: Path) -> None:
    # the folder's weakref.finalize runs through atexit, before the shutdown collection the
    # frozen objects skip: a spill folder held in a reference cycle is removed all the same
    code = (
        "import sys\n"
        "from servesim.cli import main\n"
        "from servesim.engine.spill import SpillDir\n"
        "holder = {'dir': SpillDir()}\n"
        "holder['self'] = holder  # only the cyclic collector could free it\n"
        "holder['dir'].new_file().write_bytes(b'x')\n"
        "sys.argv = ['servesim', 'version']\n"
        "main()\n"
    )
    env = {**os.environ, "SERVESIM_SPILL_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert list(tmp_path.iterdir()) == []


def test_a_json_simulation_loads_no_writer_and_no_table() -> None:
    # without --out/--trace-out the page, its charts and the trace writer stay unloaded
    # (servesim/cli/report.py), and --json draws no rich table (5 + 3 ms)
    loaded = _modules_loaded([*_PRESET_RUN, "--json"])
    assert "servesim.cli.report" in loaded  # the flags were checked
    for writer in (
        "servesim.report.html",
        "servesim.report.figures",
        "servesim.report.pages",
        "servesim.report.trace",
        "servesim.report.outputs",
        "servesim.report.run_data",
        "servesim.cli.simulate_render",
        "rich.table",
    ):
        assert writer not in loaded, writer


def test_the_cli_checks_the_table_formats_the_writers_accept() -> None:
    # servesim/cli/report.py repeats the tuple so that a run without --out need not import
    # the writers; a format added to one side only would be refused or accepted wrongly
    from servesim.cli import report
    from servesim.report import outputs

    assert report.TABLE_FORMATS == outputs.TABLE_FORMATS


def test_simulate_annotations_are_evaluated_once_at_import() -> None:
    # typer evaluates string annotations twice per parse (servesim/cli/simulate.py): the
    # module must not postpone them
    from servesim.cli.simulate import simulate_cmd

    hints = simulate_cmd.__annotations__
    assert len(hints) > 50
    assert not [name for name, hint in hints.items() if isinstance(hint, str)]


@pytest.mark.parametrize("package", ["engine", "cluster", "perf", "specs", "metrics"])
def test_a_package_loads_its_exports_on_first_use(package: str) -> None:
    # importing one module of a package runs the package's __init__ first: it must import
    # none of its modules (servesim/core/lazy.py), and every exported name still resolves
    code = (
        "import sys, importlib\n"
        f"pkg = importlib.import_module('servesim.{package}')\n"
        "print(sorted(m for m in sys.modules if m.startswith(pkg.__name__ + '.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    pkg = importlib.import_module(f"servesim.{package}")
    for name in pkg.__all__:
        value = getattr(pkg, name)
        assert name in dir(pkg)
        if hasattr(value, "__module__") and isinstance(value, type):
            assert getattr(sys.modules[value.__module__], name) is value
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = pkg.nope
