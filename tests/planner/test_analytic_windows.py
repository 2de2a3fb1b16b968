"""The pre-filter's KV batch bound counts a windowed model's pages as the engine's pool does
(perf/kv_layout.py): hand-computed pages per sequence, and one ``simulate`` run's max batch."""

from __future__ import annotations

import dataclasses

from servesim.api import simulate
from servesim.perf import default_perf_model
from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.planner.analytic import Prefilter, kv_batch_bound
from servesim.planner.plan import SchedulerVariant
from servesim.planner.scenario import Scenario, SLOCriterion, WorkloadShape
from servesim.planner.space import PlanSpec

# Mistral-7B v0.1: every layer slides over 4096 tokens (one group); gpt-oss: 18 full and
# 18 sliding(128) layers (one group each); 16-token pages.
MISTRAL = KVLayout(16, 0, (WindowGroups("sliding", 4096, 1),))
GPT_OSS = KVLayout(16, 1, (WindowGroups("sliding", 128, 1),))


def test_a_sliding_sequence_holds_the_window_pages_at_any_long_context() -> None:
    # 8192 tokens: 512 pages less the (8192 - 4096 + 1) // 16 = 256 slid out = 256; at 32768
    # 2048 - (32768 - 4095) // 16 = 2048 - 1792 = 256. A 27,614-page pool: 107 either way,
    # where pool tokens / context said 27,614 x 16 / 8192 = 53 and / 32768 = 13.
    assert MISTRAL.pages(8192) == MISTRAL.pages(32768) == 256
    assert kv_batch_bound(MISTRAL, 27_614, 8192) == 107
    assert kv_batch_bound(MISTRAL, 27_614, 32768) == 107
    assert kv_batch_bound(KVLayout(16), 27_614, 8192) == 53  # no windows: unchanged


def test_a_full_plus_window_sequence_holds_both_groups_pages() -> None:
    # gpt-oss at 8192: 512 full pages + 512 - (8192 - 127) // 16 = 8 window pages = 520;
    # at 32768: 2048 + 8 = 2056. An 18,521-page pool: 35 and 9 (tokens / context: 36 and 9).
    assert GPT_OSS.pages(8192) == 520 and GPT_OSS.pages(32768) == 2056
    assert kv_batch_bound(GPT_OSS, 18_521, 8192) == 35
    assert kv_batch_bound(GPT_OSS, 18_521, 32768) == 9


def _estimate(prompt: int, output: int, engine: str = "auto") -> tuple[int, int]:
    scenario = Scenario("mistral-7b", criterion=SLOCriterion(), engine=engine)
    shape = WorkloadShape(prompt, output, prompt, output)
    pre = Prefilter(scenario, default_perf_model(), shape)
    plan = PlanSpec("h100-sxm", tp=1, scheduler=SchedulerVariant(max_num_seqs=1024))
    est = pre.estimate(plan)
    assert est.status == "ok", est.reason
    return est.max_batch, est.max_kv_tokens // 16


def test_prefilter_bound_for_mistral_at_8k_and_32k_is_pool_pages_over_window_pages() -> None:
    for context in (8192, 32768):
        batch, pages = _estimate(context - 1, 2)  # context = prompt + output / 2
        assert batch == pages // 256
        assert batch > 2 * (pages * 16 // context)  # the old tokens / context bound


def test_prefilter_bound_matches_simulated_max_batch() -> None:
    # 8191-token prompts, 400 output tokens, all at once: sequences at 8191..8591 tokens hold
    # 256-257 pages, the bound takes the mean context 8391 (257 pages).
    bound, pages = _estimate(8191, 400, engine="vllm-v1")
    assert bound == pages // 257
    config = {
        "model": "mistral-7b",
        "hardware": {"gpu": "h100-sxm", "engine": "vllm-v1"},
        "scheduler": {"max_num_seqs": 1024},
        "workload": {
            "lengths": {
                "kind": "independent",
                "prompt": {"kind": "fixed", "tokens": 8191},
                "output": {"kind": "fixed", "tokens": 400},
            },
            "rate_per_s": 1000.0,
        },
        "num_requests": 300,
    }
    measured = simulate(config).summary.batch_size.max
    assert bound - 1 <= measured <= bound + 1, (measured, bound)


def test_p99_prompt_check_counts_the_window_pages_of_a_prefill_step() -> None:
    # A 32,768-token prompt in 2,048-token steps: the window holds at most
    # ceil((4096 - 1 + 2048) / 16) + 1 = 385 pages (tokens / block said 2,048).
    scenario = Scenario("mistral-7b", criterion=SLOCriterion())
    pre = Prefilter(scenario, default_perf_model(), WorkloadShape(32768, 2, 32768, 2))
    plan = PlanSpec("h100-sxm", tp=1)
    rplan = pre.replica_plan(plan)
    assert not isinstance(rplan, str)
    mem = default_perf_model().memory_plan(rplan, block_size_tokens=16)
    assert MISTRAL.peak_pages(32768, 2048) == 385
    assert pre._prompt_misfit(rplan, dataclasses.replace(mem, num_kv_blocks=385), 2048) == ""
    short = pre._prompt_misfit(rplan, dataclasses.replace(mem, num_kv_blocks=384), 2048)
    assert short.startswith("KV cache holds 384 pages, less than the 385")
