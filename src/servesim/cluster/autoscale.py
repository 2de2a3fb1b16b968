"""Autoscaling (first version): pools scale between ``min_replicas`` and ``replicas`` on a
threshold policy, with a cold start, and only up-time is paid for.

Every ``interval_s`` the policy reads the pool's signal over its up replicas (mean queued
requests, or mean KV usage). Above ``scale_up_threshold`` one stopped replica starts: it is
paid from that moment and takes requests after the cold start (its weight bytes per GPU over
the storage bandwidth, plus ``startup_s``; as in Kubernetes/KServe model serving, where pulling
weights dominates). Below ``scale_down_threshold`` the least loaded up replica drains: it takes
no new requests and stops, ending its up-time, once empty.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from servesim.cluster.config import AutoscaleConfig
from servesim.core.events import EventPriority
from servesim.engine.simulation import replica_view

if TYPE_CHECKING:
    from servesim.cluster.runner import Cluster


def cold_start_s(weight_bytes: float, config: AutoscaleConfig) -> float:
    """Seconds from the decision to the first request a new replica can take."""
    return weight_bytes / config.storage_bandwidth_bytes_per_s + config.startup_s


class Autoscaler:
    """Scales the autoscaled pools of a ``Cluster`` and keeps every replica's up intervals."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        n = len(cluster.pool_of)
        self.up_since: list[float | None] = [0.0] * n  # None: stopped
        self.up_s = [0.0] * n
        self.is_draining = [False] * n
        self.pools: list[tuple[AutoscaleConfig, list[int]]] = []
        for p, pool in enumerate(cluster.deployment.pools):
            if pool.autoscale is None:
                continue
            members = [i for i, q in enumerate(cluster.pool_of) if q == p]
            self.pools.append((pool.autoscale, members))
            for i in members[pool.autoscale.min_replicas :]:
                self.up_since[i] = None
                cluster.is_routable[i] = False

    def start(self) -> None:
        """Schedule the first policy round of each autoscaled pool."""
        for k, (config, _) in enumerate(self.pools):
            self.cluster.loop.schedule(
                config.interval_s, self._round, k, priority=EventPriority.CONTROL
            )

    def _signal(self, config: AutoscaleConfig, members: list[int]) -> float:
        up = [i for i in members if self.cluster.is_routable[i]]
        if not up:
            return math.inf
        views = [replica_view(self.cluster.replicas[i]) for i in up]
        if config.metric == "kv_usage":
            return sum(v.kv_usage for v in views) / len(views)
        return sum(v.num_queued for v in views) / len(views)

    def _round(self, k: int) -> None:
        config, members = self.pools[k]
        cluster = self.cluster
        now = cluster.loop.now
        self._stop_drained(members, now)
        signal = self._signal(config, members)
        starting = any(
            self.up_since[i] is not None and not cluster.is_routable[i] and not self.is_draining[i]
            for i in members
        )
        stopped = [i for i in members if self.up_since[i] is None]
        if signal > config.scale_up_threshold and stopped and not starting:
            self._scale_up(config, stopped[0], now)
        elif signal < config.scale_down_threshold:
            up = [i for i in members if cluster.is_routable[i]]
            if len(up) > config.min_replicas:
                victim = min(up, key=lambda i: cluster.replicas[i].outstanding_tokens)
                cluster.is_routable[victim] = False
                self.is_draining[victim] = True
                cluster.stats.num_scale_downs += 1
                cluster.stats.scale_events.append((now, victim, "drain"))
                self._stop_drained(members, now)
        if cluster.is_active():
            cluster.loop.schedule(
                now + config.interval_s, self._round, k, priority=EventPriority.CONTROL
            )

    def _scale_up(self, config: AutoscaleConfig, index: int, now: float) -> None:
        cluster = self.cluster
        plan = cluster.plans[index]
        weight_bytes = plan.model.weight_bytes(plan.weight_dtype) / plan.num_gpus
        self.up_since[index] = now
        cluster.stats.num_scale_ups += 1
        cluster.stats.scale_events.append((now, index, "start"))
        cluster.loop.schedule(now + cold_start_s(weight_bytes, config), self._ready, index)

    def _ready(self, index: int) -> None:
        self.cluster.is_routable[index] = True
        self.cluster.stats.scale_events.append((self.cluster.loop.now, index, "ready"))

    def _stop_drained(self, members: list[int], now: float) -> None:
        for i in members:
            since = self.up_since[i]
            if self.is_draining[i] and since is not None and not self.cluster.replicas[i].alive:
                self.up_s[i] += now - since
                self.up_since[i] = None
                self.is_draining[i] = False
                self.cluster.stats.scale_events.append((now, i, "stop"))

    def uptimes(self, end_s: float) -> list[float]:
        """Seconds each replica was up by ``end_s``."""
        return [
            up + (end_s - since if since is not None else 0.0)
            for up, since in zip(self.up_s, self.up_since, strict=True)
        ]
