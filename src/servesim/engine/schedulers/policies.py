"""Queue policies on top of chunked continuous batching: preemptive priority and VTC fairness."""

from __future__ import annotations

from servesim.engine.batch import Batch
from servesim.engine.config import FairSchedulerConfig, PrioritySchedulerConfig
from servesim.engine.schedulers.base import SCHEDULERS, ReplicaScheduler
from servesim.engine.schedulers.queues import FairQueue, PriorityQueue, RequestQueue
from servesim.engine.sequence import Seq
from servesim.engine.state import ReplicaState


@SCHEDULERS.register("priority")
class PriorityScheduler(ReplicaScheduler, builtin=True):
    """Preemptive priority (larger ``Request.priority`` first, then arrival order), as vLLM's
    ``--scheduling-policy priority``: when the most urgent queued request cannot be admitted
    (no sequence slot or KV blocks) and a less urgent one runs, the least urgent running
    sequence (latest admitted among equals) is preempted by the cache's preemption mode, its
    swap time or recompute charged like any preemption. Batches are chunked, decodes first.
    """

    config: PrioritySchedulerConfig
    supports_skip = True

    def make_queue(self) -> RequestQueue:
        """By priority, then arrival."""
        return PriorityQueue()

    def default_budget(self) -> int:
        """The configured chunk size."""
        return self.config.chunk_size

    def can_skip(self, state: ReplicaState) -> bool:
        """A queued request may trigger priority preemption at any step."""
        return not state.swapped and not self.num_queued(state)

    def pick_victim(self, state: ReplicaState) -> Seq:
        """Least urgent running sequence, most recently admitted among equals."""
        victim = None
        for seq in state.running:
            if victim is None or seq.request.priority <= victim.request.priority:
                victim = seq
        assert victim is not None
        return victim

    def _preempt_for_urgent(self, state: ReplicaState) -> None:
        while state.running:
            head = self.peek_waiting(state)
            if head is None:
                return
            victim = self.pick_victim(state)
            if victim.request.priority >= head.request.priority:
                return
            hit_tokens, _ = state.admission_cost(head, 0)
            chunk = min(head.prefill_target - hit_tokens, self.token_budget)
            _, need = state.admission_cost(head, chunk)
            if len(state.running) < self.max_num_seqs and self.fits(state, head, need):
                return
            state.preempt(victim)
            self.queue.absorb(state.waiting)

    def swap_in_waiting(self, state: ReplicaState, budget: int, decodes: list[Seq]) -> int:
        """Swapped sequences return only when no more urgent request is queued."""
        head = self.peek_waiting(state)
        swapped = state.swapped
        if head is not None and swapped and head.request.priority > swapped[0].request.priority:
            return budget
        return super().swap_in_waiting(state, budget, decodes)

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """Priority preemption, then a chunked decodes-first step admitting by priority."""
        self._preempt_for_urgent(state)
        return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)


@SCHEDULERS.register("fair")
class FairScheduler(ReplicaScheduler, builtin=True):
    """Virtual Token Counter fairness (``FairQueue``: Sheng et al., OSDI 2024): the next
    admission goes to the queued user who received the least service. Batches are chunked,
    decodes first.
    """

    config: FairSchedulerConfig

    def make_queue(self) -> RequestQueue:
        """Per-user queues ordered by virtual token counters."""
        return FairQueue(self.config.input_weight, self.config.output_weight)

    @property
    def counters(self) -> dict[int, float]:
        """Service received per user (the queue's virtual token counters)."""
        assert isinstance(self.queue, FairQueue)
        return self.queue.counters

    def default_budget(self) -> int:
        """The configured chunk size."""
        return self.config.chunk_size

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """Chunked decodes-first step admitting by smallest virtual counter."""
        return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)

    def can_skip(self, state: ReplicaState) -> bool:
        """Counters change every token; keep every step visible."""
        return False
