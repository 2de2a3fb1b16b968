"""Fixtures of the perf tests: one shared model instance (its caches are per plan)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servesim.perf.roofline import RooflinePerfModel


@pytest.fixture(scope="session")
def perf() -> RooflinePerfModel:
    """A perf model on the packaged calibration."""
    return RooflinePerfModel()
