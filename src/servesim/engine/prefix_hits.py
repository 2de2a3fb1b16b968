"""The longest prefix-cache hit of each pool kind, as vLLM V1 finds it (``KVBlockManager.
count_hits`` picks the rule; these scan the cached keys).

``refs`` maps a cached page's key to its references; page ``g`` of prompt block ``j`` is keyed
``keys[j] ^ salt_g`` (engine/blocks.py). Hits are in blocks. The rules (vllm/v1/core/
single_type_kv_cache_manager.py, kv_cache_coordinator.py):

- full attention (``FullAttentionManager.find_longest_cache_hit``): the leading run of blocks
  cached in every full group;
- sliding window (``SlidingWindowManager``): scanning down from the last block, the first run
  of ``cdiv(W - 1, block)`` cached blocks ends the hit (the blocks before it are outside the
  window); a shorter run reaching block 0 is a hit of that run;
- chunked local attention (``ChunkedLocalAttentionManager``): the blocks before the chunk the
  hit point lies in are not needed (vLLM hands out null blocks for them); from the chunk's
  first block on, the leading run cached;
- a pool of full groups and one other type (``HybridKVCacheCoordinator``, its "simple hybrid":
  one pass): the full groups' run bounds the hit, the other type's rule runs within it.

EAGLE-style speculation (``use_eagle``, vLLM's ``SpeculativeConfig.use_eagle()``: the eagle,
eagle3 and mtp methods, not a draft model) drops the last matched block so that its tokens are
recomputed and the head gets their hidden states: the full rule drops it; the sliding rule asks
for one more contiguous block, then drops it (so the hit still ends at a window's run). In the
hybrid pass each type drops once per candidate length and the sliding type may look one block
past the full groups' dropped hit (``eagle_margin``), so the drop is taken once, not twice
(vLLM issue #32802). Chunked local attention with EAGLE has no rule in vLLM (it asserts; its
``VllmConfig`` turns the hybrid manager off for it): ``KVBlockManager`` keeps the full-group
rule for such a pool.
"""

from __future__ import annotations


def full_run(refs: dict[int, int], keys: list[int], max_blocks: int, salts: tuple[int, ...]) -> int:
    """Leading blocks of ``keys`` (at most ``max_blocks``) cached in every group of ``salts``."""
    num = 0
    if len(salts) == 1 and salts[0] == 0:
        for key in keys[:max_blocks]:
            if key not in refs:
                break
            num += 1
        return num
    for key in keys[:max_blocks]:
        if any(key ^ s not in refs for s in salts):
            break
        num += 1
    return num


def window_run_end(
    refs: dict[int, int], keys: list[int], end: int, run: int, salts: tuple[int, ...]
) -> int:
    """Scanning blocks ``end - 1`` down to 0, where the first run of ``run`` blocks cached in
    every group of ``salts`` ends; the length of a shorter run reaching block 0 if none."""
    found = 0
    for i in range(min(end, len(keys)) - 1, -1, -1):
        key = keys[i]
        if any(key ^ s not in refs for s in salts):
            found = 0
            continue
        found += 1
        if found >= run:
            return i + found
    return found


def chunk_run_end(
    refs: dict[int, int], keys: list[int], end: int, chunk: int, salts: tuple[int, ...]
) -> int:
    """The hit of chunked-local groups within ``end`` blocks: the blocks before the chunk of
    ``chunk`` blocks holding the hit point count as cached; from that chunk's first block, the
    leading run cached in every group of ``salts``."""
    num = end - end % chunk
    end = min(end, len(keys))
    while num < end and all(keys[num] ^ s in refs for s in salts):
        num += 1
    return num


def sliding_hit(
    refs: dict[int, int], keys: list[int], max_blocks: int, run: int, eagle: bool
) -> int:
    """A pool of one sliding group over every layer (``SlidingWindowManager`` alone)."""
    if not eagle:
        return window_run_end(refs, keys, max_blocks, run, (0,))
    return max(window_run_end(refs, keys, max_blocks, run + 1, (0,)) - 1, 0)


def hybrid_hit(
    refs: dict[int, int],
    keys: list[int],
    max_blocks: int,
    full: tuple[int, ...],
    window: tuple[int, ...],
    run: int,
    eagle: bool,
) -> int:
    """Full groups ``full`` and sliding groups ``window`` (``run``: ``cdiv(W - 1, block)``).

    With ``eagle`` the full groups' run ``r`` drops to ``r - 1``; the sliding groups then search
    up to ``r - 1`` plus the one-block margin, i.e. within ``r`` blocks, for ``run + 1``
    contiguous blocks and drop the last (``SlidingWindowManager.find_longest_cache_hit`` with
    ``use_eagle``)."""
    num = full_run(refs, keys, max_blocks, full)
    if not eagle:
        return window_run_end(refs, keys, num, run, window)
    return max(window_run_end(refs, keys, num, run + 1, window) - 1, 0)


def chunk_hybrid_hit(
    refs: dict[int, int],
    keys: list[int],
    max_blocks: int,
    full: tuple[int, ...],
    window: tuple[int, ...],
    chunk: int,
) -> int:
    """Full groups ``full`` and chunked-local groups ``window`` (chunks of ``chunk`` blocks):
    the chunk rule within the full groups' run (``ChunkedLocalAttentionManager.
    find_longest_cache_hit`` with ``max_length`` the full hit)."""
    return chunk_run_end(refs, keys, full_run(refs, keys, max_blocks, full), chunk, window)
