"""KV memory in the engine: prefix caching, LRU eviction, swap, rejections."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.engine import ReplicaSetup, VLLMSchedulerConfig, run_simulation
from servesim.engine.records import RejectReason
from tests.engine.fakes import ConstantPerf, LinearPerf, assert_all_served, req, rows, run, setup


def _shared(i: int, t: float, family: int, prompt: int = 64, output: int = 4) -> object:
    hashes = tuple(family * 1000 + k for k in range(prompt // 16))
    return req(i, t, prompt, output, prefix_block_hashes=hashes, prefix_block_size=16)


def test_prefix_cache_hits_on_shared_prefixes() -> None:
    requests = [_shared(0, 0.0, 1), _shared(1, 1.0, 1), _shared(2, 2.0, 2)]
    recs = run(requests, LinearPerf(), setup(enable_prefix_caching=True))
    assert_all_served(recs)
    cols = rows(recs)
    # the second request reuses 3 of its 4 blocks (the last token is always computed)
    assert list(cols["num_prefix_hit_tokens"]) == [0, 48, 0]
    assert recs.counters["prefix_cache_hit_tokens"] == 48
    assert recs.counters["prefix_cache_queried_tokens"] == 3 * 64
    it = recs.iterations.view()
    assert list(it["num_prefill_tokens"][it["num_prefill_tokens"] > 0]) == [64, 16, 64]
    off = rows(run(requests, LinearPerf(), setup(enable_prefix_caching=False)))
    assert off["num_prefix_hit_tokens"].sum() == 0
    assert cols["first_token_s"][1] - 1.0 < off["first_token_s"][1] - 1.0


def test_prefix_blocks_of_another_size_map_to_kv_blocks() -> None:
    # Mooncake-style 512-token prefix ids over 16-token KV blocks
    def mk(i: int, t: float) -> object:
        return req(i, t, 1100, 2, prefix_block_hashes=(5, 6, 7), prefix_block_size=512)

    cols = rows(run([mk(0, 0.0), mk(1, 1.0)], LinearPerf(), setup(enable_prefix_caching=True)))
    assert cols["num_prefix_hit_tokens"][1] == 1088  # 68 full KV blocks inside 1100 tokens


def test_lru_eviction_keeps_recent_prefixes() -> None:
    # 12 blocks: each finished 64-token prompt leaves 4 cached blocks; a fourth family
    # evicts the least recently used (family 1), family 3 stays
    requests = [_shared(i, float(i), fam, output=1) for i, fam in enumerate([1, 2, 3, 4])]
    requests += [_shared(4, 4.0, 3, output=1), _shared(5, 5.0, 1, output=1)]
    recs = run(requests, LinearPerf(), setup(enable_prefix_caching=True, num_kv_blocks=12))
    cols = rows(recs)
    assert cols["num_prefix_hit_tokens"][4] == 48  # recent family 3 hits
    assert cols["num_prefix_hit_tokens"][5] == 0  # family 1 was evicted
    assert recs.counters["prefix_cache_evictions"] > 0


def test_swap_preemption_charges_host_link_time() -> None:
    requests = [req(i, 0.0, 50, 100) for i in range(4)]
    recs = run(requests, ConstantPerf(0.05), setup(num_kv_blocks=24, preemption_mode="swap"))
    assert_all_served(recs)
    c = recs.counters
    assert c["num_swap_outs"] > 0 and c["swap_in_blocks"] == c["swap_out_blocks"]
    it = recs.iterations.view()
    extra = float((it["duration_s"] - 0.05 * it["repeat"]).sum())
    per_block = 16 * 131072 / 63e9
    moved = c["swap_in_blocks"] + c["swap_out_blocks"]
    assert moved * per_block <= extra <= moved * per_block + 5e-6 * len(it["repeat"]) + 1e-12
    recompute = run(requests, ConstantPerf(0.05), setup(num_kv_blocks=24))
    assert "num_swap_outs" not in recompute.counters


def test_swap_space_limit_falls_back_to_recompute() -> None:
    requests = [req(i, 0.0, 50, 100) for i in range(4)]
    replica = setup(num_kv_blocks=24, preemption_mode="swap", swap_space_bytes=0)
    recs = run(requests, ConstantPerf(0.05), replica)
    assert_all_served(recs)
    assert recs.counters["num_swap_fallbacks_to_recompute"] == recs.counters["num_preemptions"]


def test_rejections_are_recorded_with_reasons() -> None:
    requests = [
        req(0, 0.0, 900, 200),  # 1100 > context 1000
        req(1, 0.0, 500, 400),  # 899 KV tokens = 57 blocks > 50 - watermark
        req(2, 0.0, 100, 10),
    ]
    recs = run(requests, LinearPerf(), setup(max_context_tokens=1000, num_kv_blocks=50))
    cols = rows(recs)
    assert list(cols["reject_reason"]) == [
        RejectReason.PROMPT_EXCEEDS_CONTEXT,
        RejectReason.EXCEEDS_KV_CAPACITY,
        RejectReason.NONE,
    ]
    assert recs.counters["num_rejected_prompt_exceeds_context"] == 1
    assert recs.counters["num_rejected_exceeds_kv_capacity"] == 1
    assert np.isnan(cols["completion_s"][:2]).all() and cols["num_emitted_tokens"][2] == 10
    small_budget = setup(
        VLLMSchedulerConfig(enable_chunked_prefill=False, max_num_batched_tokens=256)
    )
    recs = run([req(0, 0.0, 300, 2)], LinearPerf(), small_budget)
    assert rows(recs)["reject_reason"][0] == RejectReason.PROMPT_EXCEEDS_BATCH_TOKENS


def test_replica_info_and_dispatch() -> None:
    seen: list[tuple[int, ...]] = []

    def to_last(request: object, views: list) -> int:
        seen.append(tuple(v.num_running + v.num_queued for v in views))
        return len(views) - 1

    requests = [req(i, 0.01 * i, 30, 5) for i in range(5)]
    recs = run_simulation(requests, [setup(), setup()], LinearPerf(), dispatch=to_last)
    assert set(rows(recs)["replica_id"]) == {1}
    assert seen[0] == (0, 0) and seen[-1][0] == 0 and seen[-1][1] > 0
    info = recs.replicas[0]
    assert info.gpu_name == "h100-sxm" and info.num_kv_blocks == 1000 and info.tdp_w > 0
    with pytest.raises(Exception, match="dispatch"):
        run_simulation(requests, [setup()], LinearPerf(), dispatch=lambda r, v: 3)
    assert isinstance(setup(), ReplicaSetup)


def test_unsorted_arrivals_are_refused() -> None:
    with pytest.raises(Exception, match="sorted"):
        run([req(0, 1.0, 10, 2), req(1, 0.5, 10, 2)], LinearPerf())
