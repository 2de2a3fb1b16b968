"""Early-stopped probes: a probe stopped once its p99 target is lost fails exactly when the
full run fails, so capacity searches give the same capacity (stated tolerance: none, exact)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import small_scenario
from servesim.perf import default_perf_model
from servesim.planner.capacity import capacity_search
from servesim.planner.evaluate import PlanTask, make_probe
from servesim.planner.probe import violations_to_fail
from servesim.planner.space import PlanSpec

# Capacity tolerance of early stopping, relative: the outcome of every probe is unchanged.
EARLY_STOP_TOLERANCE = 0.0


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 5000),
    seed=st.integers(0, 2**31),
)
def test_that_many_violations_force_the_p99_over_the_target(n: int, seed: int) -> None:
    k = violations_to_fail(n)
    assert 1 <= k <= n
    rng = np.random.default_rng(seed)
    target = 1.0
    values = np.concatenate([rng.uniform(0, target, n - k), rng.uniform(1.001, 5.0, k)])
    assert np.percentile(rng.permutation(values), 99) > target


PLANS = [
    PlanSpec("h100-sxm", tp=1),
    PlanSpec("h100-sxm", tp=2),
    PlanSpec("a100-80gb", tp=1, replicas=2),
]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.label())
def test_early_stopped_capacity_equals_full_capacity(plan: PlanSpec) -> None:
    scenario = replace(small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05), requests_per_replica=150)
    perf = default_perf_model()
    found = {}
    for early in (True, False):
        task = PlanTask(scenario, plan, start_rate_per_s=4.0, early_stop=early)
        found[early] = capacity_search(make_probe(task, perf), start_rate_per_s=4.0)
    fast, full = found[True], found[False]
    assert fast.rate_per_s == pytest.approx(full.rate_per_s, rel=EARLY_STOP_TOLERANCE, abs=0)
    assert [p.holds for p in fast.probes] == [p.holds for p in full.probes]
    assert [p.rate_per_s for p in fast.probes] == [p.rate_per_s for p in full.probes]
    stopped = [p for p in fast.probes if p.metrics.get("stopped_early")]
    assert stopped, "no probe was stopped early: the test would not show anything"
    assert all(not p.holds for p in stopped)
    assert not any(p.metrics.get("stopped_early") for p in full.probes)
