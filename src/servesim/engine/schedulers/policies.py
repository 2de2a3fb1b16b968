"""Queue policies on top of chunked continuous batching: preemptive priority and VTC fairness."""

from __future__ import annotations

import heapq
import math
from collections import deque

from servesim.engine.batch import Batch
from servesim.engine.config import FairSchedulerConfig, PrioritySchedulerConfig
from servesim.engine.schedulers.base import SCHEDULERS, ReplicaScheduler
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

    def __init__(self, config: PrioritySchedulerConfig, *, max_model_len: int) -> None:
        super().__init__(config, max_model_len=max_model_len)
        self._queue: list[tuple[int, float, int, Seq]] = []

    def default_budget(self) -> int:
        """The configured chunk size."""
        return self.config.chunk_size

    def can_skip(self, state: ReplicaState) -> bool:
        """A queued request may trigger priority preemption at any step."""
        return not state.swapped and not self.num_queued(state)

    def num_queued(self, state: ReplicaState) -> int:
        """Queued in the priority heap or not yet drained."""
        return len(self._queue) + len(state.waiting)

    def _drain(self, state: ReplicaState) -> None:
        while state.waiting:
            seq = state.waiting.popleft()
            req = seq.request
            heapq.heappush(self._queue, (-req.priority, req.arrival_s, seq.sid, seq))

    def peek_waiting(self, state: ReplicaState) -> Seq | None:
        """Most urgent queued sequence."""
        return self._queue[0][3] if self._queue else None

    def pop_waiting(self, state: ReplicaState) -> Seq:
        """Remove the most urgent queued sequence."""
        return heapq.heappop(self._queue)[3]

    def pick_victim(self, state: ReplicaState) -> Seq:
        """Least urgent running sequence, most recently admitted among equals."""
        victim = None
        for seq in state.running:
            if victim is None or seq.request.priority <= victim.request.priority:
                victim = seq
        assert victim is not None
        return victim

    def _preempt_for_urgent(self, state: ReplicaState) -> None:
        while self._queue and state.running:
            head = self._queue[0][3]
            victim = self.pick_victim(state)
            if victim.request.priority >= head.request.priority:
                return
            hit_tokens, _ = state.admission_cost(head, 0)
            chunk = min(head.prefill_target - hit_tokens, self.token_budget)
            _, need = state.admission_cost(head, chunk)
            if len(state.running) < self.max_num_seqs and self.fits(state, head, need):
                return
            state.preempt(victim)
            self._drain(state)

    def swap_in_waiting(self, state: ReplicaState, budget: int, decodes: list[Seq]) -> int:
        """Swapped sequences return only when no more urgent request is queued."""
        head = self.peek_waiting(state)
        swapped = state.swapped
        if head is not None and swapped and head.request.priority > swapped[0].request.priority:
            return budget
        return super().swap_in_waiting(state, budget, decodes)

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """Priority preemption, then a chunked decodes-first step admitting by priority."""
        self._drain(state)
        self._preempt_for_urgent(state)
        batch = self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)
        self._drain(state)
        return batch


@SCHEDULERS.register("fair")
class FairScheduler(ReplicaScheduler, builtin=True):
    """Virtual Token Counter (Sheng et al., "Fairness in Serving LLMs", OSDI 2024): each user
    has a counter of service received, ``input_weight`` per prompt token computed plus
    ``output_weight`` per token generated; the next admission goes to the queued user with
    the smallest counter. A user who becomes active again is lifted to the smallest counter
    of the active users, so idling banks no credit. Batches are chunked, decodes first.
    """

    config: FairSchedulerConfig

    def __init__(self, config: FairSchedulerConfig, *, max_model_len: int) -> None:
        super().__init__(config, max_model_len=max_model_len)
        self.counters: dict[int, float] = {}
        self._queues: dict[int, deque[Seq]] = {}
        self._num_active: dict[int, int] = {}  # queued + running sequences per user
        self._active_seqs: dict[Seq, None] = {}

    def default_budget(self) -> int:
        """The configured chunk size."""
        return self.config.chunk_size

    def num_queued(self, state: ReplicaState) -> int:
        """Queued in per-user queues or not yet drained."""
        return sum(len(q) for q in self._queues.values()) + len(state.waiting)

    def _drain(self, state: ReplicaState) -> None:
        while state.waiting:
            seq = state.waiting.popleft()
            user = seq.request.user_id
            queue = self._queues.setdefault(user, deque())
            if seq in self._active_seqs:
                queue.appendleft(seq)  # preempted: back at the front of its user's queue
                continue
            self._active_seqs[seq] = None
            if not self._num_active.get(user):
                active = [self.counters[u] for u, n in self._num_active.items() if n]
                floor = min(active, default=0.0)
                self.counters[user] = max(self.counters.get(user, 0.0), floor)
            self._num_active[user] = self._num_active.get(user, 0) + 1
            queue.append(seq)

    def _min_user(self) -> int | None:
        best, best_counter = None, math.inf
        for user, queue in self._queues.items():
            if queue and self.counters[user] < best_counter:
                best, best_counter = user, self.counters[user]
        return best

    def peek_waiting(self, state: ReplicaState) -> Seq | None:
        """Head of the least-served user's queue."""
        user = self._min_user()
        return None if user is None else self._queues[user][0]

    def pop_waiting(self, state: ReplicaState) -> Seq:
        """Remove the head of the least-served user's queue."""
        user = self._min_user()
        assert user is not None
        return self._queues[user].popleft()

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        """Chunked decodes-first step admitting by smallest virtual counter."""
        self._drain(state)
        batch = self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)
        self._drain(state)
        return batch

    def can_skip(self, state: ReplicaState) -> bool:
        """Counters change every token; keep every step visible."""
        return False

    def on_batch_done(self, batch: Batch, now: float) -> None:
        """Charge each user for the tokens served in the batch."""
        w_in, w_out = self.config.input_weight, self.config.output_weight
        counters = self.counters
        for seq, num_tokens in batch.prefills:
            counters[seq.request.user_id] += w_in * num_tokens
        for seq in batch.decodes:
            counters[seq.request.user_id] += w_out

    def on_finish(self, seq: Seq) -> None:
        """The user has one fewer active request."""
        self._num_active[seq.request.user_id] -= 1
        del self._active_seqs[seq]
