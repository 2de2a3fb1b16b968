"""``run_simulation``: requests in, ``SimulationRecords`` out.

Requests are pulled lazily from the iterable, one ahead of the clock, and dispatched to a
replica on arrival (round robin unless a ``dispatch`` function is given). Each replica runs its
iterations back to back on the shared event loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from servesim.core.errors import ConfigError
from servesim.core.events import EventLoop, EventPriority
from servesim.engine.build import build_replicas
from servesim.engine.contracts import check_route
from servesim.engine.dp_group import DPGroupSpec
from servesim.engine.records import RejectReason, SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.rows import write_request
from servesim.engine.sequence import Seq
from servesim.engine.setup import ReplicaSetup
from servesim.engine.skip_bounds import RoutedAhead
from servesim.perf.types import PerfModel
from servesim.workload.request import Request

logger = logging.getLogger(__name__)

__all__ = ["Dispatch", "EngineHandle", "ReplicaView", "StopWhen", "run_simulation"]


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What a router may read about a replica when a request arrives.

    Attributes:
        replica_id: index of the replica.
        num_queued: requests waiting for admission (or swapped out).
        num_running: requests on the GPU.
        kv_usage: fraction of KV blocks in use.
        outstanding_tokens: prompt + output tokens of the requests it holds, unfinished.
        num_queued_prompt_tokens: prompt tokens not yet computed of the requests queued or
            mid-prefill (what a real router learns from the engine's metrics endpoint).
        adapters: LoRA adapters in the replica's GPU slots (empty without multi-LoRA).
    """

    replica_id: int
    num_queued: int
    num_running: int
    kv_usage: float
    outstanding_tokens: int
    num_queued_prompt_tokens: int = 0
    adapters: frozenset[str] = frozenset()


Dispatch = Callable[[Request, Sequence[ReplicaView]], int]
# ``stop_when(now, records)``: end the run now (checked after each finished request).
StopWhen = Callable[[float, SimulationRecords], bool]


def replica_view(replica: Replica) -> ReplicaView:
    """What a router may read about ``replica`` now."""
    queued = running = used = pending = 0
    for engine in replica.engines:
        state = engine.state
        queued += engine.scheduler.num_queued(state) + len(state.swapped) + len(engine.incoming)
        queued += len(engine.arrivals)
        running += len(state.running)
        used += state.blocks.num_used
        for seq in state.waiting:
            pending += seq.prefill_target - seq.num_computed
        for _, seq in engine.arrivals:
            pending += seq.prefill_target - seq.num_computed
        for seq in state.prefilling:
            pending += seq.prefill_target - seq.num_computed
    return ReplicaView(
        replica_id=replica.replica_id,
        num_queued=queued,
        num_running=running,
        kv_usage=used / replica.num_kv_blocks,
        outstanding_tokens=replica.outstanding_tokens,
        num_queued_prompt_tokens=pending,
        adapters=replica.adapters.resident() if replica.adapters is not None else frozenset(),
    )


class _Views(Sequence[ReplicaView]):
    """Views built on access (a router reading two replicas does not pay for all)."""

    def __init__(self, replicas: list[Replica]) -> None:
        self._replicas = replicas

    def __len__(self) -> int:
        return len(self._replicas)

    def __getitem__(self, index: int) -> ReplicaView:  # type: ignore[override]
        return replica_view(self._replicas[index])


@dataclass(frozen=True, slots=True)
class EngineHandle:
    """What ``run_simulation``'s ``on_start`` hook gets: the live parts a cluster layer drives
    (it may schedule events on ``loop`` and set ``Replica.on_prefilled``); ``bounds``: where
    it adds the times of its own events that read replica state (each a function giving the
    next one), which skip-ahead then stops at, as at an arrival."""

    loop: EventLoop
    replicas: list[Replica]
    records: SimulationRecords
    bounds: list[Callable[[], float]]


class _Driver:
    """Owns the run's loop and records: feeds arrivals, counts progress, runs the loop to
    the stop time and finalises the records (``build_replicas`` fills ``replicas``)."""

    def __init__(
        self,
        requests: Iterable[Request],
        dispatch: Dispatch | None,
        on_progress: Callable[[int, int], None] | None,
        duration_s: float | None,
        stop_when: StopWhen | None = None,
    ) -> None:
        if duration_s is not None and not duration_s > 0:
            raise ConfigError("duration_s", duration_s, "must be > 0")
        stop_s = math.inf if duration_s is None else float(duration_s)
        self.requests: Iterator[Request] = iter(requests)
        self.replicas: list[Replica] = []
        self.records = SimulationRecords()
        self.loop = EventLoop()
        self.dispatch = dispatch
        self.on_progress = on_progress
        self.stop_s = stop_s
        self.stop_when = stop_when
        self.next_arrival_s = math.inf
        self.num_arrived = 0
        self.num_done = 0
        self.slo_index = {name: i for i, name in enumerate(self.records.slo_classes)}
        self._rr = 0
        self._last_arrival_s = 0.0
        self._exhausted = False
        self.ahead: RoutedAhead | None = None
        self.bounds: list[Callable[[], float]] = []  # EngineHandle.bounds

    def route_ahead(self, num_replicas: int) -> None:
        """Route each arrival when it is read, ahead of the clock, so each of the
        ``num_replicas`` replicas skips to its own next arrival (``RoutedAhead``)."""
        self.ahead = RoutedAhead(self._read, self._route, num_replicas)

    def build(
        self,
        replicas: Sequence[ReplicaSetup],
        perf: PerfModel,
        dp_groups: Sequence[DPGroupSpec],
        options: dict[str, bool],
    ) -> None:
        """Build the run's replicas into ``self.replicas`` (``build_replicas``), each with
        its clock limit and this driver's ``done`` as its engines' leave callback."""
        build_replicas(
            into=self.replicas,
            replicas=replicas,
            perf=perf,
            loop=self.loop,
            records=self.records,
            limit_of=self.limit_of,
            on_done=self.done,
            dp_groups=dp_groups,
            options=options,
        )

    def limit(self) -> float:
        """Earliest time an external event can touch a replica."""
        limit = min(self.next_arrival_s, self.stop_s)
        for bound in self.bounds:  # the cluster layer's rounds (EngineHandle.bounds)
            limit = min(limit, bound())
        return limit

    def limit_of(self, replica_id: int) -> Callable[[], float]:
        """The clock limit of replica ``replica_id``: its own next arrival when routed
        ahead, the next arrival anywhere otherwise."""
        ahead = self.ahead
        if ahead is None:
            return self.limit
        return lambda: min(ahead.limit(replica_id), self.stop_s, *(b() for b in self.bounds))

    def done(self, seq: Seq | None = None) -> None:
        """A request (``seq``) finished or was rejected."""
        self.num_done += 1
        if self.on_progress is not None and self.num_done % 1000 == 0:
            self.on_progress(self.num_done, self.num_arrived)
        if self.stop_when is not None and self.stop_when(self.loop.now, self.records):
            # nothing happens after this instant (a joint skip-ahead in progress ends here)
            self.stop_s = self.loop.now
            self.loop.stop()

    def feed(self) -> None:
        """Schedule the next request's arrival (or note there is none)."""
        if self.ahead is not None:
            entry = self.ahead.pop()
            request, index = entry if entry is not None else (None, -1)
        else:
            request, index = self._read(), -1
        if request is None:
            self.next_arrival_s = math.inf
            return
        self.next_arrival_s = request.arrival_s
        self.loop.schedule(
            request.arrival_s, self.arrive, request, index, priority=EventPriority.ARRIVAL
        )

    def _read(self) -> Request | None:
        """The next request from the stream, checked; None past the stop time or the end."""
        if self._exhausted:
            return None
        request = next(self.requests, None)
        if request is None:
            self._exhausted = True
            return None
        if not request.arrival_s >= self._last_arrival_s:
            raise ConfigError(
                f"requests[{request.request_id}].arrival_s",
                request.arrival_s,
                f"arrivals must be sorted; previous was {self._last_arrival_s}",
            )
        self._last_arrival_s = request.arrival_s
        if request.arrival_s > self.stop_s:
            self._exhausted = True  # later arrivals are not read
            return None
        return request

    def arrive(self, request: Request, index: int) -> None:
        """Record the request, dispatch it (unless routed ahead), and pull the next one."""
        now = self.loop.now
        self.feed()  # know the next arrival before any replica advances ahead
        self.num_arrived += 1
        if index < 0:
            index = self._route(request)
        else:
            self.ahead.arrived(index)  # type: ignore[union-attr]
        replica = self.replicas[index]
        row = self._append_row(request, index)
        reason = replica.reject_reason(request.num_prompt_tokens, request.num_output_tokens)
        seq = Seq(request, row)
        if reason:
            self.records.count(f"num_rejected_{RejectReason(reason).name.lower()}")
            write_request(self.records, seq, completion_s=math.nan, reason=reason)
            self.done()
            return
        replica.submit(seq, now)

    def _route(self, request: Request) -> int:
        n = len(self.replicas)
        if self.dispatch is None:
            index = self._rr % n
            self._rr += 1
            return index
        index = self.dispatch(request, _Views(self.replicas))
        return check_route("dispatch", index, n, self.loop.now)

    def _append_row(self, request: Request, replica_id: int) -> int:
        slo = self.slo_index.get(request.slo_class)
        if slo is None:
            slo = self.slo_index[request.slo_class] = len(self.records.slo_classes)
            self.records.slo_classes.append(request.slo_class)
        return append_request_row(self.records, request, replica_id, slo)

    def run(self, warn_if_stuck: bool) -> None:
        """Feed the first arrival, run the loop to the stop time, finalise the records;
        ``warn_if_stuck``: no stop time was set, so requests left inside made no progress."""
        self.feed()
        self.loop.run(until_s=self.stop_s)
        if warn_if_stuck and any(r.alive for r in self.replicas):
            logger.warning("simulation ended with requests still queued (no progress possible)")
        self.finalise()

    def finalise(self) -> None:
        """Mark requests still in a replica as NOT_FINISHED and add end-of-run counters."""
        records = self.records
        for replica in self.replicas:
            for engine in replica.engines:
                group = engine.state.group
                for seq in list(group.members):
                    group.leave(seq)
                records.count("prefix_cache_evictions", engine.state.blocks.num_evictions)
            for seq in replica.alive:
                records.count("num_not_finished")
                write_request(records, seq, completion_s=math.nan, reason=RejectReason.NOT_FINISHED)
        records.end_s = self.loop.now
        if self.on_progress is not None:
            self.on_progress(self.num_done, self.num_arrived)


def _plan_skip(
    driver: _Driver,
    num_replicas: int,
    skip_ahead: bool,
    route_ahead: bool,
    stop_when: StopWhen | None,
    dp_groups: Sequence[DPGroupSpec],
) -> bool:
    """Set the driver to route ahead where that is exact; whether the replicas skip ahead."""
    # one replica: the next arrival anywhere is its own (the plain limit costs less)
    if route_ahead and skip_ahead and num_replicas > 1 and stop_when is None and not dp_groups:
        driver.route_ahead(num_replicas)
    # stop_when reads the records after each finish: a replica's skipped run would write
    # ticks past another replica's finish that stops the run (one replica's own finish ends
    # its run, engine/skip.py), so with several replicas every one steps
    return skip_ahead and (stop_when is None or num_replicas == 1)


def run_simulation(
    requests: Iterable[Request],
    replicas: Sequence[ReplicaSetup],
    perf: PerfModel,
    *,
    dispatch: Dispatch | None = None,
    duration_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    skip_ahead: bool = True,
    check_invariants: bool = False,
    on_start: Callable[[EngineHandle], None] | None = None,
    stop_when: StopWhen | None = None,
    dp_groups: Sequence[DPGroupSpec] = (),
    route_ahead: bool | None = None,
) -> SimulationRecords:
    """Simulate serving ``requests`` (sorted by arrival) on ``replicas``: the run's records.

    Args:
        requests: consumed lazily, never materialised.
        replicas: one ``ReplicaSetup`` per replica.
        perf: iteration times and memory plans.
        dispatch: ``dispatch(request, views) -> replica index``; round robin when None.
        duration_s: stop the clock here (requests inside: ``NOT_FINISHED``; later ones unread).
        on_progress: called with (requests done, requests arrived) every 1000 and at the end.
        skip_ahead: advance stable decode-only runs inside one event (exact; off for checks).
        check_invariants: recount every accounting invariant after each step (slow; tests).
        on_start: called once the replicas exist, before the first arrival (cluster hooks).
        stop_when: called with (now, records) after each request finishes; True ends the run
            there (requests inside become ``NOT_FINISHED``), e.g. a lost capacity probe.
        dp_groups: data-parallel-attention groups (``DPGroupSpec``: ranks of one plan, pp = 1)
            stepping in lockstep, sharing their experts (``engine.dp_group``, ``perf.dp_cost``).
        route_ahead: ``dispatch`` reads no replica state and ``on_start``'s hooks never move
            work: each replica skips to its own next arrival (``engine.skip_bounds.RoutedAhead``;
            same results). None: only round robin with no hooks.
    """
    if not replicas:
        raise ConfigError("replicas", [], "at least one replica is needed")
    driver = _Driver(requests, dispatch, on_progress, duration_s, stop_when)
    if route_ahead is None:
        route_ahead = dispatch is None and on_start is None
    skip_ahead = _plan_skip(driver, len(replicas), skip_ahead, route_ahead, stop_when, dp_groups)
    options = {"skip_ahead": skip_ahead, "check_invariants": check_invariants}
    driver.build(replicas, perf, dp_groups, options)
    if on_start is not None:
        on_start(EngineHandle(driver.loop, driver.replicas, driver.records, driver.bounds))
    driver.run(warn_if_stuck=duration_s is None)
    return driver.records


def append_request_row(
    records: SimulationRecords, request: Request, replica_id: int, slo_class_index: int
) -> int:
    """The request's row as written on arrival (times NaN until they happen); its index."""
    nan = math.nan
    # the values in records.REQUEST_COLUMNS order (tests/engine/test_rows.py)
    return records.requests.append_values(
        (
            request.request_id,
            replica_id,
            request.arrival_s,
            nan,  # first_scheduled_s
            nan,  # first_token_s
            nan,  # completion_s
            request.num_prompt_tokens,
            request.num_output_tokens,
            0,  # num_emitted_tokens
            0.0,  # sum_tbt_s
            0.0,  # max_tbt_s
            0,  # num_preemptions
            0,  # num_prefix_hit_tokens
            request.priority,
            request.user_id,
            slo_class_index,
            0,  # reject_reason
            -1,  # decode_replica_id
        )
    )
