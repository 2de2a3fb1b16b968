"""DP-attention plans the planner varies beyond the group size: the all2all backend
(``--all2all-backends``) and, for a group wider than one server, the network between its
servers, priced from the cluster's nodes in the pre-filter as in the simulation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servesim.cli import main
from servesim.cluster import build_deployment
from servesim.core.errors import ConfigError, UnknownNameError
from servesim.engine.dp_group import DPGroupSpec
from servesim.perf import default_perf_model
from servesim.perf.dp_cost import DPGroupCost, GroupSpan
from servesim.perf.types import BatchShape
from servesim.planner.analytic import Prefilter
from servesim.planner.deploy import launch_command
from servesim.planner.scenario import Scenario, SLOCriterion, deployment_config, pool_config
from servesim.planner.space import PlanSpec, SearchSpace, enumerate_plans
from servesim.specs.catalog import resolve_model
from servesim.specs.gpu import LinkSpec

MOE = resolve_model("qwen3-30b-a3b")
SCENARIO = Scenario(
    "qwen3-30b-a3b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1), engine="vllm-v1"
)
SPACE = SearchSpace(
    gpus=(("h100-sxm", 16),),
    tp_options=(1,),
    pp_options=(1,),
    ep_options=(1,),
    max_replicas=1,
    dp_attention_options=(8, 16),
    all2all_backends=("allgather_reducescatter", "deepep_low_latency"),
    networks=(None, "roce-200"),
)


# the servers' usual InfiniBand NDR: 50 GB/s, 5 us
IB_SPAN = GroupSpan(LinkSpec("ib-ndr-400", 50e9, 5e-6), 8)


def _dp_plans(space: SearchSpace) -> list[PlanSpec]:
    return [p for p in enumerate_plans(space, MOE) if p.dp_attention > 1]


def test_each_backend_and_for_wide_groups_each_network_is_a_plan() -> None:
    plans = _dp_plans(SPACE)
    # dp8 fits one 8-GPU server: 2 backends; dp16 spans two: 2 backends x 2 networks
    assert [(p.dp_attention, p.all2all, p.network) for p in plans] == [
        (8, "allgather_reducescatter", None),
        (8, "deepep_low_latency", None),
        (16, "allgather_reducescatter", None),
        (16, "allgather_reducescatter", "roce-200"),
        (16, "deepep_low_latency", None),
        (16, "deepep_low_latency", "roce-200"),
    ]
    assert len({p.key() for p in plans}) == len(plans)
    assert plans[1].key().endswith("/dp8/a2a-deepep_low_latency")
    assert "deepep_low_latency" in plans[1].label()
    # the default stays out of keys: stores of earlier searches keep their keys
    assert "a2a" not in plans[0].key()
    assert PlanSpec.from_dict(plans[5].to_dict()) == plans[5]


def test_the_backend_reaches_the_pool_and_the_group() -> None:
    plan = _dp_plans(SPACE)[1]
    assert pool_config(SCENARIO, plan).all2all_backend == "deepep_low_latency"
    dep = build_deployment(deployment_config(SCENARIO, plan), SCENARIO.model, default_perf_model())
    assert dep.dp_groups() == [DPGroupSpec(0, 8, "deepep_low_latency")]


def test_bad_backends_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownNameError, match="all2all backend"):
        replace(SPACE, all2all_backends=("nccl",))
    with pytest.raises(ConfigError, match="only DP-attention plans have one"):
        PlanSpec("h100-sxm", all2all="pplx")
    args = ["plan", "--model", "qwen3-30b-a3b", "--gpus", "h100-sxm:8", "--slo-ttft-p99", "2"]
    with pytest.raises(SystemExit) as stopped:
        main([*args, "--dp-attention", "8", "--all2all-backends", "deepep"])
    assert stopped.value.code == 2
    assert "all2all backend" in capsys.readouterr().err


def test_the_prefilter_prices_a_wide_group_on_its_servers_network() -> None:
    perf = default_perf_model()
    pre = Prefilter(SCENARIO, perf, SCENARIO.shape())
    p99 = max(1, int(SCENARIO.shape().p99_prompt_tokens))
    prompt = BatchShape.from_lists([(p99, 0)])
    # RoCE 200 GbE, one NIC per GPU: 25 GB/s, 8 us (specs/catalog/networks.yaml); 8 of the
    # 16 GPUs on each of the two servers
    roce = GroupSpan(LinkSpec("roce-200", 25e9, 8e-6), 8)
    bounds = {}
    for plan in _dp_plans(SPACE)[2:4]:
        est = pre.estimate(plan)
        assert est.status == "ok", est.reason
        rplan = pre.replica_plan(plan)
        assert not isinstance(rplan, str)
        span = roce if plan.network == "roce-200" else IB_SPAN
        cost = DPGroupCost(rplan, 16, perf.calibration, span=span)
        own = cost.iteration_time(rplan, prompt).total_s
        assert est.ttft_p99_lower_s == own + cost.experts(p99 + 15).stage_s[0]
        bounds[plan.network] = est.ttft_p99_lower_s
    assert bounds["roce-200"] > bounds[None]


def test_the_dense_mlp_split_is_a_dimension_the_engine_must_run() -> None:
    space = replace(
        SPACE,
        gpus=(("h100-sxm", 8),),
        dp_attention_options=(8,),
        all2all_backends=("allgather_reducescatter",),
        dense_mlp_modes=("auto", "replicated"),
    )
    auto, one = _dp_plans(space)
    assert (auto.dense_mlp, one.dense_mlp) == ("auto", "replicated")
    assert one.key().endswith("/dp8/dense-replicated") and "dense" not in auto.key()
    # vLLM runs a rank's dense layers at the rank's tp only: recorded infeasible, its reason
    pre = Prefilter(SCENARIO, default_perf_model(), SCENARIO.shape())
    est = pre.estimate(one)
    assert est.status == "infeasible" and "dense_mlp=replicated is SGLang's" in est.reason
    # on SGLang the plan runs, and its line says --moe-dense-tp-size 1
    sglang = replace(SCENARIO, engine="sglang")
    assert Prefilter(sglang, default_perf_model(), sglang.shape()).estimate(one).status == "ok"
    assert "--moe-dense-tp-size 1" in launch_command(sglang, one, "sglang")
    assert "--moe-dense-tp-size" not in launch_command(sglang, auto, "sglang")
    with pytest.raises(UnknownNameError, match="dense MLP mode"):
        replace(space, dense_mlp_modes=("tp",))
