"""The vLLM V1 / H100 replay (blis_vllm_v1_h100): shared-prefix prompts, stages, overload rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from servesim.core.errors import ConfigError
from servesim.engine.blocks import prompt_block_keys
from servesim.validate import (
    MeasuredStage,
    StageComparison,
    blis_mape,
    load_blis_stages,
    replay_stage,
    stage_config,
    stage_workload,
    validate_blis,
)
from servesim.workload import describe
from servesim.workload.shared_prefix import (
    SharedPrefixOptions,
    SharedPrefixWorkload,
    prompt_block_ids,
)

# 2 groups x 2 prompts; 40-token system prompt + 10-token question = 50 tokens = 4 blocks of
# 16 (the last one partial), of which 40 // 16 = 2 lie wholly inside the system prompt.
_SMALL = SharedPrefixOptions(
    num_groups=2,
    prompts_per_group=2,
    system_prompt_tokens=40,
    question_tokens=10,
    output_tokens=7,
)


def test_prompts_share_their_groups_system_blocks_only() -> None:
    assert prompt_block_ids(_SMALL) == [(0, 1, 2, 3), (0, 1, 4, 5), (6, 7, 8, 9), (6, 7, 10, 11)]
    # The engine's KV-block keys: the two system blocks match within a group, nothing else.
    keys = [prompt_block_keys(ids, 16, 50, 16) for ids in prompt_block_ids(_SMALL)]
    assert all(len(k) == 3 for k in keys)  # 50 // 16 full KV blocks
    assert keys[0][:2] == keys[1][:2] and keys[0][2] != keys[1][2]
    assert not set(keys[0]) & set(keys[2])


def test_requests_arrive_at_a_constant_gap_and_cycle_through_the_prompts() -> None:
    workload = SharedPrefixWorkload(_SMALL, rate_per_s=4.0, duration_s=2.0)
    requests = list(workload)
    assert len(requests) == 8 and workload.num_requests == 8
    assert [r.arrival_s for r in requests] == [k * 0.25 for k in range(8)]
    assert {(r.num_prompt_tokens, r.num_output_tokens, r.prefix_block_size) for r in requests} == {
        (50, 7, 16)
    }
    ids = prompt_block_ids(_SMALL)
    assert [r.prefix_block_hashes for r in requests] == ids + ids
    # First cycle: prompts 1 and 3 reuse 2 system blocks each; second cycle: all 4 blocks.
    assert describe(workload).prefix_reuse_ratio == pytest.approx((2 + 2 + 4 * 4) / 32)
    assert list(workload) == requests  # re-iterable, deterministic


def test_bad_generator_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(_SMALL, num_groups=0)
    with pytest.raises(ConfigError):
        dataclasses.replace(_SMALL, system_prompt_tokens=0, question_tokens=0)
    with pytest.raises(ConfigError):
        SharedPrefixWorkload(_SMALL, rate_per_s=0.0, duration_s=10.0)


def _comparison(
    stage_overloaded: bool, ttft_s: float | None, num_completed: int
) -> StageComparison:
    stage = dataclasses.replace(_stage_template(), is_overloaded=stage_overloaded)
    return StageComparison(
        stage=stage,
        num_requests=1000,
        num_completed=num_completed,
        predicted_mean_ttft_s=ttft_s,
        predicted_tpot_s=None if ttft_s is None else 0.02,
        predicted_mean_e2e_s=None if ttft_s is None else ttft_s + 0.02 * 6,
        prefix_cache_hit_rate=None,
    )


def _stage_template() -> MeasuredStage:
    return MeasuredStage(
        name="fake",
        model="llama-2-7b",
        tp=1,
        dtype="fp16",
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        max_model_len=4096,
        profile="general",
        stage=0,
        rate_req_per_s=5.0,
        duration_s=200.0,
        prompts=_SMALL,
        num_success=1000,
        num_failed=0,
        measured_mean_ttft_s=0.05,
        measured_tpot_s=0.01,
        measured_mean_e2e_s=0.11,
        is_overloaded=False,
    )


def test_overload_rule_is_mean_ttft_over_10_s_or_over_1_percent_unfinished() -> None:
    assert not _comparison(False, 9.9, 1000).is_predicted_overloaded
    assert _comparison(False, 10.1, 1000).is_predicted_overloaded
    assert not _comparison(False, 0.1, 990).is_predicted_overloaded  # exactly 1%
    assert _comparison(False, 0.1, 989).is_predicted_overloaded
    assert _comparison(True, None, 0).is_predicted_overloaded  # nothing completed
    assert _comparison(True, 12.0, 1000).overload_agrees
    assert not _comparison(False, 12.0, 1000).overload_agrees


def test_errors_and_mape_leave_out_measured_overloads() -> None:
    fine = _comparison(False, 0.06, 1000)  # ttft +20%, tpot +100%, e2e (0.18 - 0.11) / 0.11
    errors = fine.errors()
    assert errors["ttft"] == pytest.approx(0.2) and errors["tpot"] == pytest.approx(1.0)
    assert errors["e2e"] == pytest.approx(0.07 / 0.11)
    overloaded = _comparison(True, 50.0, 1000)
    assert blis_mape([fine, overloaded]) == pytest.approx(blis_mape([fine]))
    queued = _comparison(False, 20.0, 1000)  # measured fine, predicted overloaded
    assert blis_mape([fine, queued], both_not_overloaded=True) == pytest.approx(blis_mape([fine]))
    assert blis_mape([fine, queued])["ttft"] == pytest.approx((0.2 + 399.0) / 2)
    assert all(e != e for e in _comparison(True, None, 0).errors().values())  # NaN


def test_loads_every_stage_with_its_server_and_generator_settings(shared_data: Path) -> None:
    stages = load_blis_stages(shared_data)
    assert len(stages) == 24
    assert len({s.name for s in stages}) == 24
    assert [s.name for s in stages if s.is_overloaded] == [
        s.name for s in stages if s.profile == "reasoning"
    ]
    assert sum(s.is_overloaded for s in stages) == 4
    for s in stages:
        # The constant load sent rate x duration requests, each answered or timed out.
        assert s.num_requests == s.num_success + s.num_failed == stage_workload(s).num_requests
        assert s.prompts.num_prompts == 100
    first = stages[0]
    assert (first.model, first.tp, first.dtype) == ("llama-2-7b", 1, "fp16")
    assert (first.max_num_seqs, first.max_num_batched_tokens) == (128, 2048)
    assert first.prompts.num_prompt_tokens == 100 + 466 and first.prompts.output_tokens == 247


def test_stage_config_is_vllm_v1_with_prefix_caching(shared_data: Path, tmp_path: Path) -> None:
    stage = load_blis_stages(shared_data)[0]
    config = stage_config(stage, tmp_path / "requests.jsonl")
    assert config["scheduler"] == {
        "kind": "vllm",
        "version": "v1",
        "max_num_seqs": 128,
        "max_num_batched_tokens": 2048,
    }
    assert config["cache"] == {"enable_prefix_caching": True, "block_size": 16}
    assert config["hardware"]["engine"] == "vllm-v1-async"  # type: ignore[index]


@pytest.mark.slow
def test_replay_of_the_smallest_stage_completes_every_request(shared_data: Path) -> None:
    # ~3 s: 3000 requests. No accuracy target: the V1 host-time model is fixed elsewhere.
    stage = next(s for s in load_blis_stages(shared_data) if s.name == "llama-2-7b_tp1_codegen_s0")
    comparison = replay_stage(stage)
    assert comparison.num_requests == comparison.num_completed == 3000
    assert comparison.prefix_cache_hit_rate is not None and comparison.prefix_cache_hit_rate > 0.9
    assert not comparison.is_predicted_overloaded
    assert all(e == e for e in comparison.errors().values())  # finite


@pytest.fixture(scope="module")
def blis_replay(shared_data: Path) -> list[StageComparison]:
    """Every stage replayed once (~40 s on one core)."""
    return validate_blis(shared_data)


# Issue 10's target: MAPE <= 10% for mean TTFT, TPOT and E2E over the 20 stages measured as not
# overloaded, 24/24 overloads agreeing. Measured 2026-12: TTFT 6.6%, TPOT 5.1%, E2E 5.0%, 24/24
# (before the front end's per-output wait, EngineTiming.output_per_seq_s: TTFT 11.8%; before
# the vllm-0.24 kernel tables: TTFT 7,450%, TPOT 12.5%, E2E 106%, 23/24).
@pytest.mark.slow
def test_blis_headline_within_target(blis_replay: list[StageComparison]) -> None:
    """With the fitted vllm-0.24 kernel stack and the vllm-v1-async engine timing (one step
    scheduled ahead, the front end's fixed and per-output latency): every stage's overload call
    right, TTFT, TPOT and E2E within 10% MAPE over the 20 non-overloaded stages."""
    measured_ok = [c for c in blis_replay if not c.stage.is_overloaded]
    assert len(blis_replay) == 24 and len(measured_ok) == 20
    assert all(c.overload_agrees for c in blis_replay)
    over_20 = blis_mape(blis_replay)
    assert over_20["tpot"] <= 0.06 and over_20["e2e"] <= 0.06, over_20
    assert over_20["ttft"] <= 0.10, over_20
    low = [c for c in measured_ok if c.stage.stage == 0]
    assert all(abs(c.errors()["ttft"]) <= 0.12 for c in low), [c.errors() for c in low]
    assert all(abs(c.errors()["e2e"]) <= 0.12 for c in low)
