"""EAGLE-style speculation drops a prefix hit's last block, by hand.

vLLM (vllm/v1/core/single_type_kv_cache_manager.py, ``use_eagle``): the head drafts from the
target's hidden states, which the cache does not keep, so the last matched block is
recomputed. FullAttentionManager.find_longest_cache_hit pops the last matched block;
SlidingWindowManager asks for cdiv(W - 1, block) + 1 contiguous blocks, then pops one; in the
HybridKVCacheCoordinator each type drops once for a candidate length (kv_cache_coordinator.py,
``eagle_margin``; vLLM issue #32802). ``use_eagle`` is SpeculativeConfig.use_eagle(): the
eagle, eagle3 and mtp methods; a draft model keeps the whole hit.
"""

from __future__ import annotations

import pytest

from servesim.engine import CacheConfig, ReplicaSetup, VLLMSchedulerConfig, run_simulation
from servesim.engine.blocks import KVBlockManager
from servesim.engine.config import SpeculativeConfig
from servesim.perf.kv_layout import KVLayout, WindowGroups
from tests.engine.fakes import LinearPerf, assert_all_served, plan, req, shared_head_requests

B = 16
KEYS = list(range(100, 140))  # 40 prompt blocks


def _cache(layout: KVLayout, eagle: bool, full: list[int], window: list[int]) -> KVBlockManager:
    """Blocks ``full`` cached in the full groups (or the one group), ``window`` in the
    sliding groups of a full + sliding pool."""
    blocks = KVBlockManager(1000, B, enable_prefix_caching=True, layout=layout, use_eagle=eagle)
    pages = [KEYS[j] ^ s for j in full for s in blocks.full_salts]
    pages += [KEYS[j] ^ s for j in window for s in blocks.window_salts]
    blocks.allocate(len(pages))
    for page in pages:
        assert blocks.register(page)
    return blocks


def test_a_plain_pool_drops_the_last_matched_block() -> None:
    plain = KVLayout(B)
    assert _cache(plain, False, list(range(10)), []).count_hits(KEYS, 39) == 10
    assert _cache(plain, True, list(range(10)), []).count_hits(KEYS, 39) == 9
    assert _cache(plain, True, list(range(10)), []).count_hits(KEYS, 4) == 3  # capped, dropped
    assert _cache(plain, True, [0], []).count_hits(KEYS, 39) == 0
    assert _cache(plain, True, [], []).count_hits(KEYS, 39) == 0


def test_one_sliding_group_asks_for_one_more_block_then_drops_it() -> None:
    """W = 64: cdiv(63, 16) = 4 contiguous blocks, 5 under EAGLE."""
    one = KVLayout(B, 0, (WindowGroups("sliding", 64, 1),))
    every = list(range(10))
    assert _cache(one, False, every, []).count_hits(KEYS, 10) == 10
    assert _cache(one, True, every, []).count_hits(KEYS, 10) == 9
    # block 8 missing: 7..4 is a run of 4 (a hit of 8); under EAGLE 7..3 (5), dropped: 7
    gap = [0, 1, 2, 3, 4, 5, 6, 7, 9]
    assert _cache(one, False, gap, []).count_hits(KEYS, 10) == 8
    assert _cache(one, True, gap, []).count_hits(KEYS, 10) == 7
    # block 3 missing too: 7..4 is 4 < 5, and 2..0 reaches block 0 with 3: 3 - 1 = 2
    gap = [0, 1, 2, 4, 5, 6, 7, 9]
    assert _cache(one, False, gap, []).count_hits(KEYS, 10) == 8
    assert _cache(one, True, gap, []).count_hits(KEYS, 10) == 2


def test_full_and_sliding_groups_drop_once() -> None:
    """gpt-oss's 1 full + 1 sliding(128): 8 contiguous sliding blocks, 9 under EAGLE."""
    gpt_oss = KVLayout(B, 1, (WindowGroups("sliding", 128, 1),))
    every = list(range(40))
    assert _cache(gpt_oss, False, every, every).count_hits(KEYS, 40) == 40
    # the full run 40 drops to 39; the sliding groups look within 39 + 1 blocks for 9:
    # 39..31, dropped: 39 (vLLM before issue #32802 dropped twice: 38)
    assert _cache(gpt_oss, True, every, every).count_hits(KEYS, 40) == 39
    # block 39's sliding page missing: 38..31 makes 39 without EAGLE; 38..30, dropped: 38
    assert _cache(gpt_oss, False, every, every[:39]).count_hits(KEYS, 40) == 39
    assert _cache(gpt_oss, True, every, every[:39]).count_hits(KEYS, 40) == 38
    # the full groups bound it: full pages 0..19; 19..11 dropped to 19 (no EAGLE: 20)
    assert _cache(gpt_oss, True, every[:20], every).count_hits(KEYS, 40) == 19
    # a sliding run reaching block 0 shorter than 9: 5 blocks, dropped: 4
    assert _cache(gpt_oss, True, every, every[:5]).count_hits(KEYS, 40) == 4
    assert _cache(gpt_oss, True, [], every).count_hits(KEYS, 40) == 0


def _hit_tokens(speculative: SpeculativeConfig | None) -> int:
    """Five requests one after another sharing a 62-block (992-token) head of 1,000-token
    prompts (the last token is always computed: at most 62 blocks hit)."""
    hashes = tuple(range(1, 63))
    reqs = [
        req(i, 10.0 * i, 1000, 20, prefix_block_hashes=hashes, prefix_block_size=B)
        for i in range(5)
    ]
    setup = ReplicaSetup(
        plan=plan(),
        scheduler=VLLMSchedulerConfig(version="v1"),
        cache=CacheConfig(enable_prefix_caching=True, num_kv_blocks=2000),
        speculative=speculative,
    )
    for skip_ahead in (True, False):
        records = run_simulation(
            reqs, [setup], LinearPerf(), skip_ahead=skip_ahead, check_invariants=True
        )
        assert_all_served(records)
        hits = records.counters["prefix_cache_hit_tokens"]
        if skip_ahead:
            first = hits
        assert hits == first  # skip-ahead on and off alike
    return int(hits)


@pytest.mark.parametrize(
    ("method", "expected"),
    [("eagle", 4 * 61 * B), ("eagle3", 4 * 61 * B), ("mtp", 4 * 61 * B), ("draft", 4 * 62 * B)],
)
def test_engine_hits_under_each_speculative_method(method: str, expected: int) -> None:
    draft = "llama-3.2-1b" if method == "draft" else None
    config = SpeculativeConfig(method=method, num_speculative_tokens=2, draft_model=draft)
    assert _hit_tokens(config) == expected  # 976 tokens a request under EAGLE-style heads
    assert _hit_tokens(None) == 4 * 62 * B


def test_gpt_oss_under_eagle_keeps_its_books() -> None:
    """Shared heads and EAGLE on gpt-oss's hybrid pool: served, books balanced every step."""
    from servesim.perf.types import ReplicaPlan
    from servesim.specs import get_gpu, resolve_model

    reqs = shared_head_requests(30, 0.05, (0, 20, 50), (900, 7), (100, 5), B)
    setup = ReplicaSetup(
        plan=ReplicaPlan(model=resolve_model("gpt-oss-20b"), gpu=get_gpu("h100-sxm")),
        scheduler=VLLMSchedulerConfig(version="v1", max_num_batched_tokens=512),
        cache=CacheConfig(enable_prefix_caching=True, num_kv_blocks=700),
        speculative=SpeculativeConfig(method="eagle", num_speculative_tokens=3),
    )
    runs = [
        run_simulation(reqs, [setup], LinearPerf(), skip_ahead=s, check_invariants=True)
        for s in (True, False)
    ]
    for records in runs:
        assert_all_served(records)
        assert records.counters["prefix_cache_hit_tokens"] > 0
    a, b = (r.requests.view() for r in runs)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
