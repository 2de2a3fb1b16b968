"""Booking a computed prefill chunk's prompt blocks into the prefix cache (``ReplicaState``'s
helpers): caching the full blocks a chunk completed, and, for a pool whose one group slides
over every layer or a pool of full and window (sliding or chunked-local) groups, freeing the
window pages it left, the cached ones first (``free_window_pages``).

A sequence holds its cached window pages first in ``block_keys`` (``num_window_keys`` of
them, in block order). They are dereferenced when the window leaves their block, prefill or
decode alike, as vLLM's ``remove_skipped_blocks`` returns them to the free queue (still
cached, evictable): here for a step booked one sequence at a time (``free_window_pages``), in
the decode group by a heap of each member's next such free (engine/group.py).
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
    blocks from the first one the window still reads (all window pages:
    ``num_window_keys``); unreferenced, they stay cached for later hits, as vLLM's freed
    blocks keep their hash until evicted."""
    layout = blocks.layout
    num_computed = seq.num_computed
    first = layout.windows[0].skipped_tokens(num_computed) // blocks.block_size
    seq.num_computed += chunk
    if seq.prompt_keys and seq.can_register:
        register_blocks(blocks, seq, first + len(seq.block_keys))
        seq.num_window_keys = len(seq.block_keys)
    free_window_pages(blocks, seq, num_computed, chunk)


def book_hybrid_chunk(blocks: KVBlockManager, seq: Seq, chunk: int) -> None:
    """Book ``chunk`` computed tokens of ``seq`` in a full + window pool that caches every
    group's pages (``blocks.window_run`` or ``window_chunk``): the pages of each prompt
    block the chunk completed are cached in every group (vLLM's coordinator runs
    ``cache_blocks`` for each), then the window pages the window (or chunk) left are freed
    (``free_window_pages``)."""
    b = blocks.block_size
    num_computed = seq.num_computed
    seq.num_computed += chunk
    keys = seq.prompt_keys
    if keys:
        _register_hybrid(blocks, seq, num_computed // b, min(seq.num_computed // b, len(keys)))
    free_window_pages(blocks, seq, num_computed, chunk)


def free_window_pages(blocks: KVBlockManager, seq: Seq, num_computed: int, num_new: int) -> None:
    """Free the window pages ``seq`` no longer needs once ``num_new`` tokens after
    ``num_computed`` are booked (vLLM's ``remove_skipped_blocks``): the cached ones it holds
    of the blocks left are dereferenced (they keep their key until evicted, as vLLM's freed
    blocks keep their hash), the others released."""
    layout = blocks.layout
    freed = layout.freed(num_computed, num_new)
    if not freed:
        return
    cached = 0
    if seq.num_window_keys:
        keys = seq.prompt_keys
        assert keys is not None
        first = layout.windows[0].skipped_tokens(num_computed) // blocks.block_size
        left = keys[first : first + freed // len(blocks.window_page_salts)]
        cached = _drop_window_keys(blocks, seq, left)
    if freed > cached:
        seq.num_private -= freed - cached
        blocks.release(freed - cached)


def _drop_window_keys(blocks: KVBlockManager, seq: Seq, left: list[int]) -> int:
    """Dereference the cached window pages ``seq`` holds of the prompt blocks ``left`` (the
    window moved past them); returns how many (the others were private)."""
    held = seq.block_keys
    nw = seq.num_window_keys
    num = 0
    for key in left:
        for salt in blocks.window_page_salts:
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
