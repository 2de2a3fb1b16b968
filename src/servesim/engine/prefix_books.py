"""Booking a computed prefill chunk's prompt blocks into the prefix cache (``ReplicaState``'s
helpers): caching the full blocks a chunk completed, and, for a pool whose one group slides
over every layer or a pool of full and sliding groups, freeing the blocks its window left,
the cached ones first.

Once such a sequence decodes, its window's frees are counted as private pages (the decode
group frees by residue class, O(1) a tick); the prompt blocks it still references then stay
referenced until it leaves. The pool's available count is the same (a free page instead of
an unreferenced cached one); only those blocks cannot be evicted meanwhile.
"""

from __future__ import annotations

from servesim.engine.blocks import KVBlockManager
from servesim.engine.sequence import Seq


def register_blocks(blocks: KVBlockManager, seq: Seq, start: int | None = None) -> None:
    """Cache the prompt blocks of ``seq`` its computed tokens completed, from block
    ``start`` (default ``len(block_keys)``: the held ones are blocks 0..); the first block
    already cached under its key ends registering for good (it stays private)."""
    keys = seq.prompt_keys
    assert keys is not None
    full = min(seq.num_computed // blocks.block_size, len(keys))
    for j in range(len(seq.block_keys) if start is None else start, full):
        if not blocks.register(keys[j]):
            seq.can_register = False
            return
        seq.block_keys.append(keys[j])
        seq.num_private -= 1


def book_window_chunk(blocks: KVBlockManager, seq: Seq, chunk: int) -> None:
    """Book ``chunk`` computed tokens of ``seq`` in a sliding-window pool that caches its
    pages (``blocks.window_blocks``): the chunk's full prompt blocks are cached (vLLM hashes
    every computed block), then the blocks the window left are freed (vLLM's
    ``remove_skipped_blocks``), the cached ones first. ``block_keys`` are the held cached
    blocks from the first one the window still reads; unreferenced, they stay cached for
    later hits, as vLLM's freed blocks keep their hash until evicted."""
    layout = blocks.layout
    num_computed = seq.num_computed
    first = layout.windows[0].skipped_tokens(num_computed) // blocks.block_size
    seq.num_computed += chunk
    if seq.prompt_keys and seq.can_register:
        register_blocks(blocks, seq, first + len(seq.block_keys))
    freed = layout.freed(num_computed, chunk)
    cached = min(freed, len(seq.block_keys))
    if cached:
        blocks.deref(seq.block_keys[:cached])
        del seq.block_keys[:cached]
    if freed > cached:
        seq.num_private -= freed - cached
        blocks.release(freed - cached)


def book_hybrid_chunk(blocks: KVBlockManager, seq: Seq, chunk: int) -> None:
    """Book ``chunk`` computed tokens of ``seq`` in a full + sliding-window pool that caches
    every group's pages (``blocks.window_run``): each completed prompt block's pages in all
    groups are cached (vLLM's coordinator runs ``cache_blocks`` for every group), then the
    sliding pages the window left are freed (``remove_skipped_blocks``), the cached ones
    first: unreferenced, they keep their key until evicted, as vLLM's freed blocks keep
    their hash. ``block_keys`` holds the sliding pages first (``num_window_keys`` of them,
    in block order, from the first block the window reads), then the full pages."""
    num_computed = seq.num_computed
    seq.num_computed += chunk
    if seq.prompt_keys and seq.can_register:
        _register_hybrid(blocks, seq)
    freed = blocks.layout.freed(num_computed, chunk)
    cached = min(freed, seq.num_window_keys)
    if cached:
        blocks.deref(seq.block_keys[:cached])
        del seq.block_keys[:cached]
        seq.num_window_keys -= cached
    if freed > cached:
        seq.num_private -= freed - cached
        blocks.release(freed - cached)


def _register_hybrid(blocks: KVBlockManager, seq: Seq) -> None:
    """Cache the pages of the prompt blocks ``seq``'s computed tokens completed beyond those
    it holds; a block one of whose pages is cached already ends registering for good."""
    keys = seq.prompt_keys
    assert keys is not None
    full_salts, window_salts = blocks.full_salts, blocks.window_salts
    held = (len(seq.block_keys) - seq.num_window_keys) // len(full_salts)
    full: list[int] = []
    window: list[int] = []
    for j in range(held, min(seq.num_computed // blocks.block_size, len(keys))):
        key = keys[j]
        pages = [key ^ s for s in full_salts]
        sliding = [key ^ s for s in window_salts]
        if not blocks.register_pages(pages + sliding):
            seq.can_register = False
            break
        full += pages
        window += sliding
    nw = seq.num_window_keys
    seq.block_keys[nw:nw] = window
    seq.block_keys += full
    seq.num_window_keys = nw + len(window)
    seq.num_private -= len(full) + len(window)
