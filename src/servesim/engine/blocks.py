"""Paged KV-cache accounting for one scheduler (vLLM's block manager, by counts).

Blocks a sequence owns alone (partial prompt blocks, decode blocks) are counted, not named;
only full prompt blocks that may be shared carry identity, as a 64-bit key chained over the
prompt's prefix-block ids (vLLM hashes a block by its tokens and its parent block's hash).
Shared blocks are ref-counted; cached blocks nobody references stay resident and, when a new
block is needed, an ``EvictionPolicy`` picks which of them to drop: ``lru`` (the default,
vLLM's prefix-cache evictor) or ``lfu`` (least frequently used with dynamic aging), or a user's
class named ``path/to/file.py:ClassName`` (``cache.eviction``). The manager keeps the counts;
the policy only orders the evictable keys.

A pool of full and sliding-window groups (gpt-oss), or of full and chunked-local groups
(Llama 4), caches every group's pages: page ``g`` of prompt block ``j`` is keyed
``key_j ^ salt_g`` (vLLM keys a cached block by its hash and its group id,
``BlockHashWithGroupId``), so a window group's pages, freed as the window slides past them
(or the chunk ends), are evicted on their own and can shorten a later hit (``count_hits``;
the rules are engine/prefix_hits.py's).

Invariant (``check``): free + used + cached_evictable == total, where ``used`` counts private
blocks and referenced cached blocks once each.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from servesim.engine.contracts import ContractError, KVCapacityError
from servesim.engine.eviction import make_eviction
from servesim.engine.prefix_hits import chunk_hybrid_hit, full_run, hybrid_hit, sliding_hit
from servesim.perf.kv_groups import vllm_block_size
from servesim.perf.kv_layout import KVLayout

if TYPE_CHECKING:
    from servesim.engine.setup import ReplicaSetup

_MASK = (1 << 64) - 1


def mix64(parent: int, value: int) -> int:
    """A deterministic 64-bit chain hash (splitmix64 finaliser; never Python's salted hash)."""
    z = (parent * 0x9E3779B97F4A7C15 + value + 0x632BE59BD9B4E019) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


#: what a page of group ``g`` of a hybrid pool XORs into its block's key (group 0: the key
#: itself, so a pool of one group keys its pages as before)
_GROUP_SALTS = (0, *(mix64(0x6B76, g) for g in range(1, 257)))


def prompt_block_keys(
    prefix_block_hashes: tuple[int, ...],
    prefix_block_size: int,
    num_prompt_tokens: int,
    block_size: int,
) -> list[int]:
    """Keys of the prompt's full KV blocks whose content the prefix ids pin down.

    KV block ``j`` covers tokens ``[j*B, (j+1)*B)``; its content depends on every token before
    its end, i.e. on prefix blocks ``0..q`` with ``q = ((j+1)*B - 1) // prefix_block_size``.
    The key chains those ids and ``j`` (several KV blocks may fall inside one prefix block).
    """
    if not prefix_block_hashes or prefix_block_size <= 0:
        return []
    covered = min(num_prompt_tokens, len(prefix_block_hashes) * prefix_block_size)
    keys: list[int] = []
    chain = 0
    chained_upto = -1
    for j in range(covered // block_size):
        q = ((j + 1) * block_size - 1) // prefix_block_size
        while chained_upto < q:
            chained_upto += 1
            chain = mix64(chain, prefix_block_hashes[chained_upto])
        keys.append(mix64(chain, j))
    return keys


class KVBlockManager:
    """Counts of free, private, shared-cached and evictable KV blocks, plus host swap space."""

    __slots__ = (
        "_add",
        "_evict",
        "_refs",
        "_reuse",
        "block_size",
        "enable_prefix_caching",
        "eviction",
        "full_salts",
        "layout",
        "num_blocks",
        "num_cached_in_use",
        "num_evictable",
        "num_evictions",
        "num_free",
        "num_private",
        "num_swap_blocks",
        "num_swap_used",
        "num_watermark_blocks",
        "use_eagle",
        "window_blocks",
        "window_chunk",
        "window_page_salts",
        "window_run",
        "window_salts",
    )

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        *,
        watermark: float = 0.01,
        enable_prefix_caching: bool = False,
        num_swap_blocks: int = 0,
        eviction: str = "lru",
        layout: KVLayout | None = None,
        use_eagle: bool = False,
    ) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.layout = layout = layout or KVLayout(block_size)
        # vLLM's use_eagle (EAGLE-style speculation): a hit drops its last block
        self.use_eagle = use_eagle
        enable_prefix_caching = self._cache_mode(layout, enable_prefix_caching)
        # vLLM: watermark_blocks = int(watermark * num_gpu_blocks), kept free on admission.
        self.num_watermark_blocks = int(watermark * num_blocks)
        self.enable_prefix_caching = enable_prefix_caching
        self.num_free = num_blocks
        self.num_private = 0
        self.num_cached_in_use = 0
        self.num_evictions = 0
        self._refs: dict[int, int] = {}  # cached key -> references (0: evictable)
        self.num_evictable = 0  # cached blocks no sequence references (for future hits)
        self.eviction = eviction
        policy = make_eviction(eviction)
        # bound once: these run per cached block on the hot path
        self._add = policy.add
        self._reuse = policy.reuse
        self._evict = policy.evict
        self.num_swap_blocks = num_swap_blocks
        self.num_swap_used = 0

    def _cache_mode(self, layout: KVLayout, enable: bool) -> bool:
        """How the layout's pages are cached (sets ``window_blocks``, ``window_run``,
        ``window_chunk`` and the group salts); returns whether prefix caching stays on.

        Blocks are pages of the layout's KV cache groups (perf/kv_layout.py). A plain pool
        caches one page per prompt block. A model whose one group slides over every layer
        (Mistral-7B v0.1) caches its own pages: a hit needs only the window's last blocks
        before the hit point (``window_blocks``, vLLM's ``SlidingWindowManager.
        find_longest_cache_hit``). Full + sliding pools (gpt-oss) and full + chunked-local
        pools (Llama 4) cache every group's pages, keyed apart (``hybrid_groups``): a hit
        needs the window's last ``window_run`` blocks in the sliding groups, or the chunk's
        blocks before the hit point (``window_chunk`` blocks a chunk) in the chunked ones.
        Under EAGLE a full + chunked pool caches the full group's pages only (vLLM has no
        rule for it, see engine/prefix_hits.py); other layouts without a full group cache
        no prefix."""
        self.window_blocks = self.window_run = self.window_chunk = 0
        self.full_salts: tuple[int, ...] = (0,)
        self.window_salts: tuple[int, ...] = ()
        # the salts of the window pages a sequence holds, in block order, ahead of its other
        # cached pages (``Seq.num_window_keys``); () when none are cached
        self.window_page_salts: tuple[int, ...] = ()
        if not enable or layout.state_pages:
            # vLLM v0.10 disables prefix caching for hybrid linear-attention models
            # (MambaModelConfig.verify_and_update_config); its later opt-in mamba caching
            # mode is not modelled.
            return False
        if layout.num_full_groups == 0:
            window = layout.windows[0] if layout.pages_per_row == 1 else None
            if window is None or window.kind != "sliding":
                return False
            # cdiv(window - 1, block): the query token itself is in the window
            self.window_blocks = -(-(window.tokens - 1) // self.block_size)
            self.window_page_salts = (0,)
        elif hybrid_groups(layout) and not (self.use_eagle and layout.windows[0].kind != "sliding"):
            self._key_hybrid_groups(layout)
        return True

    def _key_hybrid_groups(self, layout: KVLayout) -> None:
        full = layout.num_full_groups
        window = layout.windows[0]
        self.full_salts = _GROUP_SALTS[:full]
        self.window_salts = self.window_page_salts = _GROUP_SALTS[full : full + window.num_groups]
        if window.kind == "chunked":
            # ChunkedLocalAttentionManager: the blocks before the hit point's chunk are skipped
            self.window_chunk = window.tokens // self.block_size
        else:
            # SlidingWindowManager: sliding_window_contiguous_blocks = cdiv(window - 1, block)
            self.window_run = -(-(window.tokens - 1) // self.block_size)

    # ---- queries -------------------------------------------------------------------------
    @property
    def num_available(self) -> int:
        """Blocks that can be handed out now (free, or cached and unreferenced)."""
        return self.num_free + self.num_evictable

    @property
    def num_used(self) -> int:
        """Blocks referenced by some sequence."""
        return self.num_private + self.num_cached_in_use

    def can_allocate(self, num: int, *, keep_watermark: bool = False) -> bool:
        """True when ``num`` more blocks fit (leaving the watermark free if asked)."""
        reserve = self.num_watermark_blocks if keep_watermark else 0
        return self.num_available - num >= reserve

    def check(self) -> None:
        """Assert the accounting invariant."""
        assert self.num_free >= 0 and self.num_private >= 0 and self.num_cached_in_use >= 0
        used = self.num_private + self.num_cached_in_use  # num_used, without the call
        assert self.num_free + used + self.num_evictable == self.num_blocks, (
            self.num_free,
            self.num_private,
            self.num_cached_in_use,
            self.num_evictable,
            self.num_blocks,
        )
        assert 0 <= self.num_swap_used <= self.num_swap_blocks

    # ---- private blocks ------------------------------------------------------------------
    def allocate(self, num: int) -> None:
        """Hand out ``num`` private blocks, evicting cached blocks (the policy's choice) when
        free ones run out."""
        if num <= 0:
            return
        free = self.num_free
        if num > free + self.num_evictable:
            raise KVCapacityError(num, free + self.num_evictable)
        take = num if num < free else free  # min(num, free)
        self.num_free = free - take
        if num > take:
            self._evict_blocks(num - take)
        self.num_private += num
        assert self.num_free >= 0

    def _evict_blocks(self, num: int) -> None:
        refs = self._refs
        for _ in range(num):
            key = self._evict()
            if refs.get(key) != 0:  # a policy may only drop what nobody references
                raise ContractError(
                    f"eviction {self.eviction}",
                    "eviction-key",
                    f"evict returned {key!r}, which is not an evictable cached block",
                    float("nan"),
                )
            del refs[key]
        self.num_evictable -= num
        self.num_evictions += num

    def release(self, num: int) -> None:
        """Return ``num`` private blocks to the free pool."""
        self.num_private -= num
        self.num_free += num

    # ---- prefix cache --------------------------------------------------------------------
    def count_hits(self, keys: list[int], max_blocks: int) -> int:
        """Leading blocks of ``keys`` (at most ``max_blocks``) a hit covers: vLLM's
        ``find_longest_cache_hit`` for the pool's groups (engine/prefix_hits.py), the last
        matched block dropped under EAGLE (``use_eagle``)."""
        if not self.enable_prefix_caching:
            return 0
        refs, eagle = self._refs, self.use_eagle
        full, window = self.full_salts, self.window_salts
        if self.window_blocks:
            return sliding_hit(refs, keys, max_blocks, self.window_blocks, eagle)
        if self.window_run:
            return hybrid_hit(refs, keys, max_blocks, full, window, self.window_run, eagle)
        if self.window_chunk:  # (never under EAGLE: _cache_mode)
            return chunk_hybrid_hit(refs, keys, max_blocks, full, window, self.window_chunk)
        num = full_run(refs, keys, max_blocks, full)
        return num - 1 if eagle and num else num

    def _window_start(self, num_hits: int) -> int:
        """The first block whose window pages a hit of ``num_hits`` blocks references (the
        blocks before it are outside the window, or before the hit point's chunk)."""
        if self.window_chunk:
            return num_hits - num_hits % self.window_chunk
        return max(0, num_hits - (self.window_blocks or self.window_run))

    def hit_keys(self, keys: list[int], num_hits: int) -> list[int]:
        """The cached blocks a hit of ``num_hits`` blocks references: all of them, or a
        sliding-window pool's last ``window_blocks`` (those its window still reads); in a
        full + window pool the window groups' pages from ``_window_start`` (in block
        order), then every full group's page of each block."""
        if self.window_blocks:
            return keys[self._window_start(num_hits) : num_hits]
        if not self.window_page_salts:
            return keys[:num_hits]
        start = self._window_start(num_hits)
        window = [k ^ s for k in keys[start:num_hits] for s in self.window_salts]
        if len(self.full_salts) == 1:
            return window + keys[:num_hits]
        return window + [k ^ s for k in keys[:num_hits] for s in self.full_salts]

    def hit_pages(self, num_hits: int) -> int:
        """Pages a hit of ``num_hits`` blocks holds (``len(hit_keys(...))``)."""
        if self.window_blocks:
            return self.hit_window_pages(num_hits)
        if not self.window_page_salts:
            return num_hits
        return len(self.full_salts) * num_hits + self.hit_window_pages(num_hits)

    def hit_window_pages(self, num_hits: int) -> int:
        """Window pages at the head of ``hit_keys`` (0 in a pool caching no window pages)."""
        return len(self.window_page_salts) * (num_hits - self._window_start(num_hits))

    def acquire(self, keys: list[int]) -> None:
        """Reference cached blocks ``keys`` (all present)."""
        refs = self._refs
        reuse = self._reuse
        for key in keys:
            count = refs[key]
            if count == 0:
                self.num_evictable -= 1
                self.num_cached_in_use += 1
            reuse(key, count == 0)
            refs[key] = count + 1

    def num_reactivations(self, keys: list[int]) -> int:
        """How many of the (present) ``keys`` are currently evictable (unreferenced)."""
        refs = self._refs
        return sum(1 for key in keys if refs[key] == 0)

    def register(self, key: int) -> bool:
        """Turn one private block of a just-computed full prompt block into cached block
        ``key``; False (block stays private) when the key is already cached."""
        if not self.enable_prefix_caching or key in self._refs:
            return False
        self._refs[key] = 1
        self.num_private -= 1
        self.num_cached_in_use += 1
        return True

    def deref(self, keys: list[int]) -> None:
        """Drop one reference to each of ``keys``; unreferenced ones become evictable.

        Freed in reverse so a prompt's tail is evicted before its head (vLLM V1 does the same:
        the shared head of a prefix is the most likely to be hit again).
        """
        refs = self._refs
        add = self._add
        for depth in range(len(keys) - 1, -1, -1):
            key = keys[depth]
            count = refs[key] - 1
            refs[key] = count
            if count == 0:
                add(key, depth)
                self.num_evictable += 1
                self.num_cached_in_use -= 1


def hybrid_groups(layout: KVLayout) -> bool:
    """True for a pool of full groups and groups of one bounded type, one sliding window
    (gpt-oss, Gemma 3) or one chunk (Llama 4), whose pages are all cached and keyed apart;
    mixed window types keep the full-group-only hit."""
    return layout.num_full_groups > 0 and len(layout.windows) == 1 and not layout.state_pages


def at_vllm_block_size(setup: ReplicaSetup) -> ReplicaSetup:
    """``setup`` with the cache's block size vLLM runs its model at: raised for every group
    of a model with linear-attention state until a page holds one state
    (``perf.kv_groups.vllm_block_size``), unchanged otherwise (the same object)."""
    cache = setup.cache
    block = vllm_block_size(setup.plan, cache.block_size)
    if block == cache.block_size:
        return setup
    return dataclasses.replace(setup, cache=cache.model_copy(update={"block_size": block}))
