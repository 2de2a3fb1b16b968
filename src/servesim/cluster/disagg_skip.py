"""Skip-ahead for a disaggregated deployment's decode replicas and a migrator's targets
(issue 14).

A decode replica's new work only arrives as KV transfers that prefill replicas start when
their steps end, so it may skip ahead up to the earliest time one can reach it
(``engine.skip_bounds.KVArrivalBound``, which holds the argument for exactness). This module says
when that bound is the whole story and wires it: nothing else may read or move a decode
replica's work while it skips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from servesim.cluster.deployment import Deployment
from servesim.core.events import EventLoop
from servesim.engine.replica import Replica
from servesim.engine.skip_bounds import KVArrivalBound


def decode_skip_allowed(deployment: Deployment, *, has_client: bool, has_migrator: bool) -> bool:
    """Whether the decode replicas' only outside events are KV arrivals and hand-offs: no
    client (its sends follow finishes, which a skipped run reaches early), migrator or
    autoscaler (their rounds read replica state at times of their own), DP-attention groups
    (their ranks step together); ``run_cluster`` also leaves it off under ``stop_when``
    (it reads the records after every finish)."""
    pools = deployment.pools
    return (
        not has_client
        and not has_migrator
        and any(p.role == "decode" for p in pools)
        and all(p.autoscale is None for p in pools)
        and not deployment.dp_groups()
    )


def bound_decode_skip(
    loop: EventLoop, senders: list[Replica], receivers: list[Replica], stop_s: float
) -> KVArrivalBound:
    """Let each of ``receivers`` (decode replicas) skip ahead up to the earliest time KV
    handed off by ``senders`` (prefill replicas) can reach one of them (the clock stops at
    ``stop_s``); the bound returned must hear of every transfer scheduled (``sent``) and
    arrived (``arrived``)."""
    bound = KVArrivalBound(
        loop,
        [engine for replica in senders for engine in replica.engines],
        [replica.entering for replica in senders],
        [engine for replica in receivers for engine in replica.engines],
        stop_s,
    )
    for replica in receivers:
        replica.skip_until_kv(bound)
    return bound


def migration_bound(
    replica: Replica, replicas: list[Replica], clock_limit: Callable[[], float]
) -> float:
    """A migration target's skip-ahead bound: the driver's clock limit, which holds the
    cluster's own events (``LiveCluster.next_event_s``: rounds, stages, KV arrivals), the
    step end of every engine with a sequence marked to leave (it goes, and its KV is sent,
    at that boundary), and the next step start of an engine here with received KV waiting
    for memory (admitted before a step; ``engine.skip_bounds.KVArrivalBound``'s rule)."""
    limit = clock_limit()
    now = replica.loop.now
    for source in replicas:
        for engine in source.engines:
            if engine.outbox.marked:
                flight = engine.in_flight
                if flight is None:
                    return now
                limit = min(limit, flight[3])
    for engine in replica.engines:
        if engine.inbox.queue:
            flight = engine.in_flight
            if flight is None:
                if engine.busy:
                    return now
                continue
            limit = min(limit, flight[3])
    return limit


def bound_migration_skip(targets: list[Replica], replicas: list[Replica]) -> None:
    """Let each migration target of ``targets`` skip ahead up to ``migration_bound``."""
    for replica in targets:
        replica.skip_until_kv(functools.partial(migration_bound, replica, replicas))
