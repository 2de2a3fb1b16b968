"""Fixtures of the lab tests: the tiny suite and the test policies' file."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny() -> str:
    """Path of the two-scenario test suite."""
    return str(HERE / "tiny.yaml")


@pytest.fixture(scope="session")
def pol() -> str:
    """Prefix of the test policies: ``pol + "Fcfs"`` is ``.../policies.py:Fcfs``."""
    return f"{HERE / 'policies.py'}:"
