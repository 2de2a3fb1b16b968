"""Helpers for the hardening tests: run ``servesim`` in-process and capture its exit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from servesim.cli import main


@dataclass(frozen=True)
class Outcome:
    """Exit code and the captured streams of one ``servesim`` invocation."""

    code: int
    out: str
    err: str

    def assert_one_line_error(self, *expected: str) -> None:
        """Exit 2, one ``error:`` line on stderr naming every ``expected`` part, no traceback."""
        assert self.code == 2, (self.code, self.err[-2000:])
        assert "Traceback" not in self.err, self.err
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("error: "), lines[0]
        for part in expected:
            assert part in lines[0], (part, lines[0])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``cli(argv) -> Outcome``: ``servesim.cli.main`` run in this process."""

    def run(argv: list[str]) -> Outcome:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(argv)
        captured = capsys.readouterr()
        code = info.value.code
        return Outcome(code if isinstance(code, int) else 1, captured.out, captured.err)

    return run
