"""The command line's code stays readable: no function of servesim/cli over 50 lines (a long
option list is a table, servesim/cli/params.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import servesim.cli

CLI_DIR = Path(servesim.cli.__file__).parent
MAX_LINES = 50


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]


def test_no_cli_function_is_longer_than_50_lines() -> None:
    long = [line for path in sorted(CLI_DIR.glob("*.py")) for line in _long_functions(path)]
    assert long == []


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    path = tmp_path / "long.py"
    path.write_text(f"def f():\n{body}\n", encoding="utf-8")
    assert _long_functions(path) == [f"long.py:1 f ({MAX_LINES + 1} lines)"]
