"""Capacity searches that start at the analytical bound (``capacity.gallop_capacity_search``).

Stated tolerance: with a monotone hold/fail threshold the capacity is within ``rel_tol`` (5%)
of the plain search's (property test). On the engine a finite run's hold/fail is monotone in
the rate only up to noise (measured at 300 requests per replica: Qwen2.5-7B on one H100 TP2-PP2
fails at 6.389 req/s and holds at 6.391 and 6.074), so the engine check on a fixed set of
plans allows twice ``rel_tol`` (``ENGINE_TOLERANCE``); measured there, the largest difference
is 5.2% and the fewer probes cost 32% less CPU (60 against 52 probes). At full length (1,000
requests per replica) on every 64th plan of ``bench_planner.py --thousand --capacity`` (24
plans, 1 to 8 replicas, PP): 144 against 110 probes, 137 against 91 CPU-s, largest
difference 5.2%. On the README example (branch and bound, loose 70B bounds) it costs more
(22 against 19 probes, same winner), so it is opt-in.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from servesim.perf import RooflinePerfModel
from servesim.planner.analytic import Prefilter
from servesim.planner.capacity import Probe, capacity_search, gallop_capacity_search
from servesim.planner.evaluate import PlanTask, evaluate_plan
from servesim.planner.plan import SchedulerVariant
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.search import SearchOptions, search_inputs
from servesim.planner.space import PlanSpec

ENGINE_TOLERANCE = 0.10


def _threshold_probe(threshold: float, calls: list[float]):
    def probe(rate: float) -> Probe:
        calls.append(rate)
        return Probe(rate, rate <= threshold, "ttft_p99", rate / threshold)

    return probe


@settings(max_examples=300, deadline=None)
@example(threshold=1.0, guess=164.0, tol=0.02, need=None)  # a doubled step past the floor
@given(
    threshold=st.floats(0.05, 500.0),
    guess=st.floats(0.05, 500.0),
    tol=st.sampled_from([0.02, 0.05, 0.1]),
    need=st.one_of(st.none(), st.floats(0.01, 600.0)),
)
def test_gallop_from_the_bound_brackets_the_threshold_within_tol(
    threshold: float, guess: float, tol: float, need: float | None
) -> None:
    assume(threshold > guess / 250)  # both searches give up below start / 1000
    found = gallop_capacity_search(
        _threshold_probe(threshold, []),
        guess_rate_per_s=guess,
        rel_tol=tol,
        max_probes=60,
        need_rate_per_s=need,
    )
    plain = capacity_search(
        _threshold_probe(threshold, []),
        start_rate_per_s=guess / 2,
        rel_tol=tol,
        max_probes=60,
        need_rate_per_s=need,
        min_rate_per_s=guess / 1000,
    )
    if need is not None and need > threshold:
        assert found.below_need and found.num_probes == 1 and plain.below_need
        return
    assert found.rate_per_s <= threshold < found.upper_rate_per_s
    assert (found.upper_rate_per_s - found.rate_per_s) / found.upper_rate_per_s <= tol
    assert found.rate_per_s == pytest.approx(plain.rate_per_s, rel=tol)


def test_a_bound_near_the_capacity_costs_fewer_probes_than_the_plain_search() -> None:
    # Capacity 0.9 x bound 10: 10 F, 9.50 F, 8.59 H (steps of 5%, then 10%), one bisection
    # to 5% (9.03 F): 4 probes. Plain from half the bound: 5 H, 10 F, then 4 bisections: 6.
    fast: list[float] = []
    found = gallop_capacity_search(_threshold_probe(9.0, fast), guess_rate_per_s=10.0)
    plain: list[float] = []
    capacity_search(_threshold_probe(9.0, plain), start_rate_per_s=5.0)
    assert len(fast) == 4 and len(plain) == 6
    assert found.rate_per_s <= 9.0 < found.upper_rate_per_s


def test_from_bound_is_opt_in_and_part_of_the_store_key() -> None:
    scenario = Scenario("llama-3.1-8b")
    perf = RooflinePerfModel()
    assert not SearchOptions().from_bound
    on, off = SearchOptions(from_bound=True), SearchOptions()
    assert search_inputs(scenario, on, perf) != search_inputs(scenario, off, perf)


_CRITERION = SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1)
# A fixed set: one and two replicas, three GPU types, PP, disaggregated, four model sizes.
ENGINE_PLANS = [
    ("llama-3.1-8b", PlanSpec("h100-sxm")),
    ("llama-3.1-8b", PlanSpec("a100-80gb", replicas=2)),
    ("llama-3.1-8b", PlanSpec("l40s", tp=2)),
    ("llama-3.1-8b", PlanSpec("a100-80gb", pp=2)),
    ("llama-3.1-8b", PlanSpec("h100-sxm", mode="disaggregated", prefill_replicas=1)),
    ("qwen2.5-7b", PlanSpec("l40s", scheduler=SchedulerVariant(max_num_seqs=64))),
    ("qwen2.5-7b", PlanSpec("h100-sxm", tp=2, pp=2)),
    ("mistral-7b", PlanSpec("a100-80gb", tp=2)),
    ("qwen2.5-32b", PlanSpec("h100-sxm", tp=2)),
    ("llama-3.1-70b", PlanSpec("h100-sxm", tp=4)),
]


@pytest.mark.slow
def test_capacity_from_the_bound_matches_the_plain_search_on_the_engine() -> None:
    probes = {False: 0, True: 0}
    for model, plan in ENGINE_PLANS:
        scenario = Scenario(model, criterion=_CRITERION, requests_per_replica=300)
        est = Prefilter(scenario, RooflinePerfModel(), scenario.shape()).estimate(plan)
        assert est.status == "ok", (model, plan.label(), est.status)
        found = {}
        for from_bound in (False, True):
            task = PlanTask(
                scenario,
                plan,
                start_rate_per_s=0.5 * est.rate_upper_per_s,
                max_rate_per_s=1.5 * est.rate_upper_per_s,
                from_bound=from_bound,
            )
            found[from_bound] = evaluate_plan(task)
            probes[from_bound] += found[from_bound].num_probes
        plain, fast = found[False], found[True]
        assert plain.status == fast.status == "ok"
        assert fast.capacity_per_s == pytest.approx(plain.capacity_per_s, rel=ENGINE_TOLERANCE)
    assert probes[True] < probes[False]  # measured: 52 against 60
