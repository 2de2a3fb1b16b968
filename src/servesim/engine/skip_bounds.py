"""Skip-ahead limits that come from outside one replica: arrivals routed ahead of the clock
(``RoutedAhead``) and the earliest KV hand-off to a decode replica (``KVArrivalBound``). The
runs themselves are in ``skip``.

Per-replica limits (``RoutedAhead``): when the router's choice cannot depend on replica state
(round robin, or a router declaring ``reads_state = False``) and nothing else crosses between
replicas (no autoscaling, migration, KV transfers, DP groups or ``stop_when``), arrivals are
read and routed a few ahead of the clock, in arrival order, so each replica skips up to its
own next arrival instead of the next one anywhere (issue 14: at 64 replicas the global limit
cut decode runs into ~2x the rows of one replica's). Routed in the same order, a stateless
router picks the same replicas, so results are those of routing on arrival.

Replicas receiving KV (disaggregated decode pools, ``KVArrivalBound``): new work reaches a
decode replica only as a KV transfer's arrival, scheduled when a prefill replica hands a
finished prompt off at the end of one of its steps, where the decode router may also read
the decode replica's state. So a decode replica skips only up to the earliest of: the
transfers already on their way (to any decode replica), the end of every prefill engine's
step in flight (now, for one between steps), every prefill replica's next front-end entry,
and the next step start of every decode engine with KV waiting for memory (admitting it
frees the sender's copy, which may let a stalled prefill replica start), and the next arrival
while some prefill engine is idle (an idle engine wakes only on one of these or on an
arrival; a request reaching an engine in flight waits for its step end). Before that bound
nothing can read or change the skipping replica, and steps ending at the bound are left to
the event loop, so the order of events at every instant is that of stepping.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servesim.core.events import EventLoop
    from servesim.engine.sequence import Seq
    from servesim.engine.vengine import VirtualEngine
    from servesim.workload.request import Request


class RoutedAhead:
    """Arrivals read and routed ahead of the clock, in arrival order, and each replica's
    next one (the skip-ahead limit of that replica alone)."""

    __slots__ = ("depth", "done", "own", "queue", "read", "route")

    def __init__(
        self,
        read: Callable[[], Request | None],
        route: Callable[[Request], int],
        num_replicas: int,
    ) -> None:
        self.read = read
        self.route = route
        # Reading stops this far ahead (a replica a router seldom picks would otherwise pull
        # the whole stream into memory); round robin needs one turn (num_replicas).
        self.depth = 4 * num_replicas
        self.done = False
        self.queue: deque[tuple[Request, int]] = deque()  # read, arrival event not scheduled
        # per replica: arrival times routed to it that have not happened yet
        self.own: list[deque[float]] = [deque() for _ in range(num_replicas)]

    def _read_one(self) -> bool:
        if self.done:
            return False
        request = self.read()
        if request is None:
            self.done = True
            return False
        index = self.route(request)
        self.queue.append((request, index))
        self.own[index].append(request.arrival_s)
        return True

    def pop(self) -> tuple[Request, int] | None:
        """The next arrival to schedule and its replica (None when there is none)."""
        if not self.queue and not self._read_one():
            return None
        return self.queue.popleft()

    def arrived(self, index: int) -> None:
        """The earliest arrival routed to replica ``index`` happened."""
        self.own[index].popleft()

    def limit(self, index: int) -> float:
        """Earliest time an arrival can reach replica ``index``."""
        own = self.own[index]
        while not own and len(self.queue) < self.depth and self._read_one():
            pass
        if own:
            return own[0]
        if self.done:
            return math.inf
        # none routed here yet: an unread arrival (maybe here) comes no earlier than the last read
        return self.queue[-1][0].arrival_s


class KVArrivalBound:
    """The earliest time new KV, or a state-reading router, can reach a decode replica (the
    skip-ahead limit of the replicas receiving KV; see the module docstring).

    Args:
        loop: the shared event loop (its ``now``).
        senders: every virtual engine of the replicas that hand KV off (prefill replicas).
        entering: each sender replica's front-end queue (``Replica.entering``).
        receivers: every virtual engine of the replicas receiving KV.
        stop_s: the time the run's clock stops.
    """

    __slots__ = ("arrivals", "entering", "loop", "receivers", "senders", "stop_s")

    def __init__(
        self,
        loop: EventLoop,
        senders: list[VirtualEngine],
        entering: list[deque[tuple[float, Seq]]],
        receivers: list[VirtualEngine],
        stop_s: float = math.inf,
    ) -> None:
        self.loop = loop
        self.senders = senders
        self.entering = list(entering)
        self.receivers = receivers
        self.stop_s = stop_s
        self.arrivals: list[float] = []  # heap: arrival times of the KV transfers in flight

    def sent(self, at_s: float) -> None:
        """A KV transfer was scheduled to arrive at ``at_s``."""
        heapq.heappush(self.arrivals, at_s)

    def arrived(self) -> None:
        """The earliest KV transfer in flight arrived (events come in time order)."""
        heapq.heappop(self.arrivals)

    def __call__(self, clock_limit: Callable[[], float]) -> float:
        """Earliest time KV can reach, or a router read, a replica receiving KV, given the
        driver's ``clock_limit`` (the next arrival, the stop time)."""
        now = self.loop.now
        limit = self.arrivals[0] if self.arrivals else math.inf
        idle = False
        for engine in self.senders:
            flight = engine.in_flight
            if flight is not None:
                if flight[3] < limit:
                    limit = flight[3]
            elif engine.busy:
                return now  # its next step starts now (a hand-off may end it at once)
            else:
                idle = True
        for queue in self.entering:
            if queue and queue[0][0] < limit:
                limit = queue[0][0]
        for engine in self.receivers:
            if not engine.inbox.queue:
                continue
            flight = engine.in_flight
            if flight is not None:
                if flight[3] < limit:
                    limit = flight[3]
            elif engine.busy:
                return now
        # A new request starts a step only on an idle sender engine: with every one in
        # flight it waits for a step end (above), so the next arrival bounds nothing then.
        external = clock_limit() if idle else self.stop_s
        return external if external < limit else limit
