"""KV cache groups (perf/kv_layout.py, perf/kv_groups.py): window and chunk pages counted as
vLLM's hybrid KV-cache manager holds them, by hand, and in engine runs whose books are
recounted every step."""

from __future__ import annotations

import dataclasses

import pytest

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.config import SpeculativeConfig
from servesim.engine.group import DecodeGroup
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq, SeqStatus
from servesim.perf.kv_groups import describe, kv_layout, page_bytes_per_token
from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.perf.memory import plan_memory
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import LinearPerf, assert_all_served, poisson_requests, req, run

MIX = KVLayout(16, 3, (WindowGroups("sliding", 4096, 1),))  # 3 full groups, 1 window group


def test_three_full_one_window_at_10k_by_hand() -> None:
    # 10,000 tokens = 625 blocks. Full groups: 3 x 625 = 1,875 pages. The window group
    # skips max(0, 10000 - 4096 + 1) = 5,905 tokens = 369 whole blocks: 625 - 369 = 256.
    assert MIX.pages(10_000) == 1_875 + 256 == 2_131
    # the next decode step (token 10,001 opens block 626 in all four groups): 4 x 626 - 369
    assert MIX.step_pages(10_000, 1) == 2_135
    # the window's fullest: ceil((4096 - 1 + 1) / 16) + 1 = 257 pages; charged per token
    # like a full layer (the former bound) it would be 4 x 625 = 2,500
    assert MIX.peak_pages(10_000) == 1_875 + 257
    assert MIX.pages_per_row * 625 == 2_500
    # a step of 16 tokens from 10,000 moves the window's start by 16: one page freed
    assert MIX.freed(10_000, 16) == 1


def test_chunked_groups_free_whole_chunks() -> None:
    scout = KVLayout(16, 1, (WindowGroups("chunked", 8192, 3),))
    # 10,000 tokens: the chunk begins at 8,192 (512 blocks skipped per chunked group)
    assert scout.pages(10_000) == 625 + 3 * (625 - 512) == 964
    # the 16,384th token closes the second chunk: each group frees its 512 pages
    assert scout.freed(16_383, 1) == 3 * 512
    assert scout.peak_pages(32_768) == 2_048 + 3 * 512


def _plan(name: str, **changes: object) -> ReplicaPlan:
    model = resolve_model(name)
    if changes:
        model = dataclasses.replace(model, **changes)
    return ReplicaPlan(model=model, gpu=get_gpu("h100-sxm"))


def test_groups_of_catalog_models() -> None:
    assert describe(kv_layout(_plan("gpt-oss-20b"), 16)) == "1 full + 1 sliding(128)"
    assert describe(kv_layout(_plan("llama-4-scout"), 16)) == "1 full + 3 chunked(8192)"
    mistral = kv_layout(_plan("mistral-7b"), 16)
    assert describe(mistral) == "1 sliding(4096)" and mistral.num_full_groups == 0
    assert kv_layout(_plan("llama-3.1-8b"), 16).plain


def test_gemma3_like_pattern_pads_to_the_full_group() -> None:
    # Gemma-3-27B's 62 layers: every sixth global (10 full), 52 sliding of 1,024 tokens.
    # vLLM: group size 10, the sliding bucket splits into ceil(52 / 10) = 6 groups
    # (layers[i::6]: 9, 9, 9, 9, 8, 8 layers); a page is 10 layers (the largest group).
    kinds = tuple("full" if (i + 1) % 6 == 0 else "sliding" for i in range(62))
    plan = _plan("llama-3.1-8b", num_layers=62, layer_types=kinds, sliding_window=1024)
    layout = kv_layout(plan, 16)
    assert describe(layout) == "1 full + 6 sliding(1024)"
    per_layer = 2 * 8 * 128 * 2  # K and V, 8 KV heads of 128, bf16
    assert page_bytes_per_token(plan, 0, 16) == 10 * per_layer


def test_mistral_32k_sequences_that_fit_before_and_after() -> None:
    # Mistral-7B (every layer slides over 4,096 tokens) on one H100: a page is 16 tokens
    # of all 32 layers, the same bytes as the former per-token block, so the pool is the
    # same N pages. A 32k-token sequence held per token took 2,048 of them; its window
    # group holds ceil(4095 / 16) + 1 = 257.
    mem = plan_memory(_plan("mistral-7b"))
    assert mem.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2
    layout = kv_layout(_plan("mistral-7b"), 16)
    before, after = mem.num_kv_blocks // 2_048, mem.num_kv_blocks // layout.peak_pages(32_768)
    assert layout.peak_pages(32_768) == 257
    assert after == mem.num_kv_blocks // 257 and after >= 8 * before > 0


# short windows so that a few hundred tokens cross many of them
SHORT_WINDOWS = {
    "gpt-oss-20b": {"sliding_window": 64},  # 1 full + 1 sliding(64)
    "llama-4-scout": {"attention_chunk_tokens": 64},  # 1 full + 3 chunked(64)
    "mistral-7b": {"sliding_window": 64},  # 1 sliding(64), no full group
}


def _windowed_setup(name: str = "gpt-oss-20b", **cache: object) -> ReplicaSetup:
    model = dataclasses.replace(resolve_model(name), **SHORT_WINDOWS[name])  # type: ignore[arg-type]
    return ReplicaSetup(
        plan=ReplicaPlan(model=model, gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=96, enable_chunked_prefill=True),
        cache=CacheConfig(**cache),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", sorted(SHORT_WINDOWS))
@pytest.mark.parametrize("prefix", [False, True])
def test_engine_books_balance_with_window_frees(name: str, prefix: bool) -> None:
    """Every step recounts each sequence's pages from the layout (check_invariants): the
    group's per-tick frees, chunked prefills, preemptions and prefix hits all balance."""
    reqs = poisson_requests(60, 40.0, (20, 300), (5, 200), seed=3)
    if prefix:  # a shared 64-token head, four 16-token prefix blocks
        reqs = [dataclasses.replace(r, prefix_block_hashes=(1, 2, 3, 4)) for r in reqs]
        reqs = [dataclasses.replace(r, prefix_block_size=16) for r in reqs]
    perf = LinearPerf(num_kv_blocks=160)
    records = run(reqs, perf, _windowed_setup(name, enable_prefix_caching=prefix))
    assert_all_served(records)
    assert records.counters["num_preemptions"] > 0  # the pool was tight: frees mattered
    if prefix:  # Mistral too: its window's last blocks before the hit point are cached
        assert records.counters["prefix_cache_hit_tokens"] > 0


def test_swap_preemption_and_speculation_balance_with_windows() -> None:
    reqs = poisson_requests(40, 40.0, (20, 300), (5, 200), seed=4)
    swap = _windowed_setup(preemption_mode="swap", swap_space_bytes=2**30)
    assert_all_served(run(reqs, LinearPerf(num_kv_blocks=160), swap))
    spec = dataclasses.replace(  # a fixed pool: the fake's memory plan has no room to size
        _windowed_setup(num_kv_blocks=400),
        speculative=SpeculativeConfig(method="eagle", num_speculative_tokens=3),
    )
    assert_all_served(run(reqs, LinearPerf(num_kv_blocks=400), spec))


def test_window_pages_let_more_sequences_decode() -> None:
    """With the window's pages freed, the same pool runs long decodes with fewer
    preemptions than if every layer's KV grew with the context."""
    reqs = poisson_requests(40, 100.0, 200, 400, seed=5)
    windowed = run(reqs, LinearPerf(num_kv_blocks=400), _windowed_setup())
    assert_all_served(windowed)
    full = _windowed_setup()
    model = dataclasses.replace(full.plan.model, layer_types=("full",) * 24)
    full = dataclasses.replace(full, plan=dataclasses.replace(full.plan, model=model))
    # the same memory: 400 pages of 12 layers are 200 blocks of all 24
    plain = run(reqs, LinearPerf(num_kv_blocks=200), full)
    assert windowed.counters["num_preemptions"] < plain.counters["num_preemptions"]


@pytest.mark.parametrize(
    "layout",
    [
        KVLayout(16, 1, (WindowGroups("sliding", 64, 1),)),
        KVLayout(16, 1, (WindowGroups("sliding", 100, 2),)),  # a window off the block grid
        KVLayout(16, 1, (WindowGroups("chunked", 64, 3),)),
        KVLayout(16, 0, (WindowGroups("sliding", 48, 1), WindowGroups("chunked", 32, 1))),
    ],
)
def test_group_frees_each_tick_as_the_layout_says(layout: KVLayout) -> None:
    """The decode group's O(1) per-tick frees equal the layout's own count, member by
    member, for members joining below and beyond the window and leaving midway."""
    group = DecodeGroup(16, TokenGapSamples(), layout)
    seqs = [Seq(req(i, 0.0, prompt, 400), i) for i, prompt in enumerate((5, 63, 64, 90, 200))]
    for seq in seqs:
        seq.num_emitted = 1
        seq.status = SeqStatus.DECODING
        group.join(seq)
    for tick in range(1, 300):
        if tick == 120:  # one member leaves and joins again (its entries go stale)
            group.leave(seqs[2])
            group.join(seqs[2])
        kv_before = {s: s.num_prompt_tokens + group.emitted(s) - 1 for s in group.members}
        group.advance(float(tick))
        expected = sum(layout.freed(n, 1) for n in kv_before.values())
        assert group.freed == expected, tick
        group.check()
