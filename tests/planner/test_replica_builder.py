"""One ReplicaPlan builder: the pre-filter prices exactly the replica the simulator builds.

The planner's pre-filter used to build its own ``ReplicaPlan`` without the host profile, CUDA
graphs and custom all-reduce, so it priced a vLLM V1 deployment with V0 host costs. It now
calls ``cluster.pool_plan``; these tests compare its plan field by field with the one
``build_deployment`` makes from the winner's SimConfig (the path ``simulate`` takes).
"""

from __future__ import annotations

import pytest

from servesim.api import plan_config
from servesim.cluster import build_deployment
from servesim.engine.profiles import get_engine
from servesim.perf import default_perf_model
from servesim.perf.host import resolve_host_profile
from servesim.perf.types import ReplicaPlan
from servesim.planner.analytic import Prefilter
from servesim.planner.plan import SchedulerVariant
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.space import PlanSpec

CRITERION = SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1)


def _planner_plans(scenario: Scenario, plan: PlanSpec) -> list[ReplicaPlan]:
    pre = Prefilter(scenario, default_perf_model(), scenario.shape())
    roles = ("prefill", "decode") if plan.mode == "disaggregated" else ("unified",)
    out = []
    for role in roles:
        built = pre.replica_plan(plan, role)
        assert not isinstance(built, str), built
        out.append(built)
    return out


def _simulator_plans(scenario: Scenario, plan: PlanSpec) -> list[ReplicaPlan]:
    cfg = plan_config(scenario, plan, 1.0)  # the YAML the planner writes for the winner
    deployment = build_deployment(cfg.effective_deployment(), cfg.model, default_perf_model())
    return [pool.plan for pool in deployment.pools]


@pytest.mark.parametrize(
    "plan",
    [
        PlanSpec("h100-sxm", tp=2),
        PlanSpec("h100-sxm", tp=4, pp=2, replicas=2),
        PlanSpec("a100-80gb", tp=2, dtype="fp8"),
        PlanSpec(
            "h100-sxm", tp=2, mode="disaggregated", prefill_replicas=1, prefill_gpu="a100-80gb"
        ),
    ],
    ids=lambda p: p.label(),
)
@pytest.mark.parametrize("engine", ["vllm-v1", "vllm-0.6", "sglang"])
def test_prefilter_plan_equals_the_simulators_plan(plan: PlanSpec, engine: str) -> None:
    scenario = Scenario("llama-3.1-70b", criterion=CRITERION, engine=engine)
    planner, simulator = _planner_plans(scenario, plan), _simulator_plans(scenario, plan)
    assert planner == simulator
    profile = get_engine(engine)
    for rplan in planner:
        assert rplan.host_profile == resolve_host_profile(
            "auto", engine_host_profile=profile.host_profile
        )
        assert rplan.kernel_stack == profile.kernel_stack


def test_v1_deployment_is_priced_with_v1_host_costs_cuda_graphs_and_custom_all_reduce() -> None:
    plan = PlanSpec("h100-sxm", tp=4, scheduler=SchedulerVariant(max_num_batched_tokens=2048))
    v1 = _planner_plans(Scenario("llama-3.1-70b", criterion=CRITERION, engine="vllm-v1"), plan)[0]
    v0 = _planner_plans(Scenario("llama-3.1-70b", criterion=CRITERION, engine="vllm-0.6"), plan)[0]
    (sim_v1,) = _simulator_plans(Scenario("llama-3.1-70b", engine="vllm-v1"), plan)
    assert (v1.host_profile, v1.use_cuda_graphs, v1.custom_all_reduce) == (
        sim_v1.host_profile,
        sim_v1.use_cuda_graphs,
        sim_v1.custom_all_reduce,
    )
    assert v1.use_cuda_graphs and v1.custom_all_reduce
    # The engines differ in host time: a pre-filter on V0 costs would not pass the first check.
    assert v1.host_profile != v0.host_profile
