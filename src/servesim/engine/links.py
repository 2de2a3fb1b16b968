"""``EngineLinks``: what a replica hands each of its virtual engines.

The narrow pieces an engine needs to run batches (the event loop, the records, the stage
timeline, the pricer, the swap link and a leave callback), never the replica
itself, so the engine cannot reach into its owner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from servesim.core.events import EventLoop
from servesim.engine.records import SimulationRecords
from servesim.engine.sequence import Seq
from servesim.engine.timeline import BatchPricer, StageTimeline, SwapLink


@dataclass(frozen=True, slots=True)
class EngineLinks:
    """What a replica hands each of its virtual engines (the narrow pieces, never itself).

    Attributes:
        loop: the shared event loop the engine schedules its steps on.
        records: where batches and finished requests are written.
        replica_id: the replica's index, as records name it.
        timeline: the replica's pipeline stages (shared by its virtual engines).
        price: iteration time of a batch shape on the replica's plan (timeline.BatchPricer).
        swap: the cost of copying KV blocks over the host link.
        clock_limit: earliest external event (next arrival, stop time) a skip must not pass.
        on_leave: called with each request that leaves the replica from this engine.
    """

    loop: EventLoop
    records: SimulationRecords
    replica_id: int
    timeline: StageTimeline
    price: BatchPricer
    swap: SwapLink
    clock_limit: Callable[[], float]
    on_leave: Callable[[Seq], None]
