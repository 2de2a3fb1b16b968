"""Fixtures of the lab tests: the tiny suite and the test policies' file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny() -> str:
    """Path of the two-scenario test suite."""
    return str(HERE / "tiny.yaml")


@pytest.fixture(scope="session")
def pol() -> str:
    """Prefix of the test policies: ``pol + "Fcfs"`` is ``.../policies.py:Fcfs``."""
    return f"{HERE / 'policies.py'}:"


@pytest.fixture(scope="session")
def busy(tmp_path_factory: pytest.TempPathFactory, tiny: str) -> str:
    """The tiny suite's first scenario at 8 req/s with a small KV cache (24k tokens), where
    requests queue for admission and the queue order matters."""
    suite = yaml.safe_load(Path(tiny).read_text(encoding="utf-8"))
    scenario = suite["scenarios"][0]
    scenario["config"]["workload"]["rate_per_s"] = 8.0
    scenario["config"]["cache"] = {"num_kv_blocks": 1500}
    suite["scenarios"] = [scenario]
    path = tmp_path_factory.mktemp("suites") / "busy.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return str(path)
