"""Prefix hits in a full + chunked-local pool (Llama 4: 1 full + 3 chunked groups), by hand.

vLLM V1 caches every group's pages (keyed by hash and group id). Its
HybridKVCacheCoordinator.find_longest_cache_hit (one full and one other type: one pass) takes
the full groups' leading run of cached blocks, then ChunkedLocalAttentionManager.
find_longest_cache_hit within it: the blocks before the chunk holding the hit point are
"computed" (null blocks: no chunked layer reads them), and from that chunk's first block the
leading run cached in every chunked group ends the hit. A chunk's pages are freed when the
next chunk starts (remove_skipped_blocks, get_num_skipped_tokens = n // chunk * chunk), still
cached. Before, servesim cached the full group's pages only, took the full run as the hit and
allocated the chunk pages at the hit point afresh. Chunks of 64 tokens (4 blocks) here, so
the numbers stay small; Llama 4's are 8,192 (512 blocks).
"""

from __future__ import annotations

import dataclasses

import pytest

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig, run_simulation
from servesim.engine.blocks import KVBlockManager
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState
from servesim.perf.kv_groups import describe, kv_layout
from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import LinearPerf, assert_all_served, prefill_whole, req

B = 16
LLAMA4 = KVLayout(B, 1, (WindowGroups("chunked", 64, 3),))  # chunks of 4 blocks
KEYS = list(range(100, 110))  # 10 prompt blocks


def _cache(full: list[int], chunk: list[int]) -> KVBlockManager:
    """Full pages of blocks ``full`` and every chunked group's pages of ``chunk`` cached."""
    blocks = KVBlockManager(1000, B, enable_prefix_caching=True, layout=LLAMA4)
    pages = [KEYS[j] for j in full]
    pages += [KEYS[j] ^ s for j in chunk for s in blocks.window_salts]
    blocks.allocate(len(pages))
    for page in pages:
        assert blocks.register(page)
    blocks.deref(pages)
    return blocks


def test_the_hit_needs_the_chunk_of_the_hit_point_only() -> None:
    every = _cache(list(range(10)), list(range(10)))
    assert every.window_chunk == 4 and len(every.window_salts) == 3
    assert every.count_hits(KEYS, 10) == 10
    # a hit of 10 blocks references the chunk pages of blocks 8, 9 (its chunk starts at
    # 10 - 10 % 4 = 8), 3 groups each, and the 10 full pages: 16
    assert every.hit_pages(10) == 16 and every.hit_window_pages(10) == 6
    assert every.hit_keys(KEYS, 10)[6:] == KEYS
    assert every.hit_keys(KEYS, 10)[:3] == [KEYS[8] ^ s for s in every.window_salts]
    # the chunk pages of blocks 0..7 evicted: not needed, still 10 (before: 10 as well)
    assert _cache(list(range(10)), [8, 9]).count_hits(KEYS, 10) == 10
    # block 9's chunk pages evicted: the run from block 8 stops at 9 (before: 10)
    assert _cache(list(range(10)), list(range(9))).count_hits(KEYS, 10) == 9
    # blocks 8 and 9's gone: a hit of 8, at a chunk boundary, reads no chunk page
    hit8 = _cache(list(range(10)), list(range(8)))
    assert hit8.count_hits(KEYS, 10) == 8 and hit8.hit_pages(8) == 8
    # one chunked group lost block 9's page: the block counts in no chunked group
    one = _cache(list(range(10)), list(range(10)))
    one.allocate(one.num_free + 1)  # evicts the page freed first: block 9's, group 2
    assert KEYS[9] ^ one.window_salts[2] not in one._refs
    assert one.count_hits(KEYS, 10) == 9
    # the full groups bound it: full pages 0..5 only; the chunk of block 5 starts at 4
    assert _cache(list(range(6)), list(range(10))).count_hits(KEYS, 10) == 6
    assert _cache(list(range(6)), [0, 1, 2, 3, 5]).count_hits(KEYS, 10) == 4
    # and the last prompt token is always computed: at most 7 blocks of a 7-block cap
    assert every.count_hits(KEYS, 7) == 7 and every.hit_window_pages(7) == 9


def _seq(i: int, shared: int, prompt: int) -> Seq:
    hashes = tuple(range(1, shared + 1)) + tuple(range(1000 * i, 1000 * i + 25 - shared))
    return Seq(req(i, 0.0, prompt, 10, prefix_block_hashes=hashes, prefix_block_size=B), i)


def _state() -> ReplicaState:
    blocks = KVBlockManager(1000, B, enable_prefix_caching=True, layout=LLAMA4)
    return ReplicaState(blocks, TokenGapSamples(), lambda name, n: None)


def test_a_prompts_chunk_pages_are_cached_then_freed_chunk_by_chunk() -> None:
    state = _state()
    a = _seq(1, 10, 170)
    state.waiting.append(a)
    assert prefill_whole(state, a) == 0
    # 170 tokens, 10 cacheable blocks: 11 rows; the chunk skipped 170 // 64 * 64 = 128
    # tokens, 8 blocks: their 24 chunk pages are freed (cached, evictable); a holds the full
    # pages of 0..9 (cached) and 10 (private), the chunk pages of 8, 9 (cached) and 10
    assert a.num_blocks == LLAMA4.pages(170) == 11 + 3 * 3
    assert a.num_window_keys == 6 and len(a.block_keys) == 16 and a.num_private == 4
    assert state.blocks.num_evictable == 24
    # b shares a's 10 blocks (160 tokens) and has 15 of its own: the full run is 10, its
    # chunk starts at block 8, whose chunk pages a holds: a hit of 10 blocks (160 tokens).
    # A first chunk of 100 tokens (to 260) holds 17 full + 3 x (17 - 8) chunk pages = 44,
    # the hit's 16 referenced: 28 new (before, 34: the chunk pages of 8, 9 taken afresh)
    b = _seq(2, 10, 400)
    assert state.admission_cost(b, 100) == (160, 28)


def test_preempted_and_finished_pages_return_to_the_cache() -> None:
    state = _state()
    a = _seq(1, 10, 170)
    state.waiting.append(a)
    prefill_whole(state, a)
    state.finish(a)
    state.check()
    # every page of a's 10 cached blocks is evictable: 10 full + 30 chunk
    assert state.blocks.num_evictable == 40 and state.blocks.num_used == 0
    # evicting 24 takes the chunk pages of blocks 7..0 (freed first, tail first): a later
    # hit does not need them, still 10 blocks; the next eviction takes block 9's full page
    other = _seq(9, 0, 16)
    state.waiting.append(other)
    state.waiting.remove(other)
    state.admit(other, 0.0)
    blocks = state.blocks
    state.allocate_chunk(other, 1, need=blocks.num_free + 24)
    c = _seq(3, 10, 400)
    assert state.admission_cost(c, 100)[0] == 160
    state.allocate_chunk(other, 1, need=1)
    assert state.admission_cost(c, 100)[0] == 9 * B  # block 9's full page gone


def test_llama4_scouts_groups() -> None:
    plan = ReplicaPlan(model=resolve_model("llama-4-scout"), gpu=get_gpu("h100-sxm"))
    assert describe(kv_layout(plan, 16)) == "1 full + 3 chunked(8192)"
    blocks = KVBlockManager(100, 16, enable_prefix_caching=True, layout=kv_layout(plan, 16))
    assert blocks.window_chunk == 512 and blocks.window_run == 0
    # under EAGLE vLLM has no chunked rule (it asserts; VllmConfig turns the hybrid manager
    # off): the full-group rule is kept, with the last block dropped
    eagle = KVBlockManager(
        100, 16, enable_prefix_caching=True, layout=kv_layout(plan, 16), use_eagle=True
    )
    assert eagle.window_chunk == 0 and eagle.window_page_salts == ()


def _requests() -> list:  # type: ignore[type-arg]
    out = []
    for i in range(50):
        shared = (0, 12, 20)[i % 3]
        r = _seq(i, shared, 300 + 3 * i).request
        out.append(dataclasses.replace(r, arrival_s=0.05 * i, num_output_tokens=60 + 4 * i))
    return out


def _run(skip_ahead: bool) -> dict[str, object]:
    model = dataclasses.replace(resolve_model("llama-4-scout"), attention_chunk_tokens=64)
    setup = ReplicaSetup(
        plan=ReplicaPlan(model=model, gpu=get_gpu("h100-sxm"), tp=8),
        scheduler=VLLMSchedulerConfig(version="v1", max_num_batched_tokens=512),
        cache=CacheConfig(enable_prefix_caching=True, num_kv_blocks=700),
    )
    records = run_simulation(
        _requests(), [setup], LinearPerf(), skip_ahead=skip_ahead, check_invariants=True
    )
    assert_all_served(records)
    out: dict[str, object] = {k: v for k, v in records.counters.items() if "skipped" not in k}
    for key, column in records.requests.view().items():
        out[key] = column.tobytes()
    return out


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_engine_run_with_chunk_pages_under_pressure(skip_ahead: bool) -> None:
    out = _run(skip_ahead)
    assert out["prefix_cache_hit_tokens"] and out["prefix_cache_evictions"]


def test_skip_ahead_on_and_off_are_identical() -> None:
    assert _run(True) == _run(False)
