"""Prefix hits in gpt-oss's hybrid 1 full + 1 sliding(128) pool, for a hand-built cache.

vLLM's HybridKVCacheCoordinator.find_longest_cache_hit takes the full group's hit, then the
sliding group's on that length (its last cdiv(127, 16) = 8 blocks). Here the full group's
cached blocks make the hit; the sliding group's 8 window pages at the hit point are taken
fresh, so the pages in use are vLLM's count (docs/kv-layout.md).
"""

from __future__ import annotations

from servesim.engine.blocks import KVBlockManager
from servesim.perf.kv_layout import KVLayout, WindowGroups

GPT_OSS = KVLayout(16, 1, (WindowGroups("sliding", 128, 1),))


def _cache(keys: list[int]) -> KVBlockManager:
    blocks = KVBlockManager(1000, 16, enable_prefix_caching=True, layout=GPT_OSS)
    blocks.allocate(len(keys))
    for key in keys:
        assert blocks.register(key)
    blocks.deref(keys)  # the first sequence left: its blocks stay cached, unreferenced
    return blocks


def test_hit_is_the_leading_run_of_cached_full_blocks() -> None:
    blocks = _cache(list(range(100, 140)))  # 40 blocks of a 640-token head
    assert blocks.enable_prefix_caching and blocks.window_blocks == 0
    prompt = [*range(100, 140), 7, 8, 9]  # same head, a new tail
    assert blocks.count_hits(prompt, 62) == 40
    assert blocks.count_hits(prompt, 30) == 30  # capped (the last prompt token is computed)
    assert blocks.count_hits([100, 101, 999, 103], 4) == 2  # a miss ends the hit
    assert blocks.hit_pages(40) == 40 and blocks.num_reactivations(prompt[:40]) == 40


def test_pages_a_hit_admission_takes_by_hand() -> None:
    # a 1,000-token prompt hitting 40 blocks (640 tokens): computing 640..1000 holds
    # 2 * 63 pages - (640 - 127) // 16 = 32 skipped sliding pages = 94, of which the 40 cached
    # full pages are the hit: 54 new (23 full + 23 sliding + the window's 8 at the hit point).
    # vLLM: 23 + 23 new, 40 + 8 cached referenced: 94 in use too.
    assert GPT_OSS.step_pages(640, 360) == 94
    assert GPT_OSS.step_pages(640, 360) - 40 == 23 + 23 + 8
