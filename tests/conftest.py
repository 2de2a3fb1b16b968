"""Shared fixtures: the location of ``../shared/data`` (real traces and measurements)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from servesim.core.paths import shared_data_dir

REPO = Path(__file__).resolve().parents[1]

# CI must not flake: there, hypothesis explores a fixed, derandomised set of examples. Locally it
# keeps exploring new ones (and remembers failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; tests using it skip with a reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent (real traces and measurements live there; CI has it)")
    return path
