"""The APEX reproduction example on the real served trace (skipped without the shared data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from servesim.core.paths import shared_data_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "apex_reproduction.py"
DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(
    DATA is None or not (DATA / "validation/apex_vllm_llama70b/served_traces").is_dir(),
    reason="needs ../shared/data/validation/apex_vllm_llama70b (the APEX served traces)",
)


def _example():
    spec = importlib.util.spec_from_file_location("apex_reproduction", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tp8_at_the_traces_rate_matches_apex_measurement_and_beats_pp8() -> None:
    apex = _example()
    assert DATA is not None
    folder = DATA / apex.FOLDER
    trace = folder / apex.TRACE
    tp8 = apex.run_plan(trace, "TP8", apex.TRACE_RATE)
    measured = apex.measured(folder)["8TP"]
    # Fidelity at the trace's own rate: the simulated mean E2E within 10% of vLLM's.
    assert tp8["e2e_mean_s"] == pytest.approx(measured["e2e_mean_s"], rel=0.10)
    pp8 = apex.run_plan(trace, "PP8", apex.TRACE_RATE)
    assert pp8["e2e_mean_s"] > 2 * tp8["e2e_mean_s"]  # the heuristic PP8 is far slower
