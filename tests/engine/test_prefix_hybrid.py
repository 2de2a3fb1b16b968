"""Prefix hits in gpt-oss's hybrid 1 full + 1 sliding(128) pool, by hand.

vLLM V1 caches every group's blocks (keyed by hash and group id). Its
HybridKVCacheCoordinator.find_longest_cache_hit takes the full group's leading run of cached
blocks, then the sliding group's hit within it: SlidingWindowManager.find_longest_cache_hit
scans down for cdiv(128 - 1, 16) = 8 contiguous cached blocks, and the hit ends there. A
sliding page freed as the window moved on stays cached until evicted; once evicted, a later
hit shortens. Before, servesim cached the full group's pages only and took the full run.
"""

from __future__ import annotations

import dataclasses

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.blocks import KVBlockManager, hybrid_groups
from servesim.engine.config import SpeculativeConfig
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState
from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import LinearPerf, assert_all_served, prefill_whole, req, run

B = 16
GPT_OSS = KVLayout(B, 1, (WindowGroups("sliding", 128, 1),))
HEAD = list(range(100, 140))  # the keys of a 640-token head: 40 blocks


def _manager(layout: KVLayout = GPT_OSS) -> KVBlockManager:
    return KVBlockManager(1000, B, enable_prefix_caching=True, layout=layout)


def _cache(keys: list[int], window_keys: list[int]) -> KVBlockManager:
    """``keys`` cached in the full group, ``window_keys`` in the sliding group, unreferenced."""
    blocks = _manager()
    pages = keys + [k ^ blocks.window_salts[0] for k in window_keys]
    blocks.allocate(len(pages))
    for page in pages:
        assert blocks.register(page)
    blocks.deref(pages)
    return blocks


def test_groups_that_cache_every_page() -> None:
    assert hybrid_groups(GPT_OSS)
    assert _manager().window_run == 8 and _manager().window_blocks == 0
    mix = _manager(KVLayout(B, 3, (WindowGroups("sliding", 4096, 2),)))
    assert len(mix.full_salts) == 3 and len(mix.window_salts) == 2 and mix.window_run == 256
    # chunked groups (Llama 4) cache every page too (tests/engine/test_prefix_chunked.py)
    assert hybrid_groups(KVLayout(B, 1, (WindowGroups("chunked", 8192, 3),)))
    assert not hybrid_groups(
        KVLayout(B, 1, (WindowGroups("chunked", 8192, 1), WindowGroups("sliding", 128, 1)))
    )


def test_hit_needs_the_windows_last_8_blocks_cached() -> None:
    prompt = [*HEAD, 7, 8, 9]  # the head, then a tail of its own
    every = _cache(HEAD, HEAD)
    assert every.count_hits(prompt, 62) == 40  # both groups cached: the full run
    assert every.count_hits(prompt, 30) == 30  # capped (the last prompt token is computed)
    # a hit of 40 references the sliding pages of blocks 32..39 and the 40 full pages
    assert every.hit_pages(40) == 48 and every.hit_window_pages(40) == 8
    assert every.hit_keys(prompt, 40)[8:] == HEAD
    # the sliding pages of blocks 32..39 evicted: scanning down from block 39, the first
    # run of 8 cached is 31..24: a hit of 32 blocks (512 tokens); before, 40 (640)
    assert _cache(HEAD, HEAD[:32]).count_hits(prompt, 62) == 32
    # only block 35's sliding page gone: 39..36 is 4 short, 34..27 is 8: a hit of 35
    assert _cache(HEAD, HEAD[:35] + HEAD[36:]).count_hits(prompt, 62) == 35
    # a sliding run under 8 that reaches block 0 is a hit of that run
    assert _cache(HEAD, HEAD[:5]).count_hits(prompt, 62) == 5
    assert _cache(HEAD, []).count_hits(prompt, 62) == 0
    # and the full group still bounds it: full pages of 0..19 only
    assert _cache(HEAD[:20], HEAD).count_hits(prompt, 62) == 20


def test_every_group_of_a_type_must_hold_the_block() -> None:
    """2 full + 2 sliding(64) groups: a block counts for a type only when each of its groups
    caches its page (vLLM's get_cached_block over the type's group ids); the sliding run is
    cdiv(63, 16) = 4 blocks."""
    layout = KVLayout(B, 2, (WindowGroups("sliding", 64, 2),))
    keys = list(range(500, 510))
    blocks = _manager(layout)
    f0, f1 = blocks.full_salts
    w0, w1 = blocks.window_salts
    pages = [k ^ s for k in keys for s in (f0, f1, w0, w1)]
    blocks.allocate(len(pages))
    for page in pages:
        blocks.register(page)
    assert blocks.count_hits(keys, 10) == 10 and blocks.hit_pages(10) == 2 * 10 + 2 * 4
    # the second sliding group lost block 8's page: 9 is a run of 1, 7..4 a run of 4: 8
    blocks.deref([keys[8] ^ w1])
    blocks.allocate(blocks.num_free + 1)
    assert blocks.count_hits(keys, 10) == 8
    assert blocks.hit_keys(keys, 8)[:2] == [keys[4] ^ w0, keys[4] ^ w1]
    # the second full group lost block 6's page: the full run is 6; 5..2 is 4 sliding: 6
    blocks.deref([keys[6] ^ f1])
    blocks.allocate(1)
    assert blocks.count_hits(keys, 10) == 6


def _seq(i: int, prefix: list[int], prompt: int = 1000) -> Seq:
    hashes = tuple(prefix) + tuple(range(1000 * i, 1000 * i + 63 - len(prefix)))
    return Seq(req(i, 0.0, prompt, 10, prefix_block_hashes=hashes, prefix_block_size=B), i)


def _state(num_blocks: int = 1000) -> ReplicaState:
    blocks = KVBlockManager(num_blocks, B, enable_prefix_caching=True, layout=GPT_OSS)
    return ReplicaState(blocks, TokenGapSamples(), lambda name, n: None)


def _prefill(state: ReplicaState, seq: Seq) -> int:
    state.waiting.append(seq)
    return prefill_whole(state, seq)


def test_a_prompts_sliding_pages_are_cached_then_freed_as_the_window_moves() -> None:
    state = _state()
    a = _seq(1, list(range(1, 63)))
    assert _prefill(state, a) == 0
    # 1,000 tokens: 62 full prompt blocks cached in both groups; the window skipped
    # (1000 - 127) // 16 = 54 blocks: their sliding pages are freed, cached, unreferenced.
    # a holds 62 + 1 full pages and the sliding pages of 54..61 (cached) and 62: 72 pages
    assert a.num_blocks == GPT_OSS.pages(1000) == 72
    assert a.num_window_keys == 8 and len(a.block_keys) == 70 and a.num_private == 2
    assert state.blocks.num_evictable == 54
    # b shares a's whole prefix: full blocks 0..61 and sliding 61..54 cached: a hit of the
    # 62 blocks (992 tokens); 8 + 62 pages referenced, 72 - 70 = 2 new
    b = _seq(2, list(range(1, 63)))
    assert state.admission_cost(b, 8) == (992, 2)


def test_evicted_sliding_pages_shorten_a_later_hit() -> None:
    """c shares a's first 40 blocks (640 tokens). While a runs, its sliding pages of blocks
    0..53 are the pool's only evictable pages, block 53 the oldest (freed tail first, as
    vLLM's remove_skipped_blocks frees them); evicting 20 takes 53..34, so c's sliding
    hit at 40 scans down 39..34 (gone) to 33..26: 34 blocks, 544 tokens (vLLM's); the
    full-group-only hit of before was 640. Once c has run, a fourth hits 640 again."""
    state = _state()
    a = _seq(1, list(range(1, 63)))
    _prefill(state, a)
    c = _seq(3, list(range(1, 41)))
    assert state.admission_cost(c, 100)[0] == 640  # cached, though freed by a's window
    blocks = state.blocks
    other = _seq(9, [])  # a stranger takes every free page and 20 cached ones
    state.waiting.append(other)
    state.waiting.remove(other)
    state.admit(other, 0.0)
    state.allocate_chunk(other, 1, need=blocks.num_free + 20)
    assert blocks.num_evictions == 20 and blocks.num_evictable == 34
    assert state.admission_cost(c, 100)[0] == 34 * B == 544
    # c computes blocks 34..39 again: their full pages are cached already (a's), so c's
    # stay private (vLLM caches a second block of the hash), but their sliding pages are
    # cached anew, so the next request with that head hits all 40 blocks again
    state.finish(other)
    assert _prefill(state, c) == 544
    d = _seq(4, list(range(1, 41)))
    assert state.admission_cost(d, 100)[0] == 640


def test_engine_run_of_gpt_oss_with_a_shared_prefix() -> None:
    """One request at a time, each after the last finished, on a pool with room to spare:
    every one after the first hits the 62 shared blocks (992 tokens); books recounted."""
    reqs = [_seq(i, list(range(1, 63))).request for i in range(5)]
    reqs = [dataclasses.replace(r, arrival_s=10.0 * r.request_id) for r in reqs]
    setup = ReplicaSetup(
        plan=ReplicaPlan(model=resolve_model("gpt-oss-20b"), gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=512, enable_chunked_prefill=True),
        cache=CacheConfig(enable_prefix_caching=True),
    )
    records = run(reqs, LinearPerf(num_kv_blocks=2000), setup)
    assert_all_served(records)
    assert records.counters["prefix_cache_hit_tokens"] == 4 * 992


def test_engine_run_with_speculation_pressure_and_preemption_keeps_the_books() -> None:
    """Shared heads, long outputs (the window moves past the prompt's cached sliding pages
    while decoding), EAGLE speculation and a pool small enough to evict and preempt: every
    request is served and the books balance every step (check_invariants)."""
    reqs = []
    for i in range(40):
        shared = (0, 10, 40)[i % 3]
        reqs.append(
            dataclasses.replace(
                _seq(i, list(range(1, shared + 1)), prompt=900 + 7 * i).request,
                arrival_s=0.05 * i,
                num_output_tokens=150 + 5 * i,
            )
        )
    setup = ReplicaSetup(
        plan=ReplicaPlan(model=resolve_model("gpt-oss-20b"), gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=512, enable_chunked_prefill=True),
        cache=CacheConfig(enable_prefix_caching=True, num_kv_blocks=700),
        speculative=SpeculativeConfig(method="eagle", num_speculative_tokens=3),
    )
    records = run(reqs, LinearPerf(), setup)
    assert_all_served(records)
    assert records.counters["num_preemptions"] > 0
    assert records.counters["prefix_cache_evictions"] > 0
    assert records.counters["prefix_cache_hit_tokens"] > 0
