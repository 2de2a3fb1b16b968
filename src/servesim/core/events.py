"""The discrete-event loop: a heap of callbacks keyed by (time, priority, insertion counter).

Simultaneous events run in a fixed order: lower ``priority`` first, then the order they were
scheduled (as in SimPy), so a run is deterministic. The loop never reads a wall clock; ``now``
only moves forward (asserted), and exceptions raised by callbacks propagate unchanged.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from enum import IntEnum
from typing import Any

Callback = Callable[..., None]
_INF = math.inf


class EventPriority(IntEnum):
    """Order of events at the same instant (lower first)."""

    #: something lands: a request, a finished KV transfer or migration, a client's send
    ARRIVAL = 0
    #: an iteration ends and its results are applied ...
    STEP_END = 1
    #: ... before the next iteration is formed, so it sees every arrival of that instant
    STEP_START = 2
    #: autoscaler and migrator rounds, on the settled state of the instant
    CONTROL = 3


class EventLoop:
    """A minimal, fast event scheduler.

    Example:
        >>> loop = EventLoop()
        >>> seen = []
        >>> _ = loop.schedule(2.0, seen.append, "b")
        >>> _ = loop.schedule(1.0, seen.append, "a")
        >>> loop.run()
        >>> seen, loop.now
        (['a', 'b'], 2.0)
    """

    __slots__ = ("_cancelled", "_counter", "_heap", "_stopped", "now")

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = start_s
        self._heap: list[tuple[float, int, int, Callback, tuple[Any, ...]]] = []
        self._counter = 0
        self._cancelled: set[int] = set()
        self._stopped = False

    def schedule(
        self, time_s: float, callback: Callback, *args: Any, priority: int = EventPriority.ARRIVAL
    ) -> int:
        """Run ``callback(*args)`` at ``time_s``; returns a handle for ``cancel``.

        Raises:
            ValueError: when ``time_s`` is before ``now`` or not finite.
        """
        # now <= time_s < inf: a NaN, a time before now and +-inf all fail it (no call)
        if not self.now <= time_s < _INF:
            raise ValueError(f"cannot schedule an event at {time_s!r} (now is {self.now!r})")
        handle = self._counter
        self._counter += 1
        heapq.heappush(self._heap, (time_s, priority, handle, callback, args))
        return handle

    def push(self, time_s: float, priority: int, callback: Callback, args: tuple[Any, ...]) -> int:
        """``schedule(time_s, callback, *args, priority=priority)`` with its arguments given
        as they are stored (the engine's once-per-step call: no packing of keywords)."""
        if not self.now <= time_s < _INF:
            raise ValueError(f"cannot schedule an event at {time_s!r} (now is {self.now!r})")
        handle = self._counter
        self._counter = handle + 1
        heapq.heappush(self._heap, (time_s, priority, handle, callback, args))
        return handle

    def cancel(self, handle: int) -> None:
        """Drop a scheduled event (lazily: it is skipped when popped)."""
        self._cancelled.add(handle)

    def stop(self) -> None:
        """Make ``run`` return after the current event."""
        self._stopped = True

    @property
    def num_pending(self) -> int:
        """Events still queued (cancelled ones included until popped)."""
        return len(self._heap)

    def run(self, until_s: float = math.inf) -> None:
        """Process events in order until none is left, ``stop()`` is called, or the next event
        is later than ``until_s`` (then ``now`` becomes ``until_s``)."""
        heap = self._heap
        pop = heapq.heappop
        cancelled = self._cancelled
        self._stopped = False
        while heap and not self._stopped:
            if heap[0][0] > until_s:
                self.now = until_s
                return
            time_s, _, handle, callback, args = pop(heap)
            if cancelled and handle in cancelled:
                cancelled.discard(handle)
                continue
            assert time_s >= self.now, "event time went backwards"
            self.now = time_s
            callback(*args)
        if not heap and until_s != math.inf and not self._stopped:
            self.now = max(self.now, until_s)
