"""The planner's DP-attention dimension: enumeration, keys, the pre-filter's memory and
bounds, and the deployment a DP plan becomes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servesim.cli import main
from servesim.cluster import build_deployment
from servesim.core.errors import ConfigError
from servesim.engine.dp_group import DPGroupSpec, rank_memory_plan
from servesim.perf import default_perf_model
from servesim.perf.dp_cost import DPGroupCost
from servesim.perf.types import BatchShape
from servesim.planner.analytic import Prefilter
from servesim.planner.scenario import Scenario, SLOCriterion, deployment_config, pool_config
from servesim.planner.space import PlanSpec, SearchSpace, divides_model, enumerate_plans
from servesim.specs.catalog import resolve_model

MOE = resolve_model("qwen3-30b-a3b")
SPACE = SearchSpace(gpus=(("h100-sxm", 8),), tp_options=(1, 8), pp_options=(1,), ep_options=(1, 8))
SCENARIO = Scenario(
    "qwen3-30b-a3b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1), engine="vllm-v1"
)
DP8 = PlanSpec("h100-sxm", tp=1, ep=8, dp_attention=8, router="dp_least_loaded")


def test_dp_plans_are_enumerated_only_when_asked_and_only_for_moe() -> None:
    plain = list(enumerate_plans(SPACE, MOE))
    assert all(p.dp_attention == 1 for p in plain)
    with_dp = list(enumerate_plans(replace(SPACE, dp_attention_options=(1, 8)), MOE))
    dp = [p for p in with_dp if p.dp_attention > 1]
    assert [p for p in with_dp if p.dp_attention == 1] == plain  # the old plans, same order
    # tp1 x dp8 (8 GPUs, one group) only: tp8 x dp8 needs 64 GPUs
    assert [(p.tp, p.ep, p.replicas, p.num_gpus, p.router) for p in dp] == [
        (1, 8, 1, 8, "dp_least_loaded")
    ]
    assert dp[0].key().endswith("/dp_least_loaded/dp8")


def test_a_split_of_a_dense_model_is_refused_citing_the_engines() -> None:
    dense = resolve_model("llama-3.1-8b")
    spaced = replace(SPACE, dp_attention_options=(1, 8))
    with pytest.raises(ConfigError, match="dense: no engine splits attention and FFN") as err:
        list(enumerate_plans(spaced, dense))
    assert "vLLM's --data-parallel-size" in str(err.value) and "\n" not in str(err.value)
    assert "SGLang's --enable-dp-attention" in str(err.value)
    assert len(list(enumerate_plans(SPACE, dense))) > 0  # no split asked: planned as before


def test_divides_model_names_the_dp_limit() -> None:
    assert divides_model(MOE, 1, 1, 8, dp=8) is None
    assert divides_model(MOE, 1, 1, 6, dp=6) == (
        "dp_attention=6: EP = tp x dp = 6 must divide the experts (pp=1)"
    )


def test_prefilter_sizes_a_rank_with_its_share_of_the_experts() -> None:
    pre = Prefilter(SCENARIO, default_perf_model(), SCENARIO.shape())
    est = pre.estimate(DP8)
    assert est.status == "ok", est.reason
    pool = pool_config(SCENARIO, DP8)
    rplan = pre.replica_plan(DP8)
    assert not isinstance(rplan, str)
    mem = rank_memory_plan(rplan, 8, pool.cache, 8192)  # vLLM V1's budget on an H100
    assert est.max_kv_tokens == mem.max_kv_tokens
    # a tp=1 replica holding all 128 experts has far less KV room than a DP-attention rank
    single = pre.estimate(PlanSpec("h100-sxm", tp=1))
    assert single.max_kv_tokens < est.max_kv_tokens
    # latency bounds: the prompt alone on its rank, the 7 others on one-token dummy steps
    cost = DPGroupCost(rplan, 8, default_perf_model().calibration)
    p99 = max(1, int(SCENARIO.shape().p99_prompt_tokens))
    own = cost.iteration_time(rplan, BatchShape.from_lists([(p99, 0)])).total_s
    assert est.ttft_p99_lower_s == own + cost.experts(p99 + 7).stage_s[0]
    bad = pre.estimate(PlanSpec("h100-sxm", tp=1, ep=6, dp_attention=6))
    assert bad.status == "infeasible" and "EP = tp x dp_attention = 6" in bad.reason


def test_a_dp_probe_sends_requests_per_rank() -> None:
    scenario = Scenario("qwen3-30b-a3b", requests_per_replica=300, min_requests=200)
    assert scenario.num_requests(DP8) == 8 * 300
    assert scenario.num_requests(PlanSpec("h100-sxm", tp=8)) == 300


def test_a_dp_plan_becomes_one_group_of_eight_ranks() -> None:
    dep = build_deployment(deployment_config(SCENARIO, DP8), SCENARIO.model, default_perf_model())
    assert dep.dp_groups() == [DPGroupSpec(0, 8)]
    assert dep.num_gpus == 8 == DP8.num_gpus
    assert dep.config.router.kind == "dp_least_loaded"


def test_the_cli_refuses_a_dense_split_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--model", "llama-3.1-8b", "--gpus", "h100-sxm:8", "--slo-ttft-p99", "2"]
    with pytest.raises(SystemExit) as stopped:
        main([*args, "--dp-attention", "1,8", "--inline", "--quiet"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "no engine splits attention and FFN" in err and len(err.splitlines()) == 1
