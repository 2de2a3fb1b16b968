"""Sarathi-Serve's stall-free batching (Agrawal et al., OSDI 2024)."""

from __future__ import annotations

from servesim.engine.batch import Batch
from servesim.engine.config import SarathiSchedulerConfig
from servesim.engine.schedulers.base import SCHEDULERS, ReplicaScheduler
from servesim.engine.state import ReplicaState


@SCHEDULERS.register("sarathi")
class SarathiScheduler(ReplicaScheduler, builtin=True):
    """Sarathi-Serve: every iteration first takes all running decodes, then fills the rest of
    the token budget (``chunk_size``) with prefill chunks, ongoing prefills before new ones,
    so a long prompt never pauses decodes ("stall-free batching").

    Simplified: the budget is a fixed token count (the paper derives it from a TBT target
    by profiling; pick ``chunk_size`` accordingly); preemption follows the cache config.
    """

    config: SarathiSchedulerConfig
    supports_skip = True

    def default_budget(self) -> int:
        """The chunk size is the per-iteration token budget."""
        return self.config.chunk_size

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """Decodes first, then chunked prefills under the budget."""
        return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)
