"""``ReplicaState``: the queues and KV memory one scheduler works on, with the operations a
scheduler may apply (admit, allocate, preempt, swap) and the one that brings the books up to
date once a batch has run (``apply``). Schedulers decide; these methods keep the accounting
right: no other object edits a sequence's tokens or KV (``num_computed``, ``num_emitted``,
``num_private``, ``block_keys``). They never read a clock nor compute durations.

The operations that move KV blocks (allocate, trim, finish, hold, preempt, swap) are
``ReplicaKV``'s (engine/state_kv.py); admission and booking a batch that ran are here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from servesim.engine.batch import Batch
from servesim.engine.blocks import KVBlockManager
from servesim.engine.group import DecodeGroup
from servesim.engine.hybrid import HybridExecutor
from servesim.engine.lora import AdapterCache
from servesim.engine.preemption import FixedPreemption, PreemptionChoice
from servesim.engine.prefix_books import book_hybrid_chunk, book_window_chunk, register_blocks
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.speculative import Speculator
from servesim.engine.state_kv import ReplicaKV

#: ``leave(seq, completion_s)``: a finished sequence has left the books (its blocks are free)
Leave = Callable[[Seq, float], None]


class ReplicaState(ReplicaKV):
    """Queues, decode group and block manager of one (virtual) engine, and the only code
    that changes them (the queries are ``ReplicaStateView``'s; attributes listed there)."""

    def __init__(
        self,
        blocks: KVBlockManager,
        samples: TokenGapSamples,
        count: Callable[[str, int], None],
        *,
        preemption_mode: str = "recompute",
        preemption: PreemptionChoice | None = None,
    ) -> None:
        self.blocks = blocks
        self.block_size = blocks.block_size
        # swap or recompute, per preempted sequence (engine/preemption.py)
        self.preemption = preemption or FixedPreemption(preemption_mode)
        self.waiting: deque[Seq] = deque()
        self.running: dict[Seq, None] = {}
        self.prefilling: dict[Seq, None] = {}
        self.ready: dict[Seq, None] = {}
        self.swapped: deque[Seq] = deque()
        self.samples = samples  # inter-token gaps of sequences outside the group
        # KV cache groups (perf/kv_layout.py): windows free pages as their tokens age out
        self.layout = blocks.layout
        self.group = DecodeGroup(
            blocks.block_size, samples, blocks.layout, blocks.window_page_salts
        )
        self.count = count
        self.num_swap_in_blocks = 0  # swaps decided in the current scheduling step
        self.num_swap_out_blocks = 0
        self.num_preempted_this_step = 0
        # decode blocks handed out in the current scheduling step (the decode-kv contract)
        self.num_decode_blocks_granted = 0
        # KV of sequences handed to another replica (disaggregated prefill), kept allocated
        # until the destination has it: seq -> (private blocks, prefix-cache block keys).
        self.held: dict[Seq, tuple[int, list[int]]] = {}
        # Speculative decoding (None: off). Its decodes never join ``group`` (each keeps a
        # varying number of tokens per step), so they stay in ``ready`` with exact counts.
        self.speculator: Speculator | None = None
        # Multi-LoRA GPU slots (None: adapter ids ignored) and the adapter each admitted
        # sequence pins there.
        self.adapters: AdapterCache | None = None
        self.pinned: dict[Seq, str] = {}
        # CPU-GPU hybrid execution (None: off): splits each step's decodes with the host CPU.
        self.hybrid: HybridExecutor | None = None

    # ---- admission and allocation --------------------------------------------------------
    def admit(self, seq: Seq, now: float) -> int:
        """Move ``seq`` (already removed from ``waiting``) onto the GPU, taking its prefix-cache
        hits; returns the hit tokens. Allocate its first chunk with ``allocate_chunk``."""
        hit_blocks, _ = self._hits(seq)
        if self.blocks.enable_prefix_caching:
            self.count("prefix_cache_lookups", 1)
            self.count("prefix_cache_queried_tokens", seq.prefill_target)
            self.count("prefix_cache_hit_tokens", hit_blocks * self.block_size)
        if hit_blocks:
            assert seq.prompt_keys is not None
            keys = self.blocks.hit_keys(seq.prompt_keys, hit_blocks)
            self.blocks.acquire(keys)
            seq.block_keys = list(keys)
            seq.num_window_keys = self.blocks.hit_window_pages(hit_blocks)
        hit_tokens = hit_blocks * self.block_size
        if self.adapters is not None:
            self._pin(seq)
        seq.num_hit_tokens += hit_tokens
        seq.num_computed = hit_tokens
        seq.status = SeqStatus.PREFILL
        if math.isnan(seq.first_scheduled_s):
            seq.first_scheduled_s = now
        self.running[seq] = None
        self.prefilling[seq] = None
        return hit_tokens

    # ---- applying a batch that ran -------------------------------------------------------
    def begin_step(self) -> None:
        """Zero the per-step counters before a scheduling step."""
        self.num_swap_in_blocks = self.num_swap_out_blocks = 0
        self.num_preempted_this_step = self.num_decode_blocks_granted = 0

    def apply(
        self,
        batch: Batch,
        now: float,
        stamp: float,
        leave: Leave,
        hand_off: Callable[[Seq, float], None] | None = None,
        first_token_spacing_s: float = 0.0,
    ) -> None:
        """Bring the books up to date once ``batch`` has run (it ended at ``now``; its tokens
        are stamped ``stamp``): each decode emits; each prefill chunk is computed (its full
        prompt blocks cached); a completed prompt emits its next token and then finishes,
        is handed off (``hand_off(seq, now)``, its KV held here) or decodes.

        A finishing sequence leaves the books, then ``leave(seq, completion_s)`` runs, one
        sequence at a time in batch order. ``first_token_spacing_s``: the front end hands
        out one output per sequence ahead of a first token (``EngineTiming.output_per_seq_s``).
        """
        if batch.decodes:
            if self.speculator is None:
                self._decode_tick(batch.decodes, stamp, leave)
            else:
                self._spec_tick(batch.decodes, stamp, leave)
        ahead = len(batch.decodes)  # outputs handed to the front end before this one
        blocks, windows = self.blocks, self.layout.windows  # (fixed for the run)
        for seq, chunk in batch.prefills:
            if blocks.window_blocks:  # a sliding-window pool caching its pages
                book_window_chunk(blocks, seq, chunk)
            elif blocks.window_run or blocks.window_chunk:  # full + window, every group cached
                book_hybrid_chunk(blocks, seq, chunk)
            else:
                if windows:
                    self._trim(seq, seq.num_computed, chunk)
                seq.num_computed += chunk
                if seq.prompt_keys and seq.can_register:
                    register_blocks(blocks, seq)
            if seq.num_computed < seq.prefill_target:
                continue
            ahead += 1
            self._complete_prompt(seq, now, stamp, leave, hand_off, ahead * first_token_spacing_s)

    def _complete_prompt(
        self,
        seq: Seq,
        now: float,
        stamp: float,
        leave: Leave,
        hand_off: Callable[[Seq, float], None] | None,
        first_token_delay_s: float,
    ) -> None:
        """``seq``'s prompt is computed: emit its next token, then it finishes, is handed off
        (its KV held here) or decodes. ``first_token_delay_s``: how long after ``stamp`` the
        front end hands the client a first token (the outputs ahead of it in this step)."""
        del self.prefilling[seq]
        first = seq.num_emitted == 0
        self._emit(seq, stamp)
        if first and first_token_delay_s:
            # Only the client's first-token time waits; gaps count from the step.
            seq.first_token_s = stamp + first_token_delay_s
        if seq.num_emitted >= seq.num_output_tokens:
            self._leave(seq, max(stamp, seq.first_token_s), leave)
        elif hand_off is not None:
            self.hold(seq)
            hand_off(seq, now)
        else:
            seq.status = SeqStatus.DECODING
            self.ready[seq] = None

    def _leave(self, seq: Seq, completion_s: float, leave: Leave) -> None:
        self.finish(seq)
        leave(seq, completion_s)

    def _decode_tick(self, decodes: list[Seq], stamp: float, leave: Leave) -> None:
        group, ready = self.group, self.ready
        if len(decodes) == len(group.members) + len(ready):  # self.num_decoding
            joiners = list(ready) if ready else []
        else:
            chosen = set(decodes)
            for seq in [s for s in group.members if s not in chosen]:
                group.leave(seq)  # skipped this tick: its next gap is its own
                self.ready[seq] = None
            joiners = [s for s in decodes if s not in group.members]
        done = group.advance(stamp)
        self.release_group_frees()
        for seq in done:
            self._leave(seq, stamp, leave)
        windows = self.layout.windows
        for seq in joiners:
            del self.ready[seq]
            if windows:
                self._trim(seq, seq.num_prompt_tokens + seq.num_emitted - 1, 1)
            self._emit(seq, stamp)
            if seq.num_emitted >= seq.num_output_tokens:
                self._leave(seq, stamp, leave)
            else:
                group.join(seq)

    def _spec_tick(self, decodes: list[Seq], stamp: float, leave: Leave) -> None:
        """Each speculative decode keeps its accepted drafts plus one token, all streamed
        at the step's end (one inter-token gap per step, as a client receives them)."""
        spec = self.speculator
        assert spec is not None
        for seq in decodes:
            kept = spec.num_kept(seq, spec.num_verify(seq, seq.num_emitted))
            if self.layout.windows:
                self._trim(seq, seq.num_prompt_tokens + seq.num_emitted - 1, kept)
            self._emit(seq, stamp)
            seq.num_emitted += kept - 1
            if seq.num_emitted >= seq.num_output_tokens:
                self._leave(seq, stamp, leave)

    def apply_decode_tick(self, stamp: float, leave: Leave) -> bool:
        """Every group member emits one token at ``stamp`` (a decode-only iteration the engine
        advanced without a scheduling step); True when some finished (and left)."""
        done = self.group.advance(stamp)
        self.release_group_frees()
        for seq in done:
            self._leave(seq, stamp, leave)
        return bool(done)

    def _emit(self, seq: Seq, now: float) -> None:
        if seq.num_emitted == 0:
            seq.first_token_s = now
        else:
            gap = now - seq.last_token_s
            if gap > seq.max_gap_s:
                seq.max_gap_s = gap
            self.samples.add(gap, 1)
        seq.num_emitted += 1
        seq.last_token_s = now
