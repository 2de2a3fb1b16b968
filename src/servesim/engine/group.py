"""``DecodeGroup``: the sequences that decode in every decode iteration, kept as aggregates.

In continuous batching every running decode takes part in each decode iteration ("tick"), so
its emitted count, context length, next block boundary and finish tick are all affine in the
group's tick counter. The group stores each member's offsets once and keeps running sums, so
an iteration costs O(1) plus O(log n) per member that joins, needs a block, or leaves, instead
of O(running). Per-member inter-token gaps are the gaps between consecutive ticks; the largest
gap over a member's stay is answered by a monotone stack (range maximum over a suffix).

The window pages a member frees are counted by residue class (``_WindowFrees``); those of
its prompt it holds cached (``Seq.num_window_keys``, a pool that caches window pages) are
dereferenced instead, at the tick the window leaves their block, as vLLM's
``remove_skipped_blocks`` returns them to the free queue (evictable, still cached): a heap
holds each such member's next one (``_drops``), O(log n) per page, a few per member.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left

from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq, SeqStatus
from servesim.perf.kv_layout import KVLayout, WindowGroups


class _WindowFrees:
    """When the members' pages of one bounded group type are freed, by residue class.

    After the tick that brings the count to ``t`` a member has ``n = gkey + t - 1`` tokens.
    A sliding window frees one page per group when ``n - window + 1`` reaches a multiple of
    the block size, from the first whole block on (``t >= window + block - gkey``: members
    below it wait in ``pending``); a chunk frees its ``chunk / block`` pages when ``n``
    reaches a multiple of the chunk (every member's next boundary is past its first chunk).
    """

    __slots__ = ("counts", "pages", "pending", "period", "sliding", "tokens")

    def __init__(self, window: WindowGroups, block_size: int) -> None:
        self.sliding = window.kind == "sliding"
        self.tokens = window.tokens
        self.period = block_size if self.sliding else window.tokens
        self.pages = window.num_groups * (1 if self.sliding else window.tokens // block_size)
        self.counts = [0] * self.period
        self.pending: list[tuple[int, int, int, Seq]] = []

    def residue(self, seq: Seq) -> int:
        """The tick residue at which ``seq`` frees pages."""
        if self.sliding:
            return (self.tokens - seq.gkey) % self.period
        return (1 - seq.gkey) % self.period

    def start_tick(self, seq: Seq, block_size: int) -> int:
        """First tick count at which ``seq`` may free (0 for a chunk)."""
        return self.tokens + block_size - seq.gkey if self.sliding else 0

    def join(self, seq: Seq, tick: int, block_size: int) -> None:
        """Count ``seq`` (or queue it until its first free can come)."""
        start = self.start_tick(seq, block_size)
        if start <= tick + 1:
            self.counts[self.residue(seq)] += 1
        else:
            heapq.heappush(self.pending, (start, seq.sid, seq.version, seq))

    def leave(self, seq: Seq, tick: int, block_size: int) -> None:
        """Uncount ``seq`` if it was counted (its pending entry, if any, goes stale)."""
        if self.start_tick(seq, block_size) <= max(seq.join_tick + 1, tick):
            self.counts[self.residue(seq)] -= 1

    def may_free(self, tick: int) -> bool:
        """Whether pages may be freed after the tick that brings the count to ``tick`` (a
        counted member in its residue class, or a pending one, stale perhaps, due by then)."""
        pending = self.pending
        return bool(self.counts[tick % self.period]) or bool(pending and pending[0][0] <= tick)

    def advance(self, tick: int, members: dict[Seq, None]) -> int:
        """Pages freed after the tick that brought the count to ``tick``."""
        pending = self.pending
        while pending and pending[0][0] <= tick:
            _, _, version, seq = heapq.heappop(pending)
            if seq in members and version == seq.version:
                self.counts[self.residue(seq)] += 1
        return self.pages * self.counts[tick % self.period]


class DecodeGroup:
    """Members decode every tick; ``tick`` counts decode iterations done so far.

    For a member: ``num_emitted = tick - tick_base``; context read next tick
    ``= gkey + tick`` with ``gkey = num_prompt_tokens - tick_base``; it needs a new KV block
    in the tick that starts at count ``T`` when ``(gkey + T - 1) % block_size == 0``; it
    finishes at the tick that brings the count to ``tick_base + num_output_tokens``.
    """

    __slots__ = (
        "_drops",
        "_finish_heap",
        "_max_heap",
        "_pages",
        "_prune_at",
        "_stack_gaps",
        "_stack_ticks",
        "block_size",
        "ctx_sum",
        "dropped",
        "freed",
        "last_tick_end_s",
        "layout",
        "members",
        "residue",
        "samples",
        "tick",
        "window_page_salts",
        "windows",
    )

    def __init__(
        self,
        block_size: int,
        samples: TokenGapSamples,
        layout: KVLayout | None = None,
        window_page_salts: tuple[int, ...] = (),
    ) -> None:
        self.block_size = block_size
        self.layout = layout or KVLayout(block_size)
        self._pages = self.layout.pages_per_row  # pages a new block of KV takes
        self.windows = [_WindowFrees(w, block_size) for w in self.layout.windows]
        self.freed = 0  # private pages the windows freed after the last tick (kv_layout.py)
        # cached prompt pages the windows left after the last tick (the caller dereferences
        # them), and the salts a block's window pages are keyed with (engine/blocks.py)
        self.dropped: list[int] = []
        self.window_page_salts = window_page_salts
        # (tick, sid, version, block, member): when the window leaves a held cached block
        self._drops: list[tuple[int, int, int, int, Seq]] = []
        self.samples = samples
        self.members: dict[Seq, None] = {}  # insertion-ordered: deterministic iteration
        self.tick = 0
        self.last_tick_end_s = math.nan
        self.ctx_sum = 0  # sum over members of the context each reads next tick
        self.residue = [0] * block_size  # members needing a block at ticks T = r (mod B)
        self._max_heap: list[tuple[int, int, int, Seq]] = []
        self._finish_heap: list[tuple[int, int, int, Seq]] = []
        self._stack_ticks: list[int] = []
        self._stack_gaps: list[float] = []
        self._prune_at = 256

    def __len__(self) -> int:
        return len(self.members)

    # ---- membership ----------------------------------------------------------------------
    def join(self, seq: Seq) -> None:
        """Add a decoding sequence that has just emitted a token at the current tick."""
        tick = self.tick
        seq.tick_base = tick - seq.num_emitted
        seq.join_tick = tick
        seq.gkey = seq.num_prompt_tokens - seq.tick_base
        self.members[seq] = None
        self.ctx_sum += seq.gkey + tick
        self.residue[(1 - seq.gkey) % self.block_size] += 1
        heapq.heappush(self._max_heap, (-seq.gkey, seq.sid, seq.version, seq))
        for window in self.windows:
            window.join(seq, tick, self.block_size)
        if seq.num_window_keys:  # from the first block the window still reads
            kv_tokens = seq.gkey + tick - 1
            self._push_drop(
                seq, self.layout.windows[0].skipped_tokens(kv_tokens) // self.block_size
            )
        finish_tick = seq.tick_base + seq.num_output_tokens
        heapq.heappush(self._finish_heap, (finish_tick, seq.sid, seq.version, seq))

    def leave(self, seq: Seq) -> None:
        """Remove a member, writing back its emitted count, last token time, largest gap and
        private block count."""
        del self.members[seq]
        tick = self.tick
        emitted = tick - seq.tick_base
        if tick > seq.join_tick:
            seq.last_token_s = self.last_tick_end_s
            i = bisect_left(self._stack_ticks, seq.join_tick + 1)
            seq.max_gap_s = max(seq.max_gap_s, self._stack_gaps[i])
        seq.num_emitted = emitted
        kv_tokens = seq.num_prompt_tokens + emitted - 1
        seq.num_private = self.layout.pages(kv_tokens) - len(seq.block_keys)
        self.ctx_sum -= seq.gkey + tick
        self.residue[(1 - seq.gkey) % self.block_size] -= 1
        for window in self.windows:
            window.leave(seq, tick, self.block_size)
        seq.version += 1
        n = len(self.members)
        if len(self._max_heap) > 2 * n + 64:
            self._rebuild_heaps()

    def _rebuild_heaps(self) -> None:
        self._max_heap = [(-s.gkey, s.sid, s.version, s) for s in self.members]
        heapq.heapify(self._max_heap)
        self._finish_heap = [e for e in self._finish_heap if e[3] in self.members]
        heapq.heapify(self._finish_heap)
        self._drops = [e for e in self._drops if e[4] in self.members and e[2] == e[4].version]
        heapq.heapify(self._drops)

    # ---- cached window pages -------------------------------------------------------------
    def _push_drop(self, seq: Seq, first: int) -> None:
        """Schedule when the window leaves the block ``j >= first`` of ``seq``'s first held
        cached window page: after the tick ``n - gkey + 1``, ``n`` the first token count
        with ``skipped_tokens(n) >= (j + 1) * block`` (``WindowGroups.tokens_skipping``)."""
        keys = seq.prompt_keys
        if keys is None:
            return
        head = seq.block_keys[0]
        salts = self.window_page_salts
        for j in range(first, len(keys)):
            if any(keys[j] ^ s == head for s in salts):
                n = self.layout.windows[0].tokens_skipping((j + 1) * self.block_size)
                heapq.heappush(self._drops, (n - seq.gkey + 1, seq.sid, seq.version, j, seq))
                return

    def _drop_cached(self, tick: int) -> int:
        """Move the cached window pages the windows left at ``tick`` from their members'
        ``block_keys`` to ``dropped``; returns how many (the windows' frees include them)."""
        heap = self._drops
        members = self.members
        salts = self.window_page_salts
        num = 0
        while heap and heap[0][0] <= tick:
            _, _, version, j, seq = heapq.heappop(heap)
            if seq not in members or version != seq.version:
                continue
            keys = seq.prompt_keys
            assert keys is not None
            held = seq.block_keys
            count = 0
            for salt in salts:  # the block's held pages, in group order (prefix_books.py)
                if count < seq.num_window_keys and held[count] == keys[j] ^ salt:
                    count += 1
            self.dropped += held[:count]
            del held[:count]
            seq.num_window_keys -= count
            num += count
            if seq.num_window_keys:
                self._push_drop(seq, j + 1)
        return num

    # ---- queries -------------------------------------------------------------------------
    def emitted(self, seq: Seq) -> int:
        """Tokens a member has emitted so far."""
        return self.tick - seq.tick_base

    def context(self, seq: Seq) -> int:
        """Context a member reads in the next tick."""
        return seq.gkey + self.tick

    def needs_block(self, seq: Seq) -> int:
        """Pages a member's next decode step allocates (one per group when it starts a new
        block of KV, else 0)."""
        return self._pages if (seq.gkey + self.tick - 1) % self.block_size == 0 else 0

    def num_blocks_needed(self, ahead: int = 0) -> int:
        """New blocks the whole group needs for the tick starting at ``tick + ahead``."""
        return self._pages * self.residue[(self.tick + ahead) % self.block_size]

    def max_context(self, ahead: int = 0) -> int:
        """Longest member context in the tick starting at ``tick + ahead`` (0 if empty)."""
        heap = self._max_heap
        members = self.members
        while heap and (heap[0][3] not in members or heap[0][2] != heap[0][3].version):
            heapq.heappop(heap)
        return -heap[0][0] + self.tick + ahead if heap else 0

    def next_finish_tick(self) -> int | float:
        """Tick count at which the earliest member finishes (``inf`` if none)."""
        heap = self._finish_heap
        members = self.members
        while heap and (heap[0][3] not in members or heap[0][2] != heap[0][3].version):
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def next_tick_blocks(self, through_finishes: bool) -> int | None:
        """New KV blocks the next tick needs once its finishers left (skip-ahead), or None
        when a finish in it must end a run of skipped ticks: any finish unless
        ``through_finishes``, and always the finish of every member. Unless
        ``through_finishes``, a tick whose windows free pages ends the run too: the pages
        may admit the queued request or resume the stalled prefill."""
        nxt = self.tick + 1
        finishers = self.finishing(nxt) if self.next_finish_tick() <= nxt else []
        if finishers and (not through_finishes or len(finishers) >= len(self.members)):
            return None
        if not through_finishes and any(w.may_free(nxt) for w in self.windows):
            return None
        need = self.num_blocks_needed(1)
        ending = sum(1 for s in finishers if (s.gkey + nxt - 1) % self.block_size == 0)
        return need - self._pages * ending

    def finishing(self, tick: int) -> list[Seq]:
        """Members whose last token comes at the tick that brings the count to ``tick``
        (a walk of the heap's nodes <= tick, so O(answer + stale entries))."""
        heap = self._finish_heap
        members = self.members
        out: list[Seq] = []
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            if i < len(heap) and heap[i][0] <= tick:
                _, _, version, seq = heap[i]
                if seq in members and version == seq.version:
                    out.append(seq)
                stack.append(2 * i + 1)
                stack.append(2 * i + 2)
        return out

    # ---- ticking -------------------------------------------------------------------------
    def advance(self, end_s: float) -> list[Seq]:
        """All members emit one token at ``end_s``; returns members that just finished (they
        have left the group, with their fields written back)."""
        n = len(self.members)
        self.tick += 1
        if n:
            gap = end_s - self.last_tick_end_s
            self.samples.add(gap, n)
            ticks, gaps = self._stack_ticks, self._stack_gaps
            while gaps and gaps[-1] <= gap:
                gaps.pop()
                ticks.pop()
            ticks.append(self.tick)
            gaps.append(gap)
            if len(ticks) > self._prune_at:
                self._prune()
            self.ctx_sum += n
        self.last_tick_end_s = end_s
        if self.windows:  # before the finishers leave: their write-back counts the frees
            self.freed = sum(w.advance(self.tick, self.members) for w in self.windows)
            if self._drops:
                self.freed -= self._drop_cached(self.tick)
        finished: list[Seq] = []
        heap, tick = self._finish_heap, self.tick
        # (next_finish_tick() <= tick without the call: stale entries at the top are popped
        # by the loop, or later; they never change which members finish when)
        if heap and heap[0][0] <= tick:
            members = self.members
            while heap and heap[0][0] <= tick:
                _, _, version, seq = heapq.heappop(heap)
                if seq in members and version == seq.version:
                    self.leave(seq)
                    finished.append(seq)
        return finished

    def _prune(self) -> None:
        """Drop stack entries older than every member's stay (rarely needed)."""
        oldest = min((s.join_tick for s in self.members), default=self.tick) + 1
        i = bisect_left(self._stack_ticks, oldest)
        del self._stack_ticks[:i]
        del self._stack_gaps[:i]
        self._prune_at = max(256, 2 * len(self._stack_ticks))

    def check(self) -> None:
        """Assert the aggregates match a recount (tests call this every step)."""
        assert self.ctx_sum == sum(self.context(s) for s in self.members)
        counts = [0] * self.block_size
        for s in self.members:
            assert s.status == SeqStatus.DECODING
            counts[(1 - s.gkey) % self.block_size] += 1
        assert counts == self.residue
        for window in self.windows:
            active = [0] * window.period
            for s in self.members:
                if window.start_tick(s, self.block_size) <= max(s.join_tick + 1, self.tick):
                    active[window.residue(s)] += 1
            assert active == window.counts
        # every held cached window page is one the windows still read (its free is due later)
        live = [e for e in self._drops if e[4] in self.members and e[2] == e[4].version]
        assert {e[4] for e in live} == {s for s in self.members if s.num_window_keys}
        assert all(e[0] > self.tick for e in live)
