"""``run_cluster``: a deployment (pools, router, disaggregation, autoscaling, migration) on the
engine, driven only through its hooks: the ``dispatch`` function (the entry router over the
routable replicas of the entry pools), ``Replica.on_prefilled`` (a prefill replica's finished
prompt starts a KV transfer to a decode replica picked by the decode router; the decode
replica admits it when memory allows), and events it schedules itself (transfer arrivals,
autoscaler and migration rounds).

With a benchmark client (``servesim.workload.clients``) the cluster sends the requests itself:
the client says what to send when (``poll``), each response's completion comes back through
the engines' completion callback (``on_done``) and may release the next request at its
completion time. Skip-ahead is off then: a finish inside a skipped decode run would release a
request the run already went past. Warm-up requests are cut from the records the run returns
(rows, the iterations before the measured start, their token gaps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from servesim.cluster.admission import REJECT_REASON, OpenLoopSender, check_admit, entry_admission
from servesim.cluster.autoscale import Autoscaler
from servesim.cluster.client_hooks import ClientHooks
from servesim.cluster.deployment import Deployment
from servesim.cluster.disagg_skip import (
    bound_decode_skip,
    bound_migration_skip,
    decode_skip_allowed,
)
from servesim.cluster.live import LiveCluster
from servesim.cluster.measure import stats_without_warmups, without_warmups
from servesim.cluster.migration import Migrator
from servesim.cluster.routers import Router, RouterContext, make_router
from servesim.cluster.stats import ClusterStats
from servesim.cluster.transfer import kv_transfer_bytes, kv_transfer_s
from servesim.cluster.views import ReplicaViews, Subset, append_row
from servesim.core.events import EventLoop, EventPriority
from servesim.core.rng import RandomStreams
from servesim.engine.contracts import check_route
from servesim.engine.records import RejectReason, SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.rows import write_request
from servesim.engine.sequence import Seq
from servesim.engine.simulation import (
    EngineHandle,
    ReplicaView,
    StopWhen,
    replica_view,
    run_simulation,
)
from servesim.engine.skip_bounds import KVArrivalBound
from servesim.perf.types import PerfModel
from servesim.workload.clients import BenchmarkClient, ClientOptions
from servesim.workload.request import Request


@dataclass(frozen=True, slots=True)
class ClusterRun:
    """A cluster simulation's engine records and cluster-level figures."""

    records: SimulationRecords
    stats: ClusterStats


class Cluster(ClientHooks):
    """Live state of a deployment during a run (routable replicas, transfers in flight)."""

    def __init__(self, deployment: Deployment, perf: PerfModel, streams: RandomStreams) -> None:
        self.deployment = deployment
        self.perf = perf
        self.streams = streams
        self.pool_of = deployment.replica_pools()
        self.node_of = deployment.replica_nodes()
        self.plans = [deployment.pools[p].plan for p in self.pool_of]
        self.stats = ClusterStats(num_gpus=deployment.num_gpus)
        self.replicas: list[Replica] = []  # set by ``start``, as are records and loop
        self.records = SimulationRecords()
        self.loop = EventLoop()
        self.in_flight: dict[Seq, None] = {}
        self.sources: dict[Seq, Replica] = {}  # prefill replica holding an in-flight KV
        self.is_exhausted = False
        self.client: BenchmarkClient | OpenLoopSender | None = None
        self.client_seqs: dict[Seq, None] = {}  # sent by the client, not yet done
        self.wakeups: set[float] = set()
        # decode replicas skip ahead up to this bound (cluster/disagg_skip.py); None: they step
        self.kv_bound: KVArrivalBound | None = None
        self.decode_skip = True  # run_cluster: off with skip-ahead off or a stop_when
        self.stop_s = math.inf  # run_cluster: when the clock stops
        self.first_measured_gap = 0  # token-gap samples before it belong to warm-ups
        self.live = LiveCluster(len(self.pool_of), self.is_active, self._send_kv)
        self.autoscaler = self._autoscaler()
        self.migrator = self._migrator()
        self.entry = self._members(("unified", "prefill"))
        self.decode = self._members(("decode",))
        cfg = deployment.config
        self.router = self._router(cfg.router.kind, cfg.router.options, self.entry, "router")
        self.router_name = f"router {cfg.router.kind}"  # as contract errors name it
        self.decode_router: Router | None = None
        if self.decode:
            opts = cfg.decode_router.options
            kind = cfg.decode_router.kind
            self.decode_router = self._router(kind, opts, self.decode, "decode-router")
            self.decode_router_name = f"decode router {kind}"
        self.admission_name = f"admission {cfg.admission.kind}"
        plans = tuple(self.plans[i] for i in self.entry)
        context = RouterContext(plans, perf, streams.generator("admission"), tuple(self.entry))
        self.admission = entry_admission(cfg.admission, context)
        if self.admission is not None:
            self.stats.admission = cfg.admission.kind

    def _autoscaler(self) -> Autoscaler:
        members = zip(self.deployment.pools, self.deployment.pool_members(), strict=True)
        scaled = [(p.autoscale, m) for p, m in members if p.autoscale is not None]
        weights = [p.model.weight_bytes(p.weight_dtype) / p.num_gpus for p in self.plans]
        return Autoscaler(scaled, weights, self.live, self.stats)

    def _migrator(self) -> Migrator | None:
        config = self.deployment.config.migration
        if config is None:
            return None
        members = zip(self.deployment.pools, self.deployment.pool_members(), strict=True)
        pools = [m for p, m in members if p.role != "prefill" and len(m) > 1]
        return Migrator(config, pools, self.live, self.stats, self._copy_cost)

    def _copy_cost(self, src: int, dst: int, num_tokens: int) -> tuple[int, float]:
        """Bytes and seconds of copying ``num_tokens`` of KV from ``src`` to ``dst``."""
        link = self.deployment.link_between(self.node_of[src], self.node_of[dst])
        streams = min(self.plans[src].num_gpus, self.plans[dst].num_gpus)
        num_bytes = kv_transfer_bytes(self.plans[src], num_tokens)
        return num_bytes, kv_transfer_s(num_bytes, link, streams)

    def _send_kv(self, seq: Seq, target: int, at_s: float) -> None:
        """A migrated request's KV reaches ``target`` at ``at_s``."""
        self.in_flight[seq] = None
        if self.kv_bound is not None:
            self.kv_bound.sent(at_s)
        self.live.schedule(at_s, self.arrive, seq, self.replicas[target])  # (next_event_s)

    def _members(self, roles: tuple[str, ...]) -> list[int]:
        pools = self.deployment.pools
        return [i for i, p in enumerate(self.pool_of) if pools[p].role in roles]

    def _router(self, kind: str, options: dict[str, Any], members: list[int], name: str) -> Router:
        context = RouterContext(
            plans=tuple(self.plans[i] for i in members),
            perf=self.perf,
            rng=self.streams.generator(name),
            replica_ids=tuple(members),
        )
        return make_router(kind, dict(options), context)

    # ---- engine hooks --------------------------------------------------------------------
    def requests(self, requests: Iterable[Request]) -> Iterator[Request]:
        """Pass requests through, noting when the stream is exhausted."""
        yield from requests
        if self.client is None:  # a client's sends end when it says so
            self.is_exhausted = True

    def driver_requests(
        self, requests: Iterable[Request], client: ClientOptions | None
    ) -> Iterable[Request]:
        """The requests the engine's driver feeds: none when the cluster sends them itself
        (a benchmark client, or the open-loop sender an admission gate sits behind)."""
        if client is not None:
            self.client = BenchmarkClient(requests, client)
        elif self.admission is not None:
            self.client = OpenLoopSender(requests)
        else:
            return requests
        return ()

    def routes_ahead(self) -> bool:
        """Whether arrivals may be routed ahead of the clock (``run_simulation``): the entry
        router reads no state and no replica's work can come from or go to another (no
        client, admission gate, autoscaling, migration or disaggregation)."""
        pools = self.deployment.pools
        return (
            self.client is None
            and not getattr(self.router, "reads_state", True)
            and self.migrator is None
            and not self.decode
            and all(pools[self.pool_of[i]].role == "unified" for i in self.entry)
            and all(p.autoscale is None for p in pools)
        )

    def routable(self, members: list[int]) -> list[int]:
        """The members the router may send new work to now (read-only)."""
        # Only the autoscaler opens and closes replicas: without it every member stays
        # routable, and each arrival need not scan them (issue 14: O(replicas) per arrival).
        return self.live.routable(members) if self.autoscaler.pools else members

    def dispatch(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Entry routing over the routable replicas of the entry pools."""
        members = self.routable(self.entry)
        index = self.router.route(request, Subset(views, members))
        return members[check_route(self.router_name, index, len(members), self.loop.now)]

    def start(self, handle: EngineHandle) -> None:
        """Wire the hooks once the engine has built the replicas."""
        self.replicas = handle.replicas
        self.records = handle.records
        self.loop = handle.loop
        self.live.bind(handle.loop, handle.replicas, handle.records)
        senders = []
        for i in self.entry:
            if self.deployment.pools[self.pool_of[i]].role == "prefill":
                self.replicas[i].on_prefilled = self._handoff
                senders.append(self.replicas[i])
        has = {"has_client": self.client is not None, "has_migrator": self.migrator is not None}
        if self.decode_skip and decode_skip_allowed(self.deployment, **has):
            receivers = [self.replicas[i] for i in self.decode]
            self.kv_bound = bound_decode_skip(self.loop, senders, receivers, self.stop_s)
        if self.autoscaler.pools or self.migrator is not None:
            # their events read and move replica state: skip-ahead stops at each
            handle.bounds.append(self.live.next_event_s)
        if self.migrator is not None:  # a migration target's KV arrives as such an event
            targets = [self.replicas[i] for i in self._members(("unified",))]
            bound_migration_skip(targets, self.replicas)
        self.autoscaler.start()
        if self.migrator is not None:
            self.migrator.start()
        if isinstance(self.client, BenchmarkClient):
            for replica in self.replicas:
                for engine in replica.engines:
                    engine.on_done = self._completion_hook(engine.on_done)
        if self.client is not None:
            self._wake_at(0.0)

    def is_active(self) -> bool:
        """True while requests may still arrive or are inside the cluster."""
        return not self.is_exhausted or bool(self.in_flight) or any(r.alive for r in self.replicas)

    def _send(self, request: Request) -> None:
        """A client request reaches the entry router (the engine driver's arrival, for sends
        the client times itself)."""
        now = self.loop.now
        views = ReplicaViews(self.replicas, replica_view)
        if self.admission is not None and not self._admits(request, views, now):
            self._refuse(request)
            return
        index = self.dispatch(request, views)
        replica = self.replicas[index]
        row = append_row(self.records, request, index)
        seq = Seq(request, row)
        if isinstance(self.client, BenchmarkClient):
            self.client_seqs[seq] = None
        reason = replica.reject_reason(request.num_prompt_tokens, request.num_output_tokens)
        if reason:
            self.records.count(f"num_rejected_{RejectReason(reason).name.lower()}")
            write_request(self.records, seq, completion_s=math.nan, reason=reason)
            replica.engines[0].on_done(seq)
            return
        replica.submit(seq, now)

    def _admits(self, request: Request, views: Sequence[ReplicaView], now: float) -> bool:
        assert self.admission is not None
        subset = Subset(views, self.routable(self.entry))
        return check_admit(self.admission_name, self.admission.admit(request, subset, now), now)

    def _refuse(self, request: Request) -> None:
        """Admission control turned ``request`` away: a row with no replica work (on the
        first entry replica), completion NaN."""
        first = self.entry[0]
        seq = Seq(request, append_row(self.records, request, first))
        if isinstance(self.client, BenchmarkClient):
            self.client_seqs[seq] = None
        self.records.count("num_rejected_by_admission")
        self.stats.num_admission_rejected += 1
        self.stats.admission_rows.append(seq.row)
        write_request(self.records, seq, completion_s=math.nan, reason=REJECT_REASON)
        self.replicas[first].engines[0].on_done(seq)

    # ---- disaggregation ------------------------------------------------------------------
    def _handoff(self, seq: Seq, now: float) -> None:
        """A prefill replica finished ``seq``'s prompt: send its KV to a decode replica."""
        assert self.decode_router is not None
        members = self.routable(self.decode)
        views = ReplicaViews(self.replicas, replica_view)
        index = self.decode_router.route(seq.request, Subset(views, members))
        target = members[check_route(self.decode_router_name, index, len(members), now)]
        replica = self.replicas[target]
        source = self.records.requests.column("replica_id")[seq.row]
        self.records.requests.column("decode_replica_id")[seq.row] = target
        reason = replica.reject_reason(seq.num_prompt_tokens, seq.num_output_tokens)
        if reason:
            self.replicas[source].release_kv(seq, now)
            self.records.count(f"num_rejected_{RejectReason(reason).name.lower()}")
            write_request(self.records, seq, completion_s=math.nan, reason=reason)
            replica.engines[0].on_done(seq)
            return
        plan = self.plans[source]
        num_bytes = kv_transfer_bytes(plan, seq.num_prompt_tokens + seq.num_emitted - 1)
        link = self.deployment.link_between(self.node_of[source], self.node_of[target])
        seconds = kv_transfer_s(
            num_bytes,
            link,
            min(plan.num_gpus, self.plans[target].num_gpus),
            compute_s=now - seq.first_scheduled_s,
            num_layers=plan.model.num_layers,
            overlap=self.deployment.config.transfer.layerwise_overlap,
        )
        self.stats.transfer_rows.append(seq.row)
        self.stats.transfer_s.append(seconds)
        self.stats.transfer_bytes.append(num_bytes)
        self.records.count("kv_transfer_bytes", num_bytes)
        if self.deployment.config.transfer.first_token_at == "decode":
            seq.first_token_s = seq.last_token_s = math.nan
        self.in_flight[seq] = None
        # The source keeps the KV until the transfer ends (with layer-wise overlap, ``now +
        # seconds`` is already after the prefill) and the decode replica has room for it.
        self.sources[seq] = self.replicas[source]
        if self.kv_bound is not None:
            self.kv_bound.sent(now + seconds)
        self.loop.schedule(now + seconds, self.arrive, seq, replica, priority=EventPriority.ARRIVAL)

    def arrive(self, seq: Seq, replica: Replica) -> None:
        """A transferred request's KV has reached ``replica``."""
        del self.in_flight[seq]
        if self.kv_bound is not None:
            self.kv_bound.arrived()
        source = self.sources.pop(seq, None)
        if source is None:  # a migration: its source freed the KV at the stop
            replica.receive(seq, self.loop.now)
            return

        def release(now: float) -> None:
            source.release_kv(seq, now)

        replica.receive(seq, self.loop.now, release)

    def finalise(self) -> None:
        """Requests caught in a transfer when the clock stopped are NOT_FINISHED."""
        for seq in self.in_flight:
            self.records.count("num_not_finished")
            write_request(
                self.records, seq, completion_s=math.nan, reason=RejectReason.NOT_FINISHED
            )
        self.in_flight.clear()
        self.stats.set_uptime(self.records, self.autoscaler.uptimes(self.records.end_s))

    def measured(self) -> SimulationRecords:
        """The records without the client's warm-up requests (all of them without a client)."""
        client = self.client
        if client is None or not client.warmup_ids:
            return self.records
        start_s = client.main_start_s if client.main_start_s is not None else math.inf
        num_warm = len(client.warmup_ids)
        stats_without_warmups(self.stats, num_warm)
        return without_warmups(self.records, num_warm, start_s, self.first_measured_gap)


def run_cluster(
    requests: Iterable[Request],
    deployment: Deployment,
    perf: PerfModel,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    check_invariants: bool = False,
    client: ClientOptions | None = None,
    stop_when: StopWhen | None = None,
    skip_ahead: bool = True,
) -> ClusterRun:
    """Simulate ``requests`` (sorted by arrival) on ``deployment``.

    Args:
        requests: consumed lazily.
        deployment: from ``build_deployment`` (already checked).
        perf: iteration times and memory plans.
        seed: root seed of the routers' random streams.
        duration_s: stop the clock here (unfinished requests are reported).
        on_progress: called with (requests done, requests arrived).
        check_invariants: recount engine invariants every step (tests).
        client: send the requests as this benchmark client does (their arrival times are
            then its pacing); the returned records leave out its warm-up requests.
        stop_when: end the run early (``engine.run_simulation``).
        skip_ahead: advance stable decode-only runs inside one event (exact; off for checks).
    """
    cluster = Cluster(deployment, perf, RandomStreams(seed).child("cluster"))
    cluster.decode_skip = skip_ahead and stop_when is None
    cluster.stop_s = math.inf if duration_s is None else float(duration_s)
    run_simulation(
        cluster.requests(cluster.driver_requests(requests, client)),
        deployment.setups(),
        perf,
        dispatch=cluster.dispatch,
        duration_s=duration_s,
        on_progress=on_progress,
        skip_ahead=skip_ahead and cluster.client is None,
        check_invariants=check_invariants,
        on_start=cluster.start,
        stop_when=stop_when,
        dp_groups=deployment.dp_groups(),
        route_ahead=cluster.routes_ahead(),
    )
    cluster.finalise()
    return ClusterRun(records=cluster.measured(), stats=cluster.stats)
