"""Cheap bracketing: short probes estimate the capacity, full-length probes decide it.

Stated tolerance: the bracketed capacity is within ``rel_tol`` (the search's own bracket
width, 5% by default) of the plain search's on the same plan. Synthetic probes check it as a
property; the engine check runs a fixed set of plans both ways (``BRACKETING_TOLERANCE``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import small_scenario
from servesim.perf import default_perf_model
from servesim.planner.capacity import Probe, bracketed_capacity_search, capacity_search
from servesim.planner.evaluate import PlanTask, evaluate_plan
from servesim.planner.search import SearchOptions, search_inputs
from servesim.planner.space import PlanSpec

# Relative difference allowed between bracketed and plain capacity on the engine.
BRACKETING_TOLERANCE = 0.05


def _threshold_probe(threshold: float, calls: list[float]):
    def probe(rate: float) -> Probe:
        calls.append(rate)
        return Probe(rate, rate <= threshold, "ttft_p99", rate / threshold)

    return probe


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.floats(0.05, 500.0),
    bias=st.floats(0.3, 3.0),  # a short run's threshold / the full run's (usually > 1)
    start=st.floats(0.05, 500.0),
    tol=st.sampled_from([0.02, 0.05, 0.1]),
    need=st.one_of(st.none(), st.floats(0.01, 600.0)),
)
def test_bracketed_search_brackets_the_full_threshold_within_tol(
    threshold: float, bias: float, start: float, tol: float, need: float | None
) -> None:
    assume(threshold > start / 250)  # both searches give up below start / 1000
    full: list[float] = []
    short: list[float] = []
    found = bracketed_capacity_search(
        _threshold_probe(threshold, full),
        _threshold_probe(threshold * bias, short),
        start_rate_per_s=start,
        rel_tol=tol,
        max_probes=60,
        need_rate_per_s=need,
    )
    assert found.num_probes == len(full) and len(found.short_probes) == len(short)
    if need is not None and need > threshold:
        assert found.below_need and found.num_probes == 1 and not short
        return
    # Capacity rests on full probes: one held at it, one failed within tol above it.
    assert found.rate_per_s <= threshold < found.upper_rate_per_s
    assert (found.upper_rate_per_s - found.rate_per_s) / found.upper_rate_per_s <= tol
    plain = capacity_search(
        _threshold_probe(threshold, []),
        start_rate_per_s=start,
        rel_tol=tol,
        max_probes=60,
        need_rate_per_s=need,
        min_rate_per_s=start / 1000,
    )
    assert found.rate_per_s == pytest.approx(plain.rate_per_s, rel=tol)


def test_a_good_estimate_costs_two_full_probes() -> None:
    full: list[float] = []
    short: list[float] = []
    found = bracketed_capacity_search(
        _threshold_probe(10.0, full),
        _threshold_probe(10.2, short),  # short runs overstate by 2%
        start_rate_per_s=3.0,
        rel_tol=0.05,
    )
    # The short probes settle within 15% of 10.2; the full ones step from there.
    assert len(full) <= 3
    assert found.rate_per_s <= 10.0 < found.upper_rate_per_s
    plain: list[float] = []
    capacity_search(_threshold_probe(10.0, plain), start_rate_per_s=3.0, rel_tol=0.05)
    assert len(plain) > len(full)  # 3 -> 6 -> 12, then bisection to 5%: 6 probes


@pytest.mark.parametrize(("bias", "most"), [(1.3, 7), (0.8, 7), (8.0, 14)])
def test_gallop_from_a_biased_estimate(bias: float, most: int) -> None:
    """Short runs overstate capacity (30% at 200 requests on ShareGPT, measured): the gallop
    down from the estimate takes steps of 5%, 10%, 22%, 49%..., then bisects; a wild
    estimate (8x) is still found, at more probes than the plain search."""
    full: list[float] = []
    found = bracketed_capacity_search(
        _threshold_probe(1.0, full),
        _threshold_probe(bias, []),
        start_rate_per_s=2.0,
        rel_tol=0.05,
    )
    assert found.rate_per_s <= 1.0 < found.upper_rate_per_s
    assert len(full) <= most


def test_the_need_probe_is_full_length_and_prunes_as_the_plain_search() -> None:
    short: list[float] = []
    found = bracketed_capacity_search(
        _threshold_probe(2.0, []), _threshold_probe(3.0, short), start_rate_per_s=1.0,
        need_rate_per_s=2.5,
    )  # fmt: skip
    assert found.below_need and found.upper_rate_per_s == 2.5 and not short


def test_short_probes_that_never_hold_fall_back_to_the_plain_search() -> None:
    found = bracketed_capacity_search(
        _threshold_probe(4.0, []),
        _threshold_probe(1e-9, []),
        start_rate_per_s=1.0,
    )
    plain = capacity_search(_threshold_probe(4.0, []), start_rate_per_s=1.0)
    assert found.rate_per_s == plain.rate_per_s
    assert found.short_probes and math.isfinite(found.upper_rate_per_s)


PLANS = [
    PlanSpec("h100-sxm", tp=1, replicas=2),
    PlanSpec("a100-80gb", tp=1, replicas=2),
]


@pytest.mark.slow
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.label())
def test_bracketed_capacity_matches_the_plain_search_on_the_engine(plan: PlanSpec) -> None:
    scenario = replace(
        small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05), requests_per_replica=700, min_requests=200
    )  # 1,400 requests per probe, 560 per short probe
    results = {}
    for bracketing in (False, True):
        task = PlanTask(scenario, plan, start_rate_per_s=4.0, bracketing=bracketing)
        results[bracketing] = evaluate_plan(task)
    plain, fast = results[False], results[True]
    assert plain.status == fast.status == "ok"
    assert fast.metrics["num_short_probes"] > 0 and "num_short_probes" not in plain.metrics
    assert fast.capacity_per_s == pytest.approx(plain.capacity_per_s, rel=BRACKETING_TOLERANCE)
    # After a full need probe held, the search goes on with full probes (it is cheaper).
    need = PlanTask(scenario, plan, 4.0, need_rate_per_s=plain.capacity_per_s / 2, bracketing=True)
    assert "num_short_probes" not in evaluate_plan(need).metrics


def test_bracketing_is_opt_in_part_of_the_store_key_and_skipped_when_short() -> None:
    scenario = small_scenario(ttft_p99_s=1.0)
    perf = default_perf_model()
    on, off = SearchOptions(bracketing=True), SearchOptions()
    assert not off.bracketing  # the default: it does not reliably save CPU
    assert search_inputs(scenario, on, perf) != search_inputs(scenario, off, perf)
    # Too few requests per probe to shorten (40% under 500): the plain search runs.
    assert scenario.short_num_requests(PlanSpec("h100-sxm")) is None
    longer = replace(scenario, requests_per_replica=1000, min_requests=200)
    assert longer.short_num_requests(PlanSpec("h100-sxm")) is None  # 400 requests
    assert longer.short_num_requests(PlanSpec("h100-sxm", replicas=2)) == 800
