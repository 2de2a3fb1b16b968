"""Schedulers without paging: Orca (iteration-level) and static (request-level) batching.

Both reserve a request's whole KV footprint on admission, as systems did before PagedAttention
(Orca, OSDI 2022; FasterTransformer), so memory, not compute, caps the batch.
"""

from __future__ import annotations

from servesim.engine.batch import Batch
from servesim.engine.config import OrcaSchedulerConfig, StaticSchedulerConfig
from servesim.engine.schedulers.base import SCHEDULERS, ReplicaScheduler
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState


class _ReservingScheduler(ReplicaScheduler):
    """Admission by whole-request reservation; the paged accounting underneath only ever
    holds a subset of what is reserved, so no preemption can happen."""

    is_chunked = False
    keep_watermark = False
    supports_skip = True

    def __init__(self, config: OrcaSchedulerConfig | StaticSchedulerConfig, **kw: int) -> None:
        super().__init__(config, **kw)
        self.num_reserved_blocks = 0
        self._reservations: dict[Seq, int] = {}

    def default_budget(self) -> int:
        """No token budget: whole prompts (Orca batches any number of tokens)."""
        return 1 << 62

    def reservation_tokens(self, seq: Seq) -> int:
        """Tokens reserved for ``seq``: prompt plus its maximum output."""
        return seq.num_prompt_tokens + seq.num_output_tokens

    def max_kv_tokens(self, num_prompt_tokens: int, num_output_tokens: int) -> int:
        """What is reserved must fit the replica."""
        return num_prompt_tokens + num_output_tokens

    def fits(self, state: ReplicaState, seq: Seq, num_blocks: int) -> bool:
        """Admit only when the whole reservation fits next to the others."""
        need = state.blocks.layout.peak_pages(self.reservation_tokens(seq), seq.num_prompt_tokens)
        if self.num_reserved_blocks + need > state.blocks.num_blocks:
            return False
        self._reservations[seq] = need
        self.num_reserved_blocks += need
        return True

    def on_finish(self, seq: Seq) -> None:
        """Release the reservation."""
        self.num_reserved_blocks -= self._reservations.pop(seq)


@SCHEDULERS.register("orca")
class OrcaScheduler(_ReservingScheduler, builtin=True):
    """Orca: iteration-level scheduling with selective batching: each iteration runs every
    running decode plus whole prompts of newly admitted requests (FCFS while
    ``max_num_seqs`` and the reservations allow). ``reserve="request"`` reserves prompt +
    the request's output length (its max_tokens); ``"max_context"`` the model's context.

    Simplified: no token budget unless ``max_num_batched_tokens`` is set.
    """

    config: OrcaSchedulerConfig

    def reservation_tokens(self, seq: Seq) -> int:
        """Per the ``reserve`` option."""
        if self.config.reserve == "max_context":
            return self.max_model_len
        return seq.num_prompt_tokens + seq.num_output_tokens

    def max_kv_tokens(self, num_prompt_tokens: int, num_output_tokens: int) -> int:
        """The reservation must fit the replica."""
        if self.config.reserve == "max_context":
            return self.max_model_len
        return num_prompt_tokens + num_output_tokens

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """All decodes plus newly admitted whole prompts."""
        decodes = self.decode_step(state, state.num_decoding * self.num_tokens_per_decode)
        prefills: list[tuple[Seq, int]] = []
        self.admit_waiting(now, state, self.token_budget, prefills)
        return self.make_batch(state, prefills, decodes)


@SCHEDULERS.register("static")
class StaticScheduler(_ReservingScheduler, builtin=True):
    """Request-level batching (FasterTransformer-style): when the replica is empty, up to
    ``max_num_seqs`` queued requests (FCFS, whose reservations fit) are prefilled together,
    then the batch decodes until its last request finishes; arrivals wait meanwhile.

    Simplified: finished requests leave the batch (no padded computation for them).
    """

    config: StaticSchedulerConfig

    def can_skip(self, state: ReplicaState) -> bool:
        """Nothing is admitted while a batch runs."""
        return not state.swapped

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """A new batch when empty, else a decode step of the current one."""
        if not state.running:
            prefills: list[tuple[Seq, int]] = []
            self.admit_waiting(now, state, self.token_budget, prefills)
            return self.make_batch(state, prefills, [])
        decodes = self.decode_step(state, state.num_decoding * self.num_tokens_per_decode)
        return self.make_batch(state, [], decodes)
