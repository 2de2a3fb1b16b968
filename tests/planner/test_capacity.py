"""Capacity search: exact thresholds on synthetic probes, and an M/D/1 queue on the engine."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ConstantPerf, fixed_workload
from servesim.planner.capacity import MAX_SEARCH_RATE_PER_S, Probe, capacity_search
from servesim.planner.evaluate import OK, PlanTask, evaluate_plan
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.space import PlanSpec, SchedulerVariant


def _threshold_probe(threshold: float, calls: list[float]):
    def probe(rate: float) -> Probe:
        calls.append(rate)
        holds = rate <= threshold
        return Probe(rate, holds, "ttft_p99", rate / threshold)

    return probe


@settings(max_examples=200, deadline=None)
@given(
    threshold=st.floats(0.01, 1000.0),
    start=st.floats(0.01, 1000.0),
    tol=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_brackets_and_bisects_to_the_threshold(threshold: float, start: float, tol: float) -> None:
    calls: list[float] = []
    found = capacity_search(
        _threshold_probe(threshold, calls),
        start_rate_per_s=start,
        rel_tol=tol,
        min_rate_per_s=1e-4,
        max_probes=60,
    )
    assert found.rate_per_s <= threshold < found.upper_rate_per_s
    assert (found.upper_rate_per_s - found.rate_per_s) / found.upper_rate_per_s <= tol
    assert found.limiting == "ttft_p99"
    assert found.num_probes == len(calls)


def test_never_probes_above_the_bound_and_reports_it_when_it_holds() -> None:
    calls: list[float] = []
    found = capacity_search(
        _threshold_probe(50.0, calls), start_rate_per_s=1.0, max_rate_per_s=10.0
    )
    assert max(calls) == 10.0
    assert found.rate_per_s == 10.0
    assert math.isinf(found.upper_rate_per_s)


def test_nothing_holds_gives_zero_capacity() -> None:
    calls: list[float] = []
    found = capacity_search(
        _threshold_probe(1e-9, calls), start_rate_per_s=1.0, min_rate_per_s=0.01
    )
    assert found.rate_per_s == 0.0
    assert found.best is None
    assert min(calls) >= 0.01 / 2


def test_check_names_the_worst_metric() -> None:
    crit = SLOCriterion(ttft_p99_s=1.0, tpot_p99_s=0.1)
    assert crit.slo_spec().ttft_s == 1.0
    assert crit.drain_margin_s(100) == pytest.approx(max(60.0, 2 * (1.0 + 100 * 0.1)))


def test_md1_queue_threshold_on_the_engine() -> None:
    """max_num_seqs=1, one-token outputs and a constant iteration time D make each replica an
    M/D/1 queue: mean TTFT = D + lambda D^2 / (2 (1 - lambda D)) (Pollaczek-Khinchine).
    The rate where it equals T is lambda* = 2W / (D^2 + 2WD) with W = T - D."""
    service_s, target_s = 1.0, 2.0
    wait = target_s - service_s
    expected = 2 * wait / (service_s**2 + 2 * wait * service_s)  # 2/3 req/s
    scenario = Scenario(
        model="llama-3.1-8b",
        workload=fixed_workload(16, 1),
        criterion=SLOCriterion(ttft_mean_s=target_s),
        requests_per_replica=10_000,
        min_requests=10_000,
    )
    plan = PlanSpec("h100-sxm", scheduler=SchedulerVariant(max_num_seqs=1))
    task = PlanTask(
        scenario, plan, start_rate_per_s=0.3, rel_tol=0.02, perf=ConstantPerf(service_s)
    )
    result = evaluate_plan(task)
    assert result.status == OK, result.reason
    assert result.capacity_per_s == pytest.approx(expected, rel=0.06)
    assert result.limiting == "ttft_mean"
    # And the capacity is far from the naive "utilisation < 1" answer of 1 req/s.
    assert result.capacity_per_s < 0.8


def test_search_that_always_holds_stops_at_the_rate_cap() -> None:
    found = capacity_search(lambda r: Probe(r, True, "none", 0.0), start_rate_per_s=1.0)
    assert found.rate_per_s == MAX_SEARCH_RATE_PER_S and found.num_probes < 24
