"""Booking a computed prefill chunk's prompt blocks into the prefix cache (``ReplicaState``'s
helpers): caching the full blocks a chunk completed, and, for a pool whose one group slides
over every layer, freeing the blocks its window left, the cached ones first.

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
