"""Request queues as policy objects (schedulers/queues.py): each order hand-checked, and a
scheduler changes its admission order by ``make_queue`` alone."""

from __future__ import annotations

from collections import deque

import numpy as np

from servesim.engine import Batch, CustomSchedulerConfig
from servesim.engine.schedulers.queues import FairQueue, PriorityQueue, RequestQueue
from servesim.engine.sequence import Seq
from servesim.engine.simulation import run_simulation
from tests.engine.fakes import ConstantPerf, req, setup


def _seqs(*specs: tuple[float, int, int]) -> list[Seq]:
    """(arrival, priority, user) per sequence; ids in order."""
    return [req(i, t, 10, 5, priority=p, user_id=u) for i, (t, p, u) in enumerate(specs)]  # type: ignore[misc]


def _as_seqs(requests: list) -> list[Seq]:  # type: ignore[type-arg]
    return [Seq(r, i) for i, r in enumerate(requests)]


def _drain(queue: RequestQueue, waiting: deque[Seq]) -> list[int]:
    queue.absorb(waiting)
    out = []
    while queue.peek(waiting) is not None:
        out.append(queue.pop(waiting).sid)
    return out


def test_fcfs_reads_waiting_in_place() -> None:
    seqs = _as_seqs(_seqs((0.0, 0, 0), (1.0, 5, 0), (2.0, 1, 0)))
    waiting = deque(seqs)
    queue = RequestQueue()
    queue.absorb(waiting)
    assert len(waiting) == 3 and queue.num_queued(waiting) == 3  # nothing moved
    waiting.appendleft(seqs[2])  # a preempted request is first in line at once
    assert queue.peek(waiting) is seqs[2]


def test_priority_orders_by_priority_then_arrival() -> None:
    seqs = _as_seqs(_seqs((0.0, 0, 0), (1.0, 5, 0), (2.0, 1, 0), (0.5, 5, 0)))
    waiting = deque(seqs)
    queue = PriorityQueue()
    assert queue.num_queued(waiting) == 4
    assert _drain(queue, waiting) == [3, 1, 2, 0]
    assert not waiting


def test_fair_admits_the_least_served_user_and_charges_service() -> None:
    seqs = _as_seqs(_seqs((0.0, 0, 7), (0.1, 0, 7), (0.2, 0, 9)))
    waiting = deque(seqs)
    queue = FairQueue(input_weight=1.0, output_weight=2.0)
    queue.absorb(waiting)
    first = queue.pop(waiting)  # both users at 0: the first user seen
    assert first.sid == 0
    # user 7 served 100 prompt tokens and 3 outputs: 100 + 6 = 106
    queue.on_batch_done(Batch(prefills=[(first, 100)], decodes=[first] * 3))
    assert queue.counters == {7: 106.0, 9: 0.0}
    assert queue.peek(waiting).sid == 2  # type: ignore[union-attr]  # user 9 is behind
    queue.on_finish(first)
    assert _drain(queue, waiting) == [2, 1]


SCRIPT = """
from servesim.engine import ReplicaScheduler
from servesim.engine.schedulers.queues import PriorityQueue

class {name}(ReplicaScheduler):
    def make_queue(self):
        return {queue}

    def schedule(self, now, state):
        return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=True)
"""


def _first_tokens(tmp_path, name: str, queue: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name.lower()}.py"
    path.write_text(SCRIPT.format(name=name, queue=queue))
    cfg = CustomSchedulerConfig(path=f"{path}:{name}", max_num_seqs=1)
    # one sequence at a time: admission order is completion order
    requests = [req(i, 0.0, 10, 2, priority=p) for i, p in enumerate([0, 3, 1, 2])]  # type: ignore[arg-type]
    recs = run_simulation(requests, [setup(cfg)], ConstantPerf(0.1), check_invariants=True)
    cols = recs.requests.view()
    return cols["request_id"][np.argsort(cols["first_token_s"], kind="stable")]


def test_a_scheduler_changes_its_order_by_its_queue_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert list(_first_tokens(tmp_path, "Fifo", "super().make_queue()")) == [0, 1, 2, 3]
    assert list(_first_tokens(tmp_path, "Urgent", "PriorityQueue()")) == [1, 3, 2, 0]
