"""``LiveCluster``: the narrow live state the cluster's control loops read and change.

The autoscaler, the migrator and admission control never see the ``Cluster`` (its routers,
transfers and client) nor a replica's engines: they get this object, which owns the one piece
of state they write (which replicas take new requests) and answers the few questions they ask
(a replica's ``ReplicaView``, its outstanding tokens, whether it is empty, its decoding
requests) and the few actions they take (schedule a round, take a request off a replica at its
next iteration boundary, send a request's KV to another replica).

Questions about a replica's requests go to ``Replica`` methods (``decoding``,
``num_kv_tokens``, ``detach``): nothing in ``cluster/`` looks inside a replica's virtual engines.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any

from servesim.core.events import EventLoop, EventPriority
from servesim.engine.records import SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.sequence import Seq
from servesim.engine.simulation import ReplicaView, replica_view

#: ``done(released, now)``: a request taken off its replica (None: it left first)
Detached = Callable[[Seq | None, float], None]


class LiveCluster:
    """Routable flags plus a read/act interface over the running replicas.

    Built before the engine exists (the autoscaler marks its stopped replicas unroutable
    then); ``bind`` hands it the event loop, replicas and records once the engine starts.

    Args:
        num_replicas: replicas of the deployment (autoscaled pools at their maximum).
        is_active: True while requests may still arrive or are inside the cluster.
        send: ``send(seq, target, at_s)``: ``seq``'s KV reaches replica ``target`` at
            ``at_s`` (the cluster keeps it in flight until then).
    """

    def __init__(
        self,
        num_replicas: int,
        is_active: Callable[[], bool],
        send: Callable[[Seq, int, float], None],
    ) -> None:
        self.num_replicas = num_replicas
        self._is_routable = [True] * num_replicas
        self._is_active = is_active
        self._send = send
        self._loop = EventLoop()
        self._replicas: list[Replica] = []
        self._records = SimulationRecords()
        self._event_s: list[float] = []  # heap: times of the events scheduled here, not run

    def bind(self, loop: EventLoop, replicas: list[Replica], records: SimulationRecords) -> None:
        """Attach the running engine's loop, replicas and records."""
        self._loop = loop
        self._replicas = replicas
        self._records = records

    # ---- time and events -----------------------------------------------------------------
    @property
    def now(self) -> float:
        """The simulated time."""
        return self._loop.now

    def schedule(
        self, t: float, fn: Callable[..., None], *args: Any, priority: int = EventPriority.ARRIVAL
    ) -> None:
        """Run ``fn(*args)`` at simulated time ``t``. Until it runs, the event bounds
        skip-ahead (``next_event_s``): autoscaler and migration rounds read replica state,
        a migration's stages mark a sequence to leave and deliver its KV."""
        heapq.heappush(self._event_s, t)
        self._loop.schedule(t, self._run, fn, args, priority=priority)

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        heapq.heappop(self._event_s)  # events run in time order: this one is the earliest
        fn(*args)

    def next_event_s(self) -> float:
        """The time of the next event scheduled here (inf: none): a replica's skip-ahead
        stops there, so the event meets the state stepping gives (engine/skip.py)."""
        return self._event_s[0] if self._event_s else math.inf

    def is_active(self) -> bool:
        """True while requests may still arrive or are inside the cluster."""
        return self._is_active()

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a named counter of the run's records."""
        self._records.count(name, amount)

    # ---- routability ---------------------------------------------------------------------
    def is_routable(self, index: int) -> bool:
        """Replica ``index`` takes new requests."""
        return self._is_routable[index]

    def set_routable(self, index: int, is_routable: bool) -> None:
        """Open or close replica ``index`` to new requests (scaling, draining)."""
        self._is_routable[index] = is_routable

    def routable(self, members: Sequence[int]) -> list[int]:
        """The ``members`` that take new requests now."""
        flags = self._is_routable
        return [i for i in members if flags[i]]

    # ---- reading replicas ----------------------------------------------------------------
    def view(self, index: int) -> ReplicaView:
        """What a router may read about replica ``index`` now."""
        return replica_view(self._replicas[index])

    def views(self, members: Sequence[int]) -> list[ReplicaView]:
        """``view`` of each of ``members``."""
        return [replica_view(self._replicas[i]) for i in members]

    def outstanding_tokens(self, index: int) -> int:
        """Prompt + output tokens of the unfinished requests replica ``index`` holds."""
        return self._replicas[index].outstanding_tokens

    def is_empty(self, index: int) -> bool:
        """Replica ``index`` holds no request."""
        return not self._replicas[index].alive

    # ---- the replica's own answers --------------------------------------------------------
    def decoding(self, index: int) -> list[Seq]:
        """Requests decoding on replica ``index``, most recently admitted first."""
        return self._replicas[index].decoding()

    def num_kv_tokens(self, index: int, seq: Seq) -> int | None:
        """Tokens of KV ``seq`` holds on replica ``index`` (None: not running there)."""
        return self._replicas[index].num_kv_tokens(seq)

    def detach(self, index: int, seq: Seq, done: Detached) -> bool:
        """Take ``seq`` off replica ``index`` at its next iteration boundary, then call
        ``done`` (with None if it finished first); False if it is not running there."""
        return self._replicas[index].detach(seq, done)

    # ---- acting --------------------------------------------------------------------------
    def send(self, seq: Seq, target: int, at_s: float) -> None:
        """``seq``'s KV reaches replica ``target`` at ``at_s``, which then admits it."""
        self._send(seq, target, at_s)
