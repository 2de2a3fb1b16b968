"""``run_cluster``: a deployment (pools, router, disaggregation, autoscaling, migration) on the
engine.

The engine runs every replica on one event loop; this layer drives it only through its hooks:
the ``dispatch`` function (the entry router over the routable replicas of the entry pools),
``Replica.on_prefilled`` (a prefill replica's finished prompt starts a KV transfer to a decode
replica picked by the decode router; the decode replica admits it when memory allows), and
events it schedules itself (transfer arrivals, autoscaler and migration rounds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from servesim.cluster.autoscale import Autoscaler
from servesim.cluster.deployment import Deployment
from servesim.cluster.migration import Migrator
from servesim.cluster.routers import Router, RouterContext, make_router
from servesim.cluster.stats import ClusterStats
from servesim.cluster.transfer import kv_transfer_bytes, kv_transfer_s
from servesim.core.events import EventLoop
from servesim.core.rng import RandomStreams
from servesim.engine.records import RejectReason, SimulationRecords
from servesim.engine.replica import Replica
from servesim.engine.sequence import Seq
from servesim.engine.simulation import EngineHandle, ReplicaView, replica_view, run_simulation
from servesim.engine.vengine import write_request
from servesim.perf.types import PerfModel
from servesim.workload.request import Request


@dataclass(frozen=True, slots=True)
class ClusterRun:
    """A cluster simulation's engine records and cluster-level figures."""

    records: SimulationRecords
    stats: ClusterStats


class _Subset(Sequence[ReplicaView]):
    """The views of some replicas, in a given order (built on access)."""

    def __init__(self, views: Sequence[ReplicaView], indices: list[int]) -> None:
        self._views = views
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> ReplicaView:  # type: ignore[override]
        return self._views[self._indices[i]]


class _ReplicaViews(Sequence[ReplicaView]):
    def __init__(self, replicas: list[Replica], view: Callable[[Replica], ReplicaView]) -> None:
        self._replicas = replicas
        self._view = view

    def __len__(self) -> int:
        return len(self._replicas)

    def __getitem__(self, i: int) -> ReplicaView:  # type: ignore[override]
        return self._view(self._replicas[i])


class Cluster:
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
        n = len(self.pool_of)
        self.is_routable = [True] * n
        self.autoscaler = Autoscaler(self)
        self.migrator = Migrator(self) if deployment.config.migration is not None else None
        self.entry = self._members(("unified", "prefill"))
        self.decode = self._members(("decode",))
        cfg = deployment.config
        self.router = self._router(cfg.router.kind, cfg.router.options, self.entry, "router")
        self.decode_router: Router | None = None
        if self.decode:
            opts = cfg.decode_router.options
            kind = cfg.decode_router.kind
            self.decode_router = self._router(kind, opts, self.decode, "decode-router")

    def _members(self, roles: tuple[str, ...]) -> list[int]:
        pools = self.deployment.pools
        return [i for i, p in enumerate(self.pool_of) if pools[p].role in roles]

    def _router(self, kind: str, options: dict[str, Any], members: list[int], name: str) -> Router:
        context = RouterContext(
            plans=tuple(self.plans[i] for i in members),
            perf=self.perf,
            rng=self.streams.generator(name),
        )
        return make_router(kind, dict(options), context)

    # ---- engine hooks --------------------------------------------------------------------
    def requests(self, requests: Iterable[Request]) -> Iterator[Request]:
        """Pass requests through, noting when the stream is exhausted."""
        yield from requests
        self.is_exhausted = True

    def routable(self, members: list[int]) -> list[int]:
        """The members the router may send new work to now."""
        return [i for i in members if self.is_routable[i]]

    def dispatch(self, request: Request, views: Sequence[ReplicaView]) -> int:
        """Entry routing over the routable replicas of the entry pools."""
        members = self.routable(self.entry)
        return members[self.router.route(request, _Subset(views, members))]

    def start(self, handle: EngineHandle) -> None:
        """Wire the hooks once the engine has built the replicas."""
        self.replicas = handle.replicas
        self.records = handle.records
        self.loop = handle.loop
        for i in self.entry:
            if self.deployment.pools[self.pool_of[i]].role == "prefill":
                self.replicas[i].on_prefilled = self._handoff
        self.autoscaler.start()
        if self.migrator is not None:
            self.migrator.start()

    def is_active(self) -> bool:
        """True while requests may still arrive or are inside the cluster."""
        return not self.is_exhausted or bool(self.in_flight) or any(r.alive for r in self.replicas)

    # ---- disaggregation ------------------------------------------------------------------
    def _handoff(self, seq: Seq, now: float) -> None:
        """A prefill replica finished ``seq``'s prompt: send its KV to a decode replica."""
        assert self.decode_router is not None
        members = self.routable(self.decode)
        views = _ReplicaViews(self.replicas, replica_view)
        target = members[self.decode_router.route(seq.request, _Subset(views, members))]
        replica = self.replicas[target]
        source = self.records.requests.column("replica_id")[seq.row]
        self.records.requests.column("decode_replica_id")[seq.row] = target
        reason = replica.reject_reason(seq.num_prompt_tokens, seq.num_output_tokens)
        if reason:
            self.replicas[source].release_kv(seq, now)
            self.records.count(f"num_rejected_{RejectReason(reason).name.lower()}")
            write_request(self.records, seq, completion_s=math.nan, reason=reason)
            replica.engines[0].on_done()
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
        self.loop.schedule(now + seconds, self.arrive, seq, replica, priority=0)

    def arrive(self, seq: Seq, replica: Replica) -> None:
        """A transferred request's KV has reached ``replica``."""
        del self.in_flight[seq]
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


def run_cluster(
    requests: Iterable[Request],
    deployment: Deployment,
    perf: PerfModel,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    check_invariants: bool = False,
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
    """
    cluster = Cluster(deployment, perf, RandomStreams(seed).child("cluster"))
    records = run_simulation(
        cluster.requests(requests),
        deployment.setups(),
        perf,
        dispatch=cluster.dispatch,
        duration_s=duration_s,
        on_progress=on_progress,
        check_invariants=check_invariants,
        on_start=cluster.start,
    )
    cluster.finalise()
    return ClusterRun(records=records, stats=cluster.stats)
