"""Shared fixtures: one small run written with ``simulate --out`` (and a trace)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.cli import main

SMALL_RUN = ["simulate", "--num-requests", "40", "--rate", "8", "--seed", "3", "--replicas", "2"]


def run_cli(argv: list[str]) -> int:
    """``servesim ARGV`` in-process; its exit code."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``simulate --out`` folder of a 40-request run, with ``--trace-out trace.json``."""
    folder = tmp_path_factory.mktemp("run") / "out"
    argv = [*SMALL_RUN, "--out", str(folder), "--trace-out", str(folder / "trace.json")]
    try:
        main(argv)
    except SystemExit as exc:  # typer exits 0 after a command
        assert not exc.code, exc.code
    return folder
