"""Every module in src/servesim is at most 400 lines (docs/STYLE: files under ~400 lines);
a module that grows past it is split along a seam, not listed."""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 400
SRC = Path(__file__).resolve().parents[1] / "src" / "servesim"


def long_files(root: Path, max_lines: int = MAX_LINES) -> list[str]:
    """``relpath N lines`` for every ``.py`` file under ``root`` longer than ``max_lines``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > max_lines:
            out.append(f"{path.relative_to(root).as_posix()} {n} lines")
    return out


def test_the_counter_counts_lines(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("x = 1\n" * 400, encoding="utf-8")
    (tmp_path / "long.py").write_text("x = 1\n" * 401, encoding="utf-8")
    assert long_files(tmp_path) == ["long.py 401 lines"]


def test_no_module_is_over_400_lines() -> None:
    long = long_files(SRC)
    assert not long, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(long)
