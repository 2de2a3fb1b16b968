"""Request queues: the order in which a scheduler admits queued requests (vLLM's
``RequestQueue``), as policy objects a scheduler holds instead of draining the state itself.

New arrivals and requests preempted by recompute enter the state's ``waiting`` deque (the
front for preempted ones). Around each scheduling step (``ReplicaScheduler.step``) the queue
``absorb``s what entered; admission then reads ``peek`` / ``pop``. FCFS reads ``waiting``
itself, so nothing is moved and a preempted request is first in line at once; priority and
VTC keep their own order, so requests preempted during a step join it at the step's end.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from servesim._mypyc import mypyc_attr
from servesim.engine.batch import Batch
from servesim.engine.sequence import Seq


@mypyc_attr(allow_interpreted_subclasses=True)
class RequestQueue:
    """First come, first served (vLLM's default): the state's ``waiting`` deque as it is.

    Subclasses keep their own order; every method takes ``waiting`` (entries not yet
    absorbed) so a queue never holds a reference to the state.
    """

    def absorb(self, waiting: deque[Seq]) -> None:
        """Take the entries of ``waiting`` into the queue's order (FCFS: leave them there)."""
        return

    def peek(self, waiting: deque[Seq]) -> Seq | None:
        """The next sequence to admit (None when empty)."""
        return waiting[0] if waiting else None

    def pop(self, waiting: deque[Seq]) -> Seq:
        """Remove the sequence ``peek`` returned."""
        return waiting.popleft()

    def num_queued(self, waiting: deque[Seq]) -> int:
        """Requests queued, absorbed or not."""
        return len(waiting)

    def on_batch_done(self, batch: Batch) -> None:
        """A batch ran (a queue that charges service, like VTC, counts it)."""
        return

    def on_finish(self, seq: Seq) -> None:
        """A sequence left the scheduler (finished, handed off or migrated)."""
        return


@mypyc_attr(allow_interpreted_subclasses=True)
class PriorityQueue(RequestQueue):
    """Larger ``Request.priority`` first, then arrival time, then request id (vLLM's
    ``--scheduling-policy priority``)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, Seq]] = []

    def absorb(self, waiting: deque[Seq]) -> None:
        """Push every entry into the heap."""
        heap = self._heap
        while waiting:
            seq = waiting.popleft()
            req = seq.request
            heapq.heappush(heap, (-req.priority, req.arrival_s, seq.sid, seq))

    def peek(self, waiting: deque[Seq]) -> Seq | None:
        """Most urgent queued sequence."""
        return self._heap[0][3] if self._heap else None

    def pop(self, waiting: deque[Seq]) -> Seq:
        """Remove the most urgent queued sequence."""
        return heapq.heappop(self._heap)[3]

    def num_queued(self, waiting: deque[Seq]) -> int:
        """In the heap or not yet absorbed."""
        return len(self._heap) + len(waiting)


@mypyc_attr(allow_interpreted_subclasses=True)
class FairQueue(RequestQueue):
    """Virtual Token Counter (Sheng et al., "Fairness in Serving LLMs", OSDI 2024): each user
    has a counter of service received, ``input_weight`` per prompt token computed plus
    ``output_weight`` per token generated; the next admission goes to the queued user with
    the smallest counter. A user who becomes active again is lifted to the smallest counter
    of the active users, so idling banks no credit.
    """

    def __init__(self, input_weight: float, output_weight: float) -> None:
        self.input_weight = input_weight
        self.output_weight = output_weight
        self.counters: dict[int, float] = {}
        self._queues: dict[int, deque[Seq]] = {}
        self._num_active: dict[int, int] = {}  # queued + running sequences per user
        self._active_seqs: dict[Seq, None] = {}

    def absorb(self, waiting: deque[Seq]) -> None:
        """Each entry joins its user's queue (a preempted one at its front)."""
        while waiting:
            seq = waiting.popleft()
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

    def peek(self, waiting: deque[Seq]) -> Seq | None:
        """Head of the least-served user's queue."""
        user = self._min_user()
        return None if user is None else self._queues[user][0]

    def pop(self, waiting: deque[Seq]) -> Seq:
        """Remove the head of the least-served user's queue."""
        user = self._min_user()
        assert user is not None
        return self._queues[user].popleft()

    def num_queued(self, waiting: deque[Seq]) -> int:
        """In per-user queues or not yet absorbed."""
        return sum(len(q) for q in self._queues.values()) + len(waiting)

    def on_batch_done(self, batch: Batch) -> None:
        """Charge each user for the tokens served in the batch."""
        w_in, w_out = self.input_weight, self.output_weight
        counters = self.counters
        for seq, num_tokens in batch.prefills:
            counters[seq.request.user_id] += w_in * num_tokens
        for seq in batch.decodes:
            counters[seq.request.user_id] += w_out

    def on_finish(self, seq: Seq) -> None:
        """The user has one fewer active request."""
        self._num_active[seq.request.user_id] -= 1
        del self._active_seqs[seq]
