"""``ReplicaKV``: the operations on one scheduler's KV memory, the half of ``ReplicaState``
(engine/state.py) that moves blocks: allocating prefill chunks and decode steps, freeing the
window pages a sequence no longer reads, and taking sequences off the GPU (finish, hand-off
hold, preemption by recompute or swap, swap-in, KV received from elsewhere).

``ReplicaState`` adds admission and the booking of a batch that ran (``apply``); the queries
are ``ReplicaStateView``'s (engine/view.py). These methods keep the counts right
(``num_private``, ``block_keys``, the block manager's totals); they never read a clock.
"""

from __future__ import annotations

import math

from servesim.engine.prefix_books import free_window_pages
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.view import ReplicaStateView


class ReplicaKV(ReplicaStateView):
    """Block allocation and release on a replica state (attributes: ``ReplicaStateView``)."""

    # ---- allocation ----------------------------------------------------------------------
    def allocate_chunk(self, seq: Seq, num_tokens: int, need: int | None = None) -> None:
        """Allocate the blocks for the next ``num_tokens`` prefill tokens of ``seq`` (``need``:
        ``chunk_blocks(seq, num_tokens)``, when the caller has it)."""
        if need is None:
            need = self.chunk_blocks(seq, num_tokens)
        if need > 0:
            self.blocks.allocate(need)
            seq.num_private += need

    def allocate_decode_all(self) -> None:
        """Allocate the blocks a decode step of every decoding sequence needs (caller checked
        ``decode_blocks_needed() <= blocks.num_available``)."""
        need = self.group.num_blocks_needed()
        self.blocks.allocate(need)
        for seq in self.ready:
            pages = self.needs_block(seq)
            if pages:
                self.blocks.allocate(pages)
                seq.num_private += pages
                need += pages
        self.num_decode_blocks_granted += need

    def allocate_decode(self, seq: Seq) -> None:
        """Allocate the block one decoding sequence's next step needs, if any."""
        pages = self.needs_block(seq)
        if pages:
            self.blocks.allocate(pages)
            self.num_decode_blocks_granted += pages
            if seq not in self.group.members:
                seq.num_private += pages

    def grant_tick_blocks(self, num_blocks: int) -> None:
        """Allocate the blocks the group's next decode-only iteration needs."""
        self.blocks.allocate(num_blocks)

    def _trim(self, seq: Seq, num_computed: int, num_new: int) -> None:
        """Free the window pages ``seq`` no longer needs once ``num_new`` tokens after
        ``num_computed`` are booked (vLLM's ``remove_skipped_blocks``): the cached pages of
        its prompt it holds there are dereferenced (evictable, still cached), the others
        released (engine/prefix_books.py)."""
        free_window_pages(self.blocks, seq, num_computed, num_new)

    def release_group_frees(self) -> None:
        """Book the window frees of the decode group's last tick: the private pages freed
        are released, the cached prompt pages its members held there dereferenced."""
        group = self.group
        if group.freed:
            self.blocks.release(group.freed)
        if group.dropped:
            self.blocks.deref(group.dropped)
            group.dropped = []

    # ---- KV computed elsewhere -----------------------------------------------------------
    def received_blocks(self, seq: Seq) -> int:
        """Blocks the KV of a sequence arriving from elsewhere (prompt + emitted) takes."""
        kv_tokens = seq.num_prompt_tokens + seq.num_emitted - 1
        return self.layout.pages(kv_tokens)

    def admit_received(self, seq: Seq, num_blocks: int, now: float) -> None:
        """Put a sequence whose prompt KV arrived from elsewhere on the GPU as decoding,
        allocating its ``num_blocks`` (``received_blocks``; the caller checked they fit)."""
        self.blocks.allocate(num_blocks)
        seq.num_private = num_blocks
        seq.block_keys = []
        seq.num_window_keys = 0
        seq.num_computed = seq.prefill_target
        seq.status = SeqStatus.DECODING
        if math.isnan(seq.first_scheduled_s):
            seq.first_scheduled_s = now
        if math.isnan(seq.first_token_s):
            # The user's stream starts at the decode replica (vLLM/Dynamo disaggregation).
            seq.first_token_s = seq.last_token_s = now
        self.running[seq] = None
        self.ready[seq] = None

    def take_off(self, seq: Seq) -> None:
        """Free a decoding sequence that moves to another replica (live migration): it
        leaves the group (its counters written back) and waits for its new home."""
        self.finish(seq)
        seq.status = SeqStatus.WAITING

    # ---- leaving the GPU -----------------------------------------------------------------
    def _pin(self, seq: Seq) -> None:
        adapter = seq.request.adapter_id
        if adapter is not None and self.adapters is not None:
            self.adapters.acquire(adapter)
            self.pinned[seq] = adapter

    def _detach(self, seq: Seq) -> None:
        """Take ``seq`` off the GPU bookkeeping (blocks untouched)."""
        if self.pinned:
            adapter = self.pinned.pop(seq, None)
            if adapter is not None and self.adapters is not None:
                self.adapters.release(adapter)
        if seq in self.group.members:
            self.group.leave(seq)
        self.ready.pop(seq, None)
        self.prefilling.pop(seq, None)
        del self.running[seq]

    def _free_blocks(self, seq: Seq) -> None:
        self.blocks.release(seq.num_private)
        self.blocks.deref(seq.block_keys)
        seq.num_private = 0
        seq.block_keys = []
        seq.num_window_keys = 0

    def finish(self, seq: Seq) -> None:
        """Release a finished sequence's blocks."""
        self._detach(seq)
        self._free_blocks(seq)
        seq.status = SeqStatus.FINISHED

    def hold(self, seq: Seq) -> None:
        """Take a sequence whose KV is being sent elsewhere off the GPU bookkeeping, keeping
        its blocks allocated (used, not schedulable) until ``release_held``. DistServe,
        Splitwise and vLLM's disaggregated prefill free the source KV only once the
        destination has pulled it."""
        self._detach(seq)
        self.held[seq] = (seq.num_private, seq.block_keys)
        seq.num_private = 0
        seq.block_keys = []
        seq.num_window_keys = 0
        seq.status = SeqStatus.WAITING  # for its destination

    def release_held(self, seq: Seq) -> None:
        """Free the blocks ``hold`` kept for ``seq`` (its transfer is over)."""
        num_private, keys = self.held.pop(seq)
        self.blocks.release(num_private)
        self.blocks.deref(keys)

    def preempt(self, seq: Seq, mode: str | None = None) -> None:
        """Preempt a running sequence: ``recompute`` frees its KV and re-queues it at the front
        of ``waiting``; ``swap`` moves its KV to host memory (vLLM falls back to recompute for
        sequences still in prefill; we also do when swap space is full). ``mode`` None: the
        state's ``preemption`` policy picks it for this sequence."""
        was_decoding = seq in self.group.members or seq in self.ready
        self._detach(seq)
        seq.num_preemptions += 1
        self.num_preempted_this_step += 1
        self.count("num_preemptions", 1)
        num_blocks = seq.num_blocks
        mode = mode or self.preemption.choose(seq, num_blocks)
        blocks = self.blocks
        if (
            mode == "swap"
            and was_decoding
            and blocks.num_swap_used + num_blocks <= (blocks.num_swap_blocks)
        ):
            self._free_blocks(seq)
            blocks.num_swap_used += num_blocks
            seq.num_swapped_blocks = num_blocks
            seq.status = SeqStatus.SWAPPED
            self.swapped.append(seq)
            self.num_swap_out_blocks += num_blocks
            self.count("num_swap_outs", 1)
            self.count("swap_out_blocks", num_blocks)
            return
        if mode == "swap":
            self.count("num_swap_fallbacks_to_recompute", 1)
        self._free_blocks(seq)
        self.count("num_recompute_preemptions", 1)
        # vLLM: the recomputed prefill covers the prompt and every token generated so far.
        seq.num_computed = 0
        seq.prefill_target = seq.num_prompt_tokens + seq.num_emitted
        seq.can_register = True
        seq.status = SeqStatus.WAITING
        self.waiting.appendleft(seq)

    def swap_in(self, seq: Seq) -> None:
        """Bring a swapped sequence (already removed from ``swapped``) back to the GPU."""
        num = seq.num_swapped_blocks
        self.blocks.allocate(num)
        self.blocks.num_swap_used -= num
        seq.num_private = num
        seq.num_swapped_blocks = 0
        seq.status = SeqStatus.DECODING
        if self.adapters is not None:
            self._pin(seq)
        self.running[seq] = None
        self.ready[seq] = None
        self.num_swap_in_blocks += num
        self.count("num_swap_ins", 1)
        self.count("swap_in_blocks", num)
