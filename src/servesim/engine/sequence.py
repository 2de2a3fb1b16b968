"""``Seq``: the engine's mutable per-request state while a request is alive in a replica."""

from __future__ import annotations

import math
from enum import IntEnum
from typing import TYPE_CHECKING

from servesim.workload.request import Request

if TYPE_CHECKING:
    from numpy.random import Generator


class SeqStatus(IntEnum):
    """Where a sequence is in its life."""

    WAITING = 0  # queued (new, or preempted by recompute)
    PREFILL = 1  # admitted, prompt (or recompute) tokens still being computed
    DECODING = 2  # generating one token per decode iteration
    SWAPPED = 3  # preempted, its KV in host memory
    FINISHED = 4


class Seq:
    """One request inside a replica.

    Token accounting: ``prefill_target`` tokens must be computed (the prompt, or prompt plus
    generated tokens after a recompute preemption) before the next token is emitted; a
    decode step then reads ``num_prompt_tokens + num_emitted`` tokens of KV (the new token's
    included) and leaves that many in the cache.

    While the sequence is a member of its ``DecodeGroup`` the group owns ``num_emitted`` and
    the private block count (they advance implicitly each decode tick); ``DecodeGroup.leave``
    writes them back.
    """

    __slots__ = (
        "block_keys",
        "can_register",
        "first_scheduled_s",
        "first_token_s",
        "gkey",
        "join_tick",
        "last_token_s",
        "max_gap_s",
        "num_computed",
        "num_emitted",
        "num_hit_tokens",
        "num_output_tokens",
        "num_preemptions",
        "num_private",
        "num_prompt_tokens",
        "num_swapped_blocks",
        "num_window_keys",
        "prefill_target",
        "prompt_keys",
        "request",
        "row",
        "sid",
        "spec_credit",
        "spec_rng",
        "status",
        "tick_base",
        "version",
    )

    def __init__(self, request: Request, row: int) -> None:
        self.request = request
        self.row = row  # index in SimulationRecords.requests
        self.sid = request.request_id  # deterministic tie-breaker in heaps
        self.num_prompt_tokens = request.num_prompt_tokens
        self.num_output_tokens = request.num_output_tokens
        self.num_emitted = 0
        self.num_computed = 0  # tokens of the current prefill already in KV
        self.prefill_target = request.num_prompt_tokens
        self.status = SeqStatus.WAITING
        self.first_scheduled_s = math.nan
        self.first_token_s = math.nan
        self.last_token_s = math.nan
        self.max_gap_s = 0.0
        self.num_private = 0  # private KV blocks held (stale while a group member)
        self.block_keys: list[int] = []  # cached (shared) prompt blocks held, leading
        self.num_window_keys = 0  # of which sliding-group pages (full + sliding pools)
        self.prompt_keys: list[int] | None = None  # cacheable prompt block keys (lazy)
        self.can_register = True
        self.num_hit_tokens = 0
        self.num_preemptions = 0
        self.num_swapped_blocks = 0
        self.tick_base = 0
        self.join_tick = 0
        self.gkey = 0
        self.version = 0  # bumped on leaving the group (invalidates lazy heap entries)
        # speculative decoding (engine.speculative): the fraction of a token carried to the
        # next step (expected mode) and the request's own acceptance stream (sampled mode)
        self.spec_credit = 0.0
        self.spec_rng: Generator | None = None

    @property
    def num_prefill_remaining(self) -> int:
        """Tokens still to compute before the next token can be emitted."""
        return self.prefill_target - self.num_computed

    @property
    def num_kv_tokens(self) -> int:
        """Tokens whose KV this sequence holds (valid when not a group member)."""
        if self.status == SeqStatus.DECODING:
            return self.num_prompt_tokens + self.num_emitted - 1
        return self.num_computed

    @property
    def num_blocks(self) -> int:
        """KV blocks held on the GPU (valid when not a group member)."""
        return self.num_private + len(self.block_keys)

    def __repr__(self) -> str:
        return f"Seq({self.sid}, {self.status.name}, emitted={self.num_emitted})"
