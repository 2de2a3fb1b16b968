"""Policies the lab tests evaluate: honest ones, cheaters and broken ones (plain user files)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

from servesim.engine.batch import Batch
from servesim.engine.schedulers import ReplicaScheduler
from servesim.engine.sequence import Seq
from servesim.engine.simulation import ReplicaView
from servesim.engine.state import ReplicaState
from servesim.workload.request import Request


class Fcfs(ReplicaScheduler):
    """First come, first served with chunked prefill (the base class's shared steps)."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        return self.decodes_first(now, state, allow_swap=True, admit_after_preempt=False)


class DropHalf(Fcfs):
    """Never admits requests with an odd id: half the requests are silently starved."""

    def peek_waiting(self, state: ReplicaState) -> Seq | None:
        return next((s for s in state.waiting if s.request.request_id % 2 == 0), None)

    def pop_waiting(self, state: ReplicaState) -> Seq:
        seq = self.peek_waiting(state)
        assert seq is not None
        state.waiting.remove(seq)
        return seq


class Sleeper(Fcfs):
    """Sleeps in its fifth call (a hang the wall-clock limit must stop)."""

    num_calls = 0

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        Sleeper.num_calls += 1
        if Sleeper.num_calls >= 5:
            time.sleep(600)
        return super().schedule(now, state)


class Spinner(Fcfs):
    """Burns 60 ms of CPU in every call (the per-hook limit must stop it)."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        end = time.thread_time() + 0.06
        while time.thread_time() < end:
            pass
        return super().schedule(now, state)


class Raiser(Fcfs):
    """Raises once simulated time passes 1 s."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        if now > 1.0:
            raise ValueError("boom after one second")
        return super().schedule(now, state)


class WrongType(Fcfs):
    """Returns a list instead of a Batch (breaks the scheduler contract)."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        batch = super().schedule(now, state)
        return [batch] if batch is not None else None  # type: ignore[return-value]


class Hog(Fcfs):
    """Allocates memory without bound."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        self.hoard = [bytearray(2**26) for _ in range(10_000)]
        return super().schedule(now, state)


class FirstReplicaRouter:
    """Sends everything to replica 0 (legal, bad)."""

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        return 0


class OutOfRangeRouter:
    """Returns a replica that does not exist (breaks the router contract)."""

    def route(self, request: Request, views: Sequence[ReplicaView]) -> int:
        return len(views)


class NotAPolicy:
    """Neither a scheduler nor a router."""


class Deaf(Fcfs):
    """Blocks SIGALRM, then hangs: only the parent's kill can stop it."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(600)
        return super().schedule(now, state)


class Exiter(Fcfs):
    """Ends its process abruptly."""

    def schedule(self, now: float, state: ReplicaState) -> Batch | None:
        os._exit(3)
