"""Search space, pre-filter reasons, the store, and executor equivalence."""

from __future__ import annotations

import time

import pytest

from conftest import small_scenario
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.perf import default_perf_model
from servesim.planner.analytic import Prefilter
from servesim.planner.executors import InProcessExecutor, LocalPoolExecutor, make_executor
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.search import SearchOptions, run_search
from servesim.planner.space import PlanSpec, SearchSpace, enumerate_plans, parse_gpus
from servesim.planner.store import PlanStore
from servesim.specs.catalog import resolve_model

SMALL_SPACE = SearchSpace(
    gpus=(("h100-sxm", 2), ("a100-80gb", 2)), tp_options=(1, 2), pp_options=(1,)
)


def test_parse_gpus_and_unknown_names() -> None:
    assert parse_gpus("h100-sxm:8, a100-80gb:4") == (("h100-sxm", 8), ("a100-80gb", 4))
    with pytest.raises(UnknownNameError):
        parse_gpus("h1000:8")
    with pytest.raises(ConfigError, match="NAME:COUNT"):
        parse_gpus("h100-sxm:eight")


def test_enumeration_respects_counts_and_budget() -> None:
    model = resolve_model("llama-3.1-8b")
    plans = list(enumerate_plans(SMALL_SPACE, model))
    assert all(p.num_gpus <= 2 for p in plans)
    assert {(p.gpu, p.tp, p.replicas) for p in plans} == {
        (g, tp, r) for g in ("h100-sxm", "a100-80gb") for tp, r in ((1, 1), (1, 2), (2, 1))
    }
    cheap = SearchSpace(gpus=(("h100-sxm", 8),), max_price_per_hour_usd=6.0, pp_options=(1,))
    assert all(p.price_per_hour_usd <= 6.0 for p in enumerate_plans(cheap, model))
    disagg = SearchSpace(
        gpus=(("h100-sxm", 3),), tp_options=(1,), pp_options=(1,), disaggregated=True
    )
    splits = [p for p in enumerate_plans(disagg, model) if p.mode == "disaggregated"]
    assert {(p.prefill_replicas, p.replicas) for p in splits} == {(1, 1), (1, 2), (2, 1)}


def test_infeasible_plans_are_recorded_with_reasons(tmp_path) -> None:
    scenario = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0))
    pre = Prefilter(scenario, default_perf_model(), scenario.shape())
    weights = pre.estimate(PlanSpec("h100-sxm", tp=1))
    assert weights.status == "infeasible" and "needs weights" in weights.reason
    heads = pre.estimate(PlanSpec("h100-sxm", tp=3))
    assert heads.status == "infeasible" and "does not divide the 64 attention heads" in heads.reason
    # fp8 on a GPU without FP8 tensor cores runs weight-only (vLLM's Marlin), as simulate
    # runs it (one formats rule, specs.dtypes.serving_formats): feasible, GEMMs in bf16.
    fp8 = PlanSpec("a100-80gb", tp=8, dtype="fp8")
    assert pre.estimate(fp8).status == "ok"
    rplan = pre.replica_plan(fp8)
    assert not isinstance(rplan, str) and rplan.activation_dtype.value == "bf16"
    # In a search they land in the store with status and reason.
    space = SearchSpace(gpus=(("a100-80gb", 2),), tp_options=(1,), pp_options=(1,))
    store = PlanStore(tmp_path / "plan.duckdb")
    report = run_search(scenario, space, store=store)
    stored = {r.plan.key(): r for r in store.results(report.search_hash)}
    store.close()
    assert report.count("infeasible") == len(report.results) == len(stored)
    assert all("needs weights" in r.reason for r in stored.values())
    assert report.prune_reasons == {"infeasible: weights do not fit": len(stored)}


def test_latency_bound_prunes_before_simulating() -> None:
    scenario = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=0.05))
    space = SearchSpace(gpus=(("h100-sxm", 8),), tp_options=(4, 8), pp_options=(1,))
    report = run_search(scenario, space)
    assert report.num_simulated == 0
    assert report.count("pruned") == len(report.results)
    assert all("TTFT >=" in r.reason for r in report.results)


def test_prefilter_is_fast() -> None:
    scenario = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1))
    space = SearchSpace(
        gpus=(("h100-sxm", 64), ("a100-80gb", 64)), tp_options=(1, 2, 4, 8), dtypes=("bf16", "fp8")
    )
    plans = list(enumerate_plans(space, resolve_model(scenario.model)))
    pre = Prefilter(scenario, default_perf_model(), scenario.shape())
    started = time.perf_counter()
    for plan in plans:
        pre.estimate(plan)
    rate = len(plans) / (time.perf_counter() - started)
    assert len(plans) > 500
    assert rate > 1000, f"{rate:.0f} plans/s"


def _outcomes(report):
    return [
        (r.plan.key(), r.status, r.capacity_per_s, r.limiting, r.metrics) for r in report.results
    ]


def test_process_pool_matches_in_process() -> None:
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    options = SearchOptions(exhaustive=True)
    inline = run_search(scenario, SMALL_SPACE, options=options, executor=InProcessExecutor())
    pool = LocalPoolExecutor(2)
    try:
        pooled = run_search(scenario, SMALL_SPACE, options=options, executor=pool)
    finally:
        pool.close()
    assert inline.num_simulated == pooled.num_simulated > 0
    assert _outcomes(inline) == _outcomes(pooled)
    assert [r.plan for r in inline.ranked] == [r.plan for r in pooled.ranked]


@pytest.mark.slow
def test_ray_matches_in_process() -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'servesim[ray]')")
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    space = SearchSpace(gpus=(("h100-sxm", 2),), tp_options=(1,), pp_options=(1,))
    options = SearchOptions(exhaustive=True)
    inline = run_search(scenario, space, options=options)
    ray_exec = make_executor("ray", num_workers=2)
    try:
        on_ray = run_search(scenario, space, options=options, executor=ray_exec)
    finally:
        ray_exec.close()
    assert on_ray.num_simulated == inline.num_simulated > 0
    assert _outcomes(inline) == _outcomes(on_ray)


def test_bad_executor_name() -> None:
    with pytest.raises(ConfigError, match="inline, process or ray"):
        make_executor("gpu")


def test_disaggregated_plans_and_cost_at_rate() -> None:
    scenario = small_scenario(ttft_p99_s=1.0, tpot_p99_s=0.05)
    space = SearchSpace(
        gpus=(("h100-sxm", 2),), tp_options=(1,), pp_options=(1,), disaggregated=True
    )
    options = SearchOptions(objective="cost_at_rate", target_rate_per_s=3.5, exhaustive=True)
    report = run_search(scenario, space, options=options)
    by_label = {r.plan.label(): r for r in report.results}
    disagg = by_label["1P:1D h100-sxm tp1 bf16 vllm seqs=256"]
    assert disagg.status == "ok" and disagg.capacity_per_s > 0, disagg.reason
    assert disagg.plan.num_gpus == 2
    # One replica cannot reach 3.5 req/s even by its bound (~3.1): pruned with that reason.
    single = by_label["1x h100-sxm tp1 bf16 vllm seqs=256"]
    assert single.status == "pruned" and "below the target rate" in single.reason
    best = report.ranked[0]
    assert best.capacity_per_s >= 3.5 or all(r.capacity_per_s < 3.5 for r in report.ranked)


def test_routers_multiply_only_multi_replica_plans() -> None:
    space = SearchSpace(
        gpus=(("h100-sxm", 2),),
        tp_options=(1,),
        pp_options=(1,),
        routers=("round_robin", "least_outstanding_requests"),
    )
    plans = list(enumerate_plans(space, resolve_model("llama-3.1-8b")))
    assert [(p.replicas, p.router) for p in plans] == [
        (1, "round_robin"),
        (2, "round_robin"),
        (2, "least_outstanding_requests"),
    ]
    with pytest.raises(UnknownNameError):
        SearchSpace(gpus=(("h100-sxm", 2),), routers=("fastest",))
