"""Planner feasibility matches the simulator: same replica builder, same token budget."""

from __future__ import annotations

import pytest

from servesim.api import simulate
from servesim.core.errors import ServesimError
from servesim.engine.config import VLLMSchedulerConfig
from servesim.engine.scheduler_setup import memory_token_budget
from servesim.perf import default_perf_model
from servesim.planner.analytic import Prefilter
from servesim.planner.scenario import Scenario, SLOCriterion
from servesim.planner.space import PlanSpec

SCENARIO = Scenario("llama-3.1-70b", criterion=SLOCriterion(ttft_p99_s=2.0, tpot_p99_s=0.1))


def _simulate_runs(plan: PlanSpec) -> bool:
    """Whether ``servesim simulate`` runs ``plan`` (a few requests, vLLM 0.6 defaults)."""
    config = {
        "model": SCENARIO.model,
        "hardware": {"gpu": plan.gpu, "tp": plan.tp, "pp": plan.pp, "engine": "vllm-0.6"},
        "workload": {"preset": "sharegpt-vidur", "rate_per_s": 1.0},
        "num_requests": 3,
    }
    try:
        simulate(config)
    except ServesimError:
        return False
    return True


def test_vllm_06_runs_a_512_token_budget_on_long_context_models() -> None:
    # Llama-3.1-70B has a 131,072-token context: vLLM 0.6 turns chunked prefill on at 512.
    assert memory_token_budget(VLLMSchedulerConfig(), max_model_len=131_072) == 512
    assert memory_token_budget(VLLMSchedulerConfig(), max_model_len=4096) == 4096
    explicit = VLLMSchedulerConfig(max_num_batched_tokens=8192, enable_chunked_prefill=True)
    assert memory_token_budget(explicit, max_model_len=131_072) == 8192


@pytest.mark.parametrize(
    "plan",
    [
        PlanSpec("h100-sxm", tp=2),  # the 4-replica family APEX picks: must be feasible
        PlanSpec("h100-sxm", tp=1, pp=2),
        PlanSpec("h100-sxm", tp=1),  # 131 GiB of weights on one 80 GB GPU: cannot run
        PlanSpec("l40s", tp=2),
        PlanSpec("a100-80gb", tp=2),
    ],
    ids=lambda p: p.label(),
)
def test_planner_feasible_exactly_when_simulate_runs(plan: PlanSpec) -> None:
    scenario = Scenario(SCENARIO.model, criterion=SCENARIO.criterion, engine="vllm-0.6")
    estimate = Prefilter(scenario, default_perf_model(), scenario.shape()).estimate(plan)
    assert (estimate.status != "infeasible") == _simulate_runs(plan), estimate.reason


def test_tp2_70b_on_h100_is_feasible_and_tp1_says_which_limit() -> None:
    pre = Prefilter(SCENARIO, default_perf_model(), SCENARIO.shape())
    assert pre.estimate(PlanSpec("h100-sxm", tp=2)).status != "infeasible"
    tp1 = pre.estimate(PlanSpec("h100-sxm", tp=1))
    assert tp1.status == "infeasible"
    # The limit, with numbers: weights, activations at the real budget, usable memory.
    for text in ("needs weights 131.", "usable 72.00 GiB", "512-token step"):
        assert text in tp1.reason, tp1.reason
