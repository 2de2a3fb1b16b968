"""Per-phase plans of disaggregated deployments, and EP degrees of MoE models."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import ConstantPerf, fixed_workload
from servesim.api import plan_config
from servesim.cluster import build_deployment
from servesim.perf import default_perf_model
from servesim.planner.analytic import Prefilter
from servesim.planner.deploy import launch_args, launch_command, sim_config_dict
from servesim.planner.evaluate import OK, PlanResult, PlanTask, evaluate_plan
from servesim.planner.rank import why_wins
from servesim.planner.scenario import Scenario, SLOCriterion, deployment_config
from servesim.planner.search import run_search
from servesim.planner.space import PlanSpec, SearchSpace, enumerate_plans
from servesim.specs.catalog import get_gpu, resolve_model

H100, A100 = "h100-sxm", "a100-80gb"
PHASE_SPACE = SearchSpace(
    gpus=((H100, 2), (A100, 2)), tp_options=(1, 2), pp_options=(1,), disaggregated=True
)


def _split(p: PlanSpec) -> tuple[str, int, int, str, int, int]:
    return (p.prefill_pool_gpu, p.prefill_pool_tp, p.prefill_replicas, p.gpu, p.tp, p.replicas)


def test_space_has_per_phase_plans_within_each_gpu_type() -> None:
    plans = list(enumerate_plans(PHASE_SPACE, resolve_model("llama-3.1-8b")))
    disagg = [p for p in plans if p.mode == "disaggregated"]
    assert len({p.key() for p in plans}) == len(plans)
    assert all(n <= 2 for p in plans for n in p.gpus_by_type().values())
    # Decode pool on one H100 pair (tp2): the prefill pool can only use A100s.
    assert {_split(p) for p in disagg if (p.gpu, p.tp) == (H100, 2)} == {
        (A100, 1, 1, H100, 2, 1),
        (A100, 1, 2, H100, 2, 1),
        (A100, 2, 1, H100, 2, 1),
    }
    # Decode on one H100 (tp1): H100 tp1 prefill (same hardware) or A100 tp1/tp2.
    assert {_split(p) for p in disagg if (p.gpu, p.tp) == (H100, 1)} == {
        (H100, 1, 1, H100, 1, 1),
        *((A100, 1, pre, H100, 1, dec) for pre in (1, 2) for dec in (1, 2)),
        *((A100, 2, 1, H100, 1, dec) for dec in (1, 2)),
    }
    assert len(disagg) == 20 and len(plans) == 26
    same = [p for p in disagg if not p.per_phase]
    assert all(p.prefill_gpu is None and p.prefill_tp is None for p in same)
    off = dataclasses.replace(PHASE_SPACE, per_phase=False)
    assert not any(p.per_phase for p in enumerate_plans(off, resolve_model("llama-3.1-8b")))


def test_per_phase_gpus_and_price_add_up_per_pool() -> None:
    plan = PlanSpec(H100, tp=2, replicas=3, mode="disaggregated", prefill_replicas=2,
                    prefill_gpu=A100, prefill_tp=4)  # fmt: skip
    assert plan.gpus_by_type() == {H100: 6, A100: 8}
    assert plan.num_gpus == 14
    price = 6 * get_gpu(H100).price_per_hour_usd + 8 * get_gpu(A100).price_per_hour_usd
    assert plan.price_per_hour_usd == pytest.approx(price)
    assert "pre-a100-80gb-tp4" in plan.key() and "2P a100-80gb tp4 : 3D h100-sxm tp2" in (
        plan.label()
    )
    assert PlanSpec.from_dict(plan.to_dict()) == plan
    with pytest.raises(Exception, match="only disaggregated"):
        PlanSpec(H100, prefill_gpu=A100)


def test_prefilter_bounds_each_phase_on_its_own_hardware() -> None:
    scenario = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1))
    pre = Prefilter(scenario, default_perf_model(), scenario.shape())
    plan = PlanSpec(H100, tp=4, replicas=2, mode="disaggregated", prefill_replicas=1,
                    prefill_gpu=A100, prefill_tp=8)  # fmt: skip
    est = pre.estimate(plan)
    a100 = pre.estimate(PlanSpec(A100, tp=8))
    h100 = pre.estimate(PlanSpec(H100, tp=4))
    assert est.status == a100.status == h100.status == OK
    # TTFT bounded by the A100 prefill pool, TPOT by the H100 decode pool.
    assert est.ttft_p99_lower_s == a100.ttft_p99_lower_s != h100.ttft_p99_lower_s
    assert est.tpot_lower_s == h100.tpot_lower_s != a100.tpot_lower_s
    assert est.max_kv_tokens == h100.max_kv_tokens
    # A prefill pool that cannot hold the model makes the plan infeasible, naming the pool.
    small = dataclasses.replace(plan, prefill_tp=1)
    bad = pre.estimate(small)
    assert bad.status == "infeasible" and bad.reason.startswith("prefill pool (a100-80gb tp=1)")
    assert "needs weights" in bad.reason


def _tiny_scenario(model: str = "llama-3.1-8b") -> Scenario:
    return Scenario(
        model,
        workload=fixed_workload(64, 4),
        criterion=SLOCriterion(ttft_p99_s=5.0),
        requests_per_replica=40,
        min_requests=40,
    )


def test_per_phase_plan_builds_both_pools_and_evaluates() -> None:
    scenario = _tiny_scenario()
    plan = PlanSpec(H100, tp=1, replicas=2, mode="disaggregated", prefill_replicas=1,
                    prefill_gpu=A100, prefill_tp=2)  # fmt: skip
    pools = deployment_config(scenario, plan).pools
    assert [(p.role, p.gpu, p.tp, p.replicas) for p in pools] == [
        ("prefill", A100, 2, 1),
        ("decode", H100, 1, 2),
    ]
    built = build_deployment(deployment_config(scenario, plan), scenario.model, ConstantPerf())
    assert built.num_gpus == plan.num_gpus == 4
    result = evaluate_plan(PlanTask(scenario, plan, 0.1, 1.0, perf=ConstantPerf(0.01)))
    assert result.status == OK and result.capacity_per_s > 0


def test_winner_yaml_and_vllm_lines_show_both_pools() -> None:
    scenario = _tiny_scenario()
    plan = PlanSpec(H100, tp=1, replicas=2, mode="disaggregated", prefill_replicas=1,
                    prefill_gpu=A100, prefill_tp=2)  # fmt: skip
    raw = sim_config_dict(scenario, plan, 2.0)
    assert "hardware" not in raw and "disagg" not in raw
    pools = plan_config(scenario, plan, 2.0).effective_deployment().pools
    assert [(p.role, p.gpu, p.tp, p.replicas) for p in pools] == [
        ("prefill", A100, 2, 1),
        ("decode", H100, 1, 2),
    ]
    lines = launch_command(scenario, plan).splitlines()
    assert len(lines) == 2
    assert "--tensor-parallel-size 2" in lines[0] and "prefill: 1 instance(s) on a100" in lines[0]
    assert "--tensor-parallel-size 1" in lines[1] and "decode: 2 instance(s) on h100" in lines[1]
    # Same hardware in both pools keeps the short form.
    same = dataclasses.replace(plan, prefill_gpu=None, prefill_tp=None)
    assert sim_config_dict(scenario, same, 2.0)["disagg"] == "1P:2D"


def test_moe_space_has_ep_degrees_and_records_impossible_ones() -> None:
    model = resolve_model("mixtral-8x7b")  # 8 experts
    space = SearchSpace(gpus=((H100, 4),), tp_options=(2, 4), pp_options=(1,), ep_options=(2, 3, 4))
    plans = list(enumerate_plans(space, model))
    assert {(p.tp, p.ep) for p in plans} == {
        (2, 1), (2, 2), (4, 1), (4, 2), (4, 3), (4, 4)  # ep <= the replica's GPUs
    }  # fmt: skip
    # ep=3 divides neither the experts nor tp: listed once (one replica), never more.
    assert [p.replicas for p in plans if p.ep == 3] == [1]
    assert all(p.ep == 1 for p in enumerate_plans(space, resolve_model("llama-3.1-8b")))
    scenario = _tiny_scenario("mixtral-8x7b")
    report = run_search(scenario, space, perf=ConstantPerf(0.01))
    by_ep = {(r.plan.tp, r.plan.ep, r.plan.replicas): r for r in report.results}
    bad = by_ep[(4, 3, 1)]
    assert bad.status == "infeasible" and "ep=3" in bad.reason and "8 experts" in bad.reason
    assert report.prune_reasons["infeasible: ep does not divide the experts or tp"] == 1
    assert by_ep[(4, 4, 1)].status in (OK, "pruned")
    assert any(r.plan.ep > 1 and r.status == OK for r in report.results)


def test_ep_plan_yaml_and_flags() -> None:
    scenario = _tiny_scenario("mixtral-8x7b")
    plan = PlanSpec(H100, tp=4, ep=4, replicas=2)
    pools = plan_config(scenario, plan, 1.0).effective_deployment().pools
    assert [(p.tp, p.ep, p.replicas) for p in pools] == [(4, 4, 2)]
    assert "--enable-expert-parallel" in launch_args(scenario, plan)
    assert "ep4" in plan.key() and "ep4" in plan.label()
    assert "ep" not in PlanSpec(H100, tp=4).key().split("/")[3]


def test_why_wins_names_the_prefill_pool_difference() -> None:
    base = PlanSpec(H100, tp=4, mode="disaggregated", prefill_replicas=1)
    other = dataclasses.replace(base, prefill_gpu=A100, prefill_tp=8)
    a = PlanResult(base, OK, capacity_per_s=4.0, limiting="ttft_p99")
    b = PlanResult(other, OK, capacity_per_s=4.0, limiting="ttft_p99")
    text = why_wins([a, b], 0, "goodput_per_dollar")
    assert "prefill gpu h100-sxm not a100-80gb" in text and "prefill tp 4 not 8" in text
    colocated = PlanResult(PlanSpec(A100, tp=8), OK, capacity_per_s=4.0)
    assert "prefill gpu" not in why_wins([colocated, a], 0, "goodput_per_dollar")


def test_pairings_with_a_pool_that_cannot_hold_the_model_are_listed_once() -> None:
    model = resolve_model("llama-3.1-8b")
    no_tp1 = list(enumerate_plans(PHASE_SPACE, model, lambda p: p.tp > 1))
    disagg = [p for p in no_tp1 if p.mode == "disaggregated"]
    # Only tp2 pools can run (here); every pairing with a tp1 pool appears once (1P:1D) so
    # the pre-filter records its reason, instead of once per P:D split (20 plans above).
    assert all(p.num_replicas == 2 for p in disagg)
    assert len(disagg) == len(
        {(p.prefill_pool_gpu, p.prefill_pool_tp, p.gpu, p.tp) for p in disagg}
    )
    # Decode H100/A100 tp1: 3 prefill pairings each; decode H100/A100 tp2: 2 each.
    assert len(disagg) == 3 + 3 + 2 + 2
