"""``Batch``: what one iteration computes, as a scheduler returns it."""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.engine.sequence import Seq


@dataclass(slots=True)
class Batch:
    """One iteration's work.

    Attributes:
        prefills: ``(seq, num_tokens)`` prompt (or recompute) chunks; blocks already allocated.
        decodes: sequences generating one token each; blocks already allocated. Must be
            decoding sequences of the scheduler's state, each at most once.
        num_swap_in_blocks: KV blocks copied host -> GPU before this iteration runs.
        num_swap_out_blocks: KV blocks copied GPU -> host before this iteration runs.
        num_queued: requests waiting (or swapped) when the batch was formed (set by the engine).
        num_kv_blocks_used: blocks in use after the batch's allocations (set by the engine).
        start_s: when the iteration started (set by the engine).
    """

    prefills: list[tuple[Seq, int]] = field(default_factory=list)
    decodes: list[Seq] = field(default_factory=list)
    num_swap_in_blocks: int = 0
    num_swap_out_blocks: int = 0
    num_queued: int = 0
    num_kv_blocks_used: int = 0
    start_s: float = 0.0

    @property
    def is_empty(self) -> bool:
        """True when the batch computes nothing and moves no KV."""
        return not (
            self.prefills or self.decodes or self.num_swap_in_blocks or self.num_swap_out_blocks
        )

    @property
    def num_prefill_tokens(self) -> int:
        """Prefill tokens in the batch."""
        return sum(n for _, n in self.prefills)
