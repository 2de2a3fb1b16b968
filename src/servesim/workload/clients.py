"""Benchmark clients: when each request is *sent*, as the tools users measure with send them.

A workload says what the requests are and when each would be sent open-loop (its arrival
times: the pacing). A ``BenchmarkClient`` adds what ``vllm bench serve`` adds on top
(``vllm/benchmarks/serve.py``, ``benchmark``):

- ``max_concurrency``: at most N requests in flight. A request whose pacing time has come
  waits for a free slot, first come first served (vLLM wraps every request in an
  ``asyncio.Semaphore(max_concurrency)``); with ``--request-rate inf`` (``immediate``
  arrivals) this is the closed loop "the next request is sent when one completes". Latencies
  are measured from the send, not from the pacing time (vLLM starts the request's clock
  inside the semaphore).
- ``num_warmups``: before the benchmark, the first request is sent that many times (under the
  same concurrency cap) and the run starts once they have all completed; warm-up requests are
  left out of every metric (they still warm the prefix cache, as on a real server).
- Closed-loop sessions (``closed_sessions``): turn k+1 of a conversation is sent its think time
  after turn k's *response* completed (not after turn k was sent, as in the open-loop
  workload), so a slow server slows the user down. The think time is the gap the session
  workload drew between the two turns; the next turn reuses the conversation's prefix blocks.
  Under ``max_concurrency`` a conversation holds its slot from its first turn until its last
  turn completes (N concurrent users).

The client is driven by its caller (the cluster runner) through three calls: ``poll(now)``
returns the requests to send now (their ``arrival_s`` set to ``now``), ``next_wakeup()`` the
next time ``poll`` has something to do without a completion, and ``on_done(request_id, t)``
reports a response completed (or was rejected) at ``t``. It holds the workload in memory (a
benchmark's few thousand requests; sessions need their turns at hand).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from servesim.core.errors import ConfigError
from servesim.workload.request import Request


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How requests are sent (``vllm bench serve`` flags).

    Attributes:
        max_concurrency: at most this many requests (closed sessions: conversations) in
            flight; None: no cap (open loop).
        num_warmups: warm-up copies of the first request, run to completion before the
            measured requests and excluded from metrics.
        closed_sessions: a session's next turn is sent after the previous response (plus the
            think time); False keeps the workload's open-loop turn times.
    """

    max_concurrency: int | None = None
    num_warmups: int = 0
    closed_sessions: bool = True

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError("max_concurrency", self.max_concurrency, "must be >= 1")
        if self.num_warmups < 0:
            raise ConfigError("num_warmups", self.num_warmups, "must be >= 0")


class BenchmarkClient:
    """Sends a workload's requests as a benchmark client does (module docstring)."""

    def __init__(self, requests: Iterable[Request], options: ClientOptions) -> None:
        self.options = options
        main = list(requests)
        self.num_requests = len(main)
        self._first: list[Request] = []  # sent at their pacing time, one slot each
        self._next_turn: dict[int, tuple[Request, float]] = {}  # id -> (next turn, think s)
        last_turn: dict[int, Request] = {}
        for request in main:
            sid = request.session_id
            if sid is None or not options.closed_sessions or sid not in last_turn:
                self._first.append(request)
            else:
                prev = last_turn[sid]
                self._next_turn[prev.request_id] = (request, request.arrival_s - prev.arrival_s)
            if sid is not None:
                last_turn[sid] = request
        next_id = max((r.request_id for r in main), default=-1) + 1
        num_warmups = options.num_warmups if main else 0
        self.warmup_ids = frozenset(range(next_id, next_id + num_warmups))
        warmups = [replace(main[0], request_id=i, arrival_s=0.0) for i in sorted(self.warmup_ids)]
        # The phase's requests waiting for their pacing time or a slot, in pacing order.
        self._pending: deque[tuple[float, Request]] = deque((0.0, r) for r in warmups)
        self._timers: list[tuple[float, int, Request]] = []  # later turns: (send at, id, turn)
        self._in_flight: dict[int, Request] = {}
        self._num_warmups_left = num_warmups
        self.num_busy_slots = 0
        self.num_sent = 0
        self.main_start_s: float | None = None  # when the measured requests start
        if not warmups:
            self._start_main(0.0)

    @property
    def num_in_flight(self) -> int:
        """Requests sent and not yet completed."""
        return len(self._in_flight)

    @property
    def has_unsent(self) -> bool:
        """True while some request has still to be sent."""
        return bool(self._pending or self._timers or self._next_turn or self._num_warmups_left)

    def _start_main(self, now_s: float) -> None:
        self.main_start_s = now_s
        self._pending = deque((now_s + r.arrival_s, r) for r in self._first)
        self._first = []

    def _has_slot(self) -> bool:
        cap = self.options.max_concurrency
        return cap is None or self.num_busy_slots < cap

    def poll(self, now_s: float) -> list[Request]:
        """The requests to send at ``now_s`` (their ``arrival_s`` is ``now_s``), in send order."""
        out: list[Request] = []
        timers = self._timers
        while timers and timers[0][0] <= now_s:
            out.append(heapq.heappop(timers)[2])  # its session already holds a slot
        pending = self._pending
        while pending and pending[0][0] <= now_s and self._has_slot():
            out.append(pending.popleft()[1])
            self.num_busy_slots += 1
        sent = [replace(r, arrival_s=now_s) for r in out]
        for request in sent:
            self._in_flight[request.request_id] = request
        self.num_sent += len(sent)
        return sent

    def next_wakeup(self) -> float | None:
        """When ``poll`` next has a request to send unless a completion comes first."""
        times = []
        if self._timers:
            times.append(self._timers[0][0])
        if self._pending and self._has_slot():
            times.append(self._pending[0][0])
        return min(times) if times else None

    def on_done(self, request_id: int, now_s: float) -> None:
        """Request ``request_id`` completed (or was rejected) at ``now_s``."""
        del self._in_flight[request_id]
        if request_id in self.warmup_ids:
            self.num_busy_slots -= 1
            self._num_warmups_left -= 1
            if not self._num_warmups_left:
                self._start_main(now_s)
            return
        follow = self._next_turn.pop(request_id, None)
        if follow is None:
            self.num_busy_slots -= 1  # the request's, or its conversation's, slot
            return
        turn, think_s = follow
        heapq.heappush(self._timers, (now_s + think_s, turn.request_id, turn))
