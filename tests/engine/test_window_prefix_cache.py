"""Prefix caching of a pool whose one group slides over every layer (Mistral-7B v0.1): a
hit needs the window's last blocks before the hit point cached, contiguously (vLLM V1's
``SlidingWindowManager.find_longest_cache_hit``); blocks the window left may be gone."""

from __future__ import annotations

import dataclasses

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig
from servesim.engine.blocks import KVBlockManager
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState
from servesim.perf.kv_layout import KVLayout, WindowGroups
from servesim.perf.types import ReplicaPlan
from servesim.specs import get_gpu, resolve_model
from tests.engine.fakes import LinearPerf, assert_all_served, prefill_whole, req, run

B = 16
WINDOW = KVLayout(B, 0, (WindowGroups("sliding", 4096, 1),))  # cdiv(4095, 16) = 256 blocks
PROMPT = 8192 + 100  # a shared 8k prefix (512 blocks) and 100 tokens of its own


def _manager(num_blocks: int = 4000) -> KVBlockManager:
    return KVBlockManager(num_blocks, B, enable_prefix_caching=True, layout=WINDOW)


def _cached(keys: list[int]) -> KVBlockManager:
    blocks = _manager()
    blocks.allocate(len(keys))
    for key in keys:
        blocks.register(key)
    return blocks


def test_window_hit_needs_the_last_window_blocks_before_the_hit_point() -> None:
    keys = list(range(1000, 1512))
    blocks = _cached(keys[256:])  # only blocks 256..511 cached: blocks 0..255 were evicted
    assert blocks.window_blocks == 256
    # scanning down from block 511: 256 cached blocks by block 256, a hit of all 512
    assert blocks.count_hits(keys, 518) == 512
    assert blocks.hit_keys(keys, 512) == keys[256:] and blocks.hit_pages(512) == 256
    # all cached but block 300: the run 511..301 (211 blocks) is short; 299..44 is 256
    blocks = _cached(keys)
    blocks.deref([keys[300]])
    blocks.allocate(blocks.num_free + 1)  # evicts the one unreferenced block, key 300
    assert blocks.count_hits(keys, 518) == 300
    assert blocks.hit_keys(keys, 300) == keys[44:300]
    # a run under the window that reaches block 0 is a hit of that run (a short prompt)
    assert _cached(keys[:10]).count_hits(keys, 518) == 10
    assert _cached(keys[1:10]).count_hits(keys, 518) == 0  # block 0 missing: no hit


def _seq(i: int, prefix: tuple[int, ...]) -> Seq:
    hashes = prefix + (100 + i,) * 7  # 7 more prefix blocks of its own (its last 100 tokens)
    return Seq(req(i, 0.0, PROMPT, 10, prefix_block_hashes=hashes, prefix_block_size=B), i)


_prefill = prefill_whole


def test_shared_8k_prefix_with_a_4096_window_hits_8192_tokens() -> None:
    state = ReplicaState(_manager(), TokenGapSamples(), lambda name, n: None)
    prefix = tuple(range(1, 513))  # 512 shared 16-token prefix blocks = 8192 tokens
    a, b = _seq(1, prefix), _seq(2, prefix)
    state.waiting.extend([a, b])
    assert _prefill(state, a) == 0
    # a computed 8292 tokens (519 pages), cached its 518 full prompt blocks, and the
    # window freed (8292 - 4095) // 16 = 262 of them (cached, unreferenced): it holds
    # blocks 262..517 and its partial last page, 257
    assert a.num_blocks == WINDOW.pages(PROMPT) == 519 - 262 == 257
    assert state.blocks.num_evictable == 262
    # b: blocks 511 down to 256 are cached (256 = cdiv(4095, 16)): a hit of 512 blocks,
    # 8192 tokens; it references blocks 256..511, 6 of them (256..261) unreferenced so far.
    # Its first chunk, tokens 8192..8291, needs 519 - 256 skipped - 256 held = 7 pages.
    assert state.admission_cost(b, 100) == (8192, 7 + 6)
    assert _prefill(state, b) == 8192
    # b cached its own blocks 512..517 and the window freed 262 - 256 = 6 (256..261, back to
    # unreferenced): referenced now 262..511 (shared) and each one's own 6 blocks
    assert b.num_blocks == 257
    assert state.blocks.num_cached_in_use == 250 + 6 + 6
    assert state.blocks.num_evictable == 262


def test_partly_shared_prefix_hits_where_its_window_run_ends() -> None:
    state = ReplicaState(_manager(), TokenGapSamples(), lambda name, n: None)
    a = _seq(1, tuple(range(1, 513)))
    c = _seq(3, tuple(range(1, 376)) + tuple(range(900, 1037)))  # shares 375 blocks: 6000
    state.waiting.extend([a, c])
    _prefill(state, a)
    # c's blocks 375.. differ; 374 down to 119 is a run of 256: a hit of 375 blocks
    assert state.admission_cost(c, 2292)[0] == 375 * B == 6000


def test_engine_run_of_mistral_hits_the_shared_8k_prefix() -> None:
    """One request at a time, each after the last finished: all but the first hit the
    8192 shared tokens (their books recounted every step); before, none hit."""
    reqs = [_seq(i, tuple(range(1, 513))).request for i in range(6)]
    reqs = [dataclasses.replace(r, arrival_s=10.0 * r.request_id) for r in reqs]
    setup = ReplicaSetup(
        plan=ReplicaPlan(model=resolve_model("mistral-7b"), gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(max_num_batched_tokens=2048, enable_chunked_prefill=True),
        cache=CacheConfig(enable_prefix_caching=True),
    )
    records = run(reqs, LinearPerf(num_kv_blocks=2000), setup)
    assert_all_served(records)
    assert records.counters["prefix_cache_hit_tokens"] == 5 * 8192
