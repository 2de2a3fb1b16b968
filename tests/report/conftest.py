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


# The result pages of capacity, plan and compare, each written by its command's --report.
CAPACITY_RUN = [
    "capacity", "--num-requests", "60", "--seed", "1", "--slo-ttft-p99", "0.5",
    "--slo-tpot-p99", "0.05",
]  # fmt: skip
PLAN_RUN = [
    "plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:2,a100-80gb:1", "--tp", "1,2",
    "--pp", "1", "--slo-ttft-p99", "1", "--slo-tpot-p99", "0.025",
    "--requests-per-replica", "80", "--inline", "--quiet",
]  # fmt: skip  (a TPOT SLO tight enough that the search prunes dominated plans by bound)
COMPARE_RUN = ["compare", "vllm", "sarathi", "--fast", "--seeds", "1,2"]


@pytest.fixture(scope="session")
def result_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"capacity"|"plan"|"compare": page}``: each command run once with ``--report``."""
    folder = tmp_path_factory.mktemp("pages")
    pages = {}
    for name, argv in (("capacity", CAPACITY_RUN), ("plan", PLAN_RUN), ("compare", COMPARE_RUN)):
        page = folder / f"{name}.html"
        try:
            main([*argv, "--report", str(page)])
        except SystemExit as exc:
            assert not exc.code, (name, exc.code)
        pages[name] = page
    return pages
