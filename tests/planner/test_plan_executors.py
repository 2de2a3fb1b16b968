"""Branch and bound with "need" probes gives the same results on every executor."""

from __future__ import annotations

import pytest

from conftest import small_scenario
from servesim.planner.evaluate import PlanTask, evaluate_plan
from servesim.planner.executors import InProcessExecutor, LocalPoolExecutor
from servesim.planner.search import SearchOptions, run_search
from servesim.planner.space import PlanSpec, SearchSpace

SPACE = SearchSpace(gpus=(("h100-sxm", 2), ("a100-80gb", 2)), tp_options=(1, 2), pp_options=(1,))


def _outcomes(report):
    return [(r.plan.key(), r.status, r.reason, r.capacity_per_s, r.metrics) for r in report.results]


def test_pruned_search_is_the_same_in_process_and_on_the_pool() -> None:
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    inline = run_search(scenario, SPACE, options=SearchOptions(), executor=InProcessExecutor())
    pool = LocalPoolExecutor(2)
    try:
        pooled = run_search(scenario, SPACE, options=SearchOptions(), executor=pool)
    finally:
        pool.close()
    assert _outcomes(inline) == _outcomes(pooled)
    assert inline.num_simulated > 1


def test_a_plan_failing_the_rate_it_needs_is_pruned_after_one_probe() -> None:
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    plan = PlanSpec("h100-sxm")
    full = evaluate_plan(PlanTask(scenario, plan, start_rate_per_s=2.0))
    assert full.status == "ok" and full.capacity_per_s > 0
    above = full.capacity_per_s * 4  # far above what the plan holds: it cannot win
    lost = evaluate_plan(
        PlanTask(scenario, plan, 2.0, need_rate_per_s=above, need_reason="to beat X")
    )
    assert (lost.status, lost.num_probes, lost.capacity_per_s) == ("pruned", 1, 0.0)
    assert lost.reason == f"dominated: fails the SLO at {above:.3g} req/s, to beat X"
    below = full.capacity_per_s / 2  # it holds there: the search goes on upwards from it
    kept = evaluate_plan(PlanTask(scenario, plan, 2.0, need_rate_per_s=below))
    assert kept.status == "ok" and kept.capacity_per_s >= below
    assert kept.capacity_per_s == pytest.approx(full.capacity_per_s, rel=0.1)
