"""When a replica's batches run: its pipeline-stage timeline, the price of a batch
shape on its plan, and the cost of moving KV blocks over its host link.

These are the narrow pieces a ``VirtualEngine`` is handed by its replica (instead of the
replica itself): it prices a batch, books it on the stages and schedules its completion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from servesim.perf.fastcost import FastCost
from servesim.perf.types import BatchShape, PerfModel, ReplicaPlan, StageTimes

# Distinct batch shapes memoised per replica before the memo is dropped (bounded memory).
_PERF_CACHE_LIMIT = 65_536


class StageTimeline:
    """When each pipeline stage of one replica is next free (micro-batches pass in order)."""

    __slots__ = ("stage_free_s",)

    def __init__(self, num_stages: int) -> None:
        self.stage_free_s = [0.0] * num_stages

    def reserve(self, now: float, stage_s: tuple[float, ...], overhead_s: float) -> float:
        """Book the stages for a micro-batch formed at ``now``; returns when it completes.

        The host-side overhead (and any swap copy) delays the first stage; stage ``s`` starts
        when the micro-batch left stage ``s-1`` and the stage is free (FIFO).
        """
        free = self.stage_free_s
        if len(free) == 1:
            end = now + (overhead_s + stage_s[0])
            free[0] = end
            return end
        t = now
        for s, dur in enumerate(stage_s):
            if s == 0:
                dur += overhead_s
            t = max(t, free[s]) + dur
            free[s] = t
        return t


class BatchPricer:
    """Iteration times of batch shapes on one replica plan.

    A cost model with a fast path for the plan (``RooflinePerfModel.pricer`` returning a
    ``FastCost``) is called directly: shapes almost never repeat on it (the decode context
    grows every step) and hashing one costs more than a hit saves. Any other model is
    memoised by shape.

    Attributes:
        perf: the cost model (its ``iteration_time`` also prices other plans: a draft's).
        plan: the replica's plan every shape is priced on.
        fn: what prices one shape (the fast path itself, or the memo): the engine's loop
            calls it without going through ``__call__``.
    """

    __slots__ = ("_cache", "fn", "perf", "plan")

    def __init__(self, perf: PerfModel, plan: ReplicaPlan) -> None:
        self.perf = perf
        self.plan = plan
        self._cache: dict[BatchShape, StageTimes] = {}
        pricer = getattr(perf, "pricer", None)
        fast = pricer(plan) if callable(pricer) else None
        self.fn: Callable[[BatchShape], StageTimes] = (
            fast if isinstance(fast, FastCost) else self._memoised
        )

    def __call__(self, shape: BatchShape) -> StageTimes:
        """Iteration time of ``shape`` on the replica's plan."""
        return self.fn(shape)

    def _memoised(self, shape: BatchShape) -> StageTimes:
        cache = self._cache
        times = cache.get(shape)
        if times is None:
            times = self.perf.iteration_time(self.plan, shape)
            if len(cache) >= _PERF_CACHE_LIMIT:
                cache.clear()
            cache[shape] = times
        return times


@dataclass(frozen=True, slots=True)
class SwapLink:
    """KV swap cost over a replica's host links (every GPU copies its own KV slice over its
    own link, in parallel).

    Attributes:
        s_per_block: seconds to copy one KV block (one GPU's slice) over one host link.
        latency_s: the link's latency, paid once per step that swaps.
        bytes_per_block: bytes of one KV block over all the replica's GPUs (counters).
    """

    s_per_block: float = 0.0
    latency_s: float = 0.0
    bytes_per_block: float = 0.0

    def time_s(self, num_blocks: int) -> float:
        """Copy time of ``num_blocks`` blocks in one step (0 for none)."""
        return num_blocks * self.s_per_block + self.latency_s if num_blocks else 0.0
