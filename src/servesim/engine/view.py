"""``ReplicaStateView``: what a scheduler reads about its engine's state (queries only).

``ReplicaState`` (engine/state.py) adds the operations that change the books; the queries
live here so that the read side a policy relies on is one short file: counts, contexts,
blocks a step would need, the cost of an admission, and the full recount tests run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from servesim.engine.blocks import KVBlockManager, prompt_block_keys
from servesim.engine.group import DecodeGroup
from servesim.engine.hybrid import HybridExecutor
from servesim.engine.lora import AdapterCache
from servesim.engine.preemption import PreemptionChoice
from servesim.engine.records import TokenGapSamples
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.speculative import Speculator
from servesim.perf.kv_layout import KVLayout


class ReplicaStateView:
    """The queries on one (virtual) engine's queues, decode group and KV blocks.

    Attributes:
        waiting: FCFS queue of sequences not on the GPU (new, or preempted by recompute).
        running: sequences on the GPU in admission order (prefilling and decoding).
        prefilling: the subset of ``running`` still computing prompt tokens.
        ready: decoding sequences that are not (yet) members of ``group``.
        group: decoding sequences that decode every tick (aggregated).
        swapped: sequences whose KV sits in host memory (vLLM's swapped queue).
        blocks: the KV block manager.
        held: KV of sequences handed to another replica, kept until the destination has it.
        speculator, adapters, hybrid: the replica's features (None: off).
    """

    blocks: KVBlockManager
    block_size: int
    layout: KVLayout  # blocks.layout (ReplicaKV reads it; declared here for mypyc)
    preemption: PreemptionChoice
    waiting: deque[Seq]
    running: dict[Seq, None]
    prefilling: dict[Seq, None]
    ready: dict[Seq, None]
    swapped: deque[Seq]
    samples: TokenGapSamples
    group: DecodeGroup
    count: Callable[[str, int], None]
    num_swap_in_blocks: int
    num_swap_out_blocks: int
    num_preempted_this_step: int
    num_decode_blocks_granted: int
    held: dict[Seq, tuple[int, list[int]]]
    speculator: Speculator | None
    adapters: AdapterCache | None
    pinned: dict[Seq, str]
    hybrid: HybridExecutor | None

    # ---- queries -------------------------------------------------------------------------
    @property
    def num_decoding(self) -> int:
        """Sequences generating tokens on the GPU."""
        return len(self.group.members) + len(self.ready)

    def decoding(self) -> list[Seq]:
        """Every decoding sequence (group members first, in join order)."""
        if self.ready:
            return [*self.group.members, *self.ready]
        return list(self.group.members)

    def emitted(self, seq: Seq) -> int:
        """Tokens ``seq`` has emitted so far."""
        return self.group.emitted(seq) if seq in self.group.members else seq.num_emitted

    def context(self, seq: Seq) -> int:
        """Context a decoding sequence reads in its next decode step."""
        if seq in self.group.members:
            return self.group.context(seq)
        return seq.num_prompt_tokens + seq.num_emitted

    def needs_block(self, seq: Seq) -> int:
        """Blocks a decoding sequence's next step allocates (0 unless it starts a new block
        of KV; then one per KV cache group, perf/kv_layout.py)."""
        if seq in self.group.members:
            return self.group.needs_block(seq)
        if self.speculator is not None:
            # the verify pass writes K and V at every verified position (lookahead slots)
            q = self.speculator.num_verify(seq, seq.num_emitted)
            kv = seq.num_prompt_tokens + seq.num_emitted - 1
            return max(self.blocks.layout.step_pages(kv, q) - seq.num_blocks, 0)
        if (seq.num_prompt_tokens + seq.num_emitted - 1) % self.block_size:
            return 0
        return self.blocks.layout.pages_per_row

    def decode_blocks_needed(self) -> int:
        """New blocks a decode step of every decoding sequence needs."""
        need = self.group.num_blocks_needed()
        for seq in self.ready:
            need += self.needs_block(seq)
        return need

    def admission_cost(self, seq: Seq, num_tokens: int) -> tuple[int, int]:
        """(prefix-hit tokens, blocks taken from the available pool) if ``seq`` were admitted
        now with a first chunk of ``num_tokens`` new tokens beyond its cache hits."""
        hit_blocks, taken = self._hits(seq)
        end = min(seq.prefill_target, hit_blocks * self.block_size + num_tokens)
        hit_tokens = hit_blocks * self.block_size
        new_blocks = self.blocks.layout.step_pages(hit_tokens, end - hit_tokens)
        new_blocks -= self.blocks.hit_pages(hit_blocks)
        return hit_blocks * self.block_size, new_blocks + taken

    def _hits(self, seq: Seq) -> tuple[int, int]:
        if not self.blocks.enable_prefix_caching:
            return 0, 0
        if seq.prompt_keys is None:
            req = seq.request
            seq.prompt_keys = prompt_block_keys(
                req.prefix_block_hashes,
                req.prefix_block_size,
                req.num_prompt_tokens,
                self.block_size,
            )
        # vLLM always computes at least the last prompt token, so a full hit stops one short.
        max_blocks = (seq.prefill_target - 1) // self.block_size
        hits = self.blocks.count_hits(seq.prompt_keys, max_blocks)
        return hits, self.blocks.num_reactivations(self.blocks.hit_keys(seq.prompt_keys, hits))

    def chunk_blocks(self, seq: Seq, num_tokens: int) -> int:
        """New blocks an admitted sequence needs to compute ``num_tokens`` more tokens."""
        return self.blocks.layout.step_pages(seq.num_computed, num_tokens) - seq.num_blocks

    def can_pin(self, seq: Seq) -> bool:
        """True when ``seq``'s adapter (if any) is in a GPU slot or can be loaded into one."""
        return self.adapters is None or self.adapters.can_acquire(seq.request.adapter_id)

    def can_swap_in(self, seq: Seq) -> bool:
        """True when the swapped sequence's blocks (and the next step's) fit above the
        watermark (vLLM's ``can_swap_in``)."""
        need = seq.num_swapped_blocks + self.needs_block(seq)
        return self.blocks.can_allocate(need, keep_watermark=True) and self.can_pin(seq)

    # ---- checks --------------------------------------------------------------------------
    def check(self) -> None:
        """Assert every accounting invariant by recounting (O(n); tests call it each step)."""
        self.blocks.check()
        self.group.check()
        private = 0
        for seq in self.running:
            if seq in self.group.members:
                kv = seq.num_prompt_tokens + self.group.emitted(seq) - 1
                private += self.blocks.layout.pages(kv) - len(seq.block_keys)
            else:
                assert seq.status in (SeqStatus.PREFILL, SeqStatus.DECODING)
                private += seq.num_private
                assert seq.num_blocks >= self.blocks.layout.pages(seq.num_kv_tokens)
        private += sum(num for num, _ in self.held.values())
        assert private == self.blocks.num_private, (private, self.blocks.num_private)
        assert len(self.running) == len(self.prefilling) + self.num_decoding
        swapped = sum(s.num_swapped_blocks for s in self.swapped)
        assert swapped == self.blocks.num_swap_used
