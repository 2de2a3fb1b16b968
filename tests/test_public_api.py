"""The package root exposes the public API lazily (DESIGN.md: servesim.simulate, ...)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import servesim


def test_simulate_capacity_plan_are_reachable_from_the_root() -> None:
    from servesim import api

    assert servesim.simulate is api.simulate
    assert servesim.capacity is api.capacity
    assert servesim.plan is api.plan


def test_root_simulate_runs() -> None:
    result = servesim.simulate({"num_requests": 30, "seed": 1})
    assert result.summary.num_completed == 30


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        _ = servesim.simulat  # type: ignore[attr-defined]


def test_importing_a_low_layer_does_not_load_the_simulator() -> None:
    code = "import sys, servesim.core, servesim.specs; print('servesim.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
