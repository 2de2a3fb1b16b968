"""Every function in src/servesim is at most 50 lines (docs/STYLE: functions under ~50 lines).

A function's length is its ``def`` line to its last line, docstring and comments included
(decorators excluded), as ``ast`` reports them. ``ALLOWED`` names the functions still being
split, each with why (empty since issue 14 split the last). A name on it that is no longer
too long fails too, so the list cannot outlive its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 50
SRC = Path(__file__).resolve().parents[1] / "src" / "servesim"

# "path relative to src/servesim:function name" -> why it is still long. Empty since issue 14
# split the last one (run_simulation: its driver owns the loop, build_replicas the set-up);
# a function that grows past the limit is split, not listed.
ALLOWED: dict[str, str] = {}


def long_functions(root: Path, max_lines: int = MAX_LINES) -> dict[str, str]:
    """``{"relpath:name": "relpath:line name N lines"}`` for every function over ``max_lines``."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None  # always set by ast.parse
            lines = node.end_lineno - node.lineno + 1
            if lines > max_lines:
                found[f"{rel}:{node.name}"] = f"{rel}:{node.lineno} {node.name} {lines} lines"
    return found


def test_the_counter_measures_def_to_last_line(tmp_path: Path) -> None:
    # by hand: a def line, a docstring line and 49 body lines is 51 lines; one fewer body line
    # is exactly the limit and passes
    body = "".join(f"    x{i} = {i}\n" for i in range(49))
    (tmp_path / "long.py").write_text(f'def long():\n    """Doc."""\n{body}', encoding="utf-8")
    (tmp_path / "ok.py").write_text(
        f'@staticmethod\ndef ok():\n    """Doc."""\n{"".join(body.splitlines(True)[:48])}',
        encoding="utf-8",
    )
    assert long_functions(tmp_path) == {"long.py:long": "long.py:1 long 51 lines"}


def test_no_new_function_is_over_50_lines() -> None:
    new = [message for key, message in long_functions(SRC).items() if key not in ALLOWED]
    assert not new, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(new)


def test_every_allowed_function_is_still_too_long() -> None:
    found = long_functions(SRC)
    stale = [f"{key} ({owner})" for key, owner in ALLOWED.items() if key not in found]
    assert not stale, (
        f"no longer over {MAX_LINES} lines: remove it from the allow-list in "
        "tests/test_function_size.py: " + ", ".join(stale)
    )
