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
    every group's pages (``blocks.window_run``): the pages of each prompt block the chunk
    completed are cached in every group (vLLM's coordinator runs ``cache_blocks`` for each),
    then the sliding pages the window left are freed (``remove_skipped_blocks``), the
    cached ones dereferenced: unreferenced, they keep their key until evicted, as vLLM's
    freed blocks keep their hash. ``block_keys`` holds the sliding pages first
    (``num_window_keys`` of them, in block order, from the first block the window reads),
    then the full pages."""
    b = blocks.block_size
    num_computed = seq.num_computed
    seq.num_computed += chunk
    keys = seq.prompt_keys
    if keys:
        _register_hybrid(blocks, seq, num_computed // b, min(seq.num_computed // b, len(keys)))
    freed = blocks.layout.freed(num_computed, chunk)
    if not freed:
        return
    cached = 0
    if seq.num_window_keys:
        assert keys is not None
        first = blocks.layout.windows[0].skipped_tokens(num_computed) // b
        left = keys[first : first + freed // len(blocks.window_salts)]
        cached = _drop_window_keys(blocks, seq, left)
    if freed > cached:
        seq.num_private -= freed - cached
        blocks.release(freed - cached)


def _drop_window_keys(blocks: KVBlockManager, seq: Seq, left: list[int]) -> int:
    """Dereference the cached sliding pages ``seq`` holds of the prompt blocks ``left`` (the
    window moved past them); returns how many (the others were private)."""
    held = seq.block_keys
    nw = seq.num_window_keys
    num = 0
    for key in left:
        for salt in blocks.window_salts:
            if num < nw and held[num] == key ^ salt:
                num += 1
    if num:
        blocks.deref(held[:num])
        del held[:num]
        seq.num_window_keys = nw - num
    return num


def _register_hybrid(blocks: KVBlockManager, seq: Seq, start: int, end: int) -> None:
    """Cache the pages of prompt blocks ``start..end - 1`` (just completed, all private) in
    every group. A page whose key is cached already (a block recomputed after a hit the
    sliding groups cut short) stays private: vLLM caches it as a second block of that hash,
    which no later hit needs; registering goes on with the next page."""
    keys = seq.prompt_keys
    assert keys is not None
    register = blocks.register
    full: list[int] = []
    window: list[int] = []
    for j in range(start, end):
        key = keys[j]
        full += [page for page in (key ^ s for s in blocks.full_salts) if register(page)]
        window += [page for page in (key ^ s for s in blocks.window_salts) if register(page)]
    nw = seq.num_window_keys
    seq.block_keys[nw:nw] = window
    seq.block_keys += full
    seq.num_window_keys = nw + len(window)
    seq.num_private -= len(full) + len(window)
