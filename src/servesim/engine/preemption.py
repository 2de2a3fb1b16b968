"""How a preempted sequence gives up its KV: swapped to host memory or dropped and recomputed.

A small policy, asked once per preempted sequence (``PreemptionChoice.choose``):

- ``FixedPreemption`` (the default, ``cache.preemption_choice: fixed``): one mode for all,
  ``cache.preemption_mode`` (vLLM's ``--preemption-mode``; vLLM V1 always recomputes).
- ``CheaperPreemption`` (``cache.preemption_choice: cheaper``): swap when copying the
  sequence's KV out to host memory and back over the host link takes less than recomputing
  it (a prefill of its prompt and generated tokens), else recompute. Long contexts on a slow
  model favour swapping; short ones on a fast GPU with a slow host link favour recomputing.

Either way ``ReplicaState.preempt`` keeps the books, and falls back to recompute for a
sequence still in prefill or when the host swap space is full (as vLLM does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from servesim.engine.config import CacheConfig
from servesim.engine.links import EngineLinks
from servesim.engine.sequence import Seq
from servesim.engine.timeline import SwapLink
from servesim.perf.types import BatchShape, StageTimes

SWAP = "swap"
RECOMPUTE = "recompute"


class PreemptionChoice(Protocol):
    """Picks ``"swap"`` or ``"recompute"`` for one preempted sequence."""

    def choose(self, seq: Seq, num_blocks: int) -> str:
        """The mode for ``seq``, which holds ``num_blocks`` KV blocks on the GPU."""
        ...


class FixedPreemption:
    """The same mode for every sequence (vLLM's behaviour)."""

    __slots__ = ("mode",)

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def choose(self, seq: Seq, num_blocks: int) -> str:
        """The configured mode."""
        return self.mode


class CheaperPreemption:
    """Swap when the round trip over the host link is faster than recomputing the KV.

    Attributes:
        swap: the replica's host-link swap cost.
        recompute_s: seconds to recompute ``n`` tokens of KV (a one-chunk prefill of them).
    """

    __slots__ = ("recompute_s", "swap")

    def __init__(self, swap: SwapLink, recompute_s: Callable[[int], float]) -> None:
        self.swap = swap
        self.recompute_s = recompute_s

    def choose(self, seq: Seq, num_blocks: int) -> str:
        """``swap`` when out + back costs less than recomputing prompt + generated tokens."""
        round_trip_s = 2.0 * self.swap.time_s(num_blocks)
        num_tokens = seq.num_prompt_tokens + seq.num_emitted
        return SWAP if round_trip_s < self.recompute_s(num_tokens) else RECOMPUTE


def prefill_seconds(price: Callable[[BatchShape], StageTimes]) -> Callable[[int], float]:
    """``recompute_s`` for ``CheaperPreemption``: the stage time of one prefill chunk of
    ``n`` tokens from an empty cache, priced by ``price`` (the replica's perf model)."""

    def recompute_s(num_tokens: int) -> float:
        shape = BatchShape(
            num_prefill_seqs=1,
            num_prefill_tokens=num_tokens,
            prefill_chunk_sq=num_tokens * num_tokens,
            max_prefill_chunk_tokens=num_tokens,
        )
        return sum(price(shape).stage_s)

    return recompute_s


def preemption_for(
    cache: CacheConfig, scheduler_mode: str | None, links: EngineLinks
) -> PreemptionChoice:
    """The policy of one engine: the scheduler's own mode if it declares one (vLLM V1
    recomputes), else the cache config's ``preemption_choice``."""
    if scheduler_mode is not None:
        return FixedPreemption(scheduler_mode)
    if cache.preemption_choice == "cheaper":
        return CheaperPreemption(links.swap, prefill_seconds(links.price))
    return FixedPreemption(cache.preemption_mode)
