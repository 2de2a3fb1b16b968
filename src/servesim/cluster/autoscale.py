"""Autoscaling: pools scale between ``min_replicas`` and ``replicas`` under a scaling policy
(``cluster/scaling.py``: ``threshold`` by default), with a cold start, and only up-time is paid.

Every ``interval_s`` the pool's policy sees a ``PoolState`` (its up replicas' views, how many
are starting, stopped, draining) and says +1, 0 or -1. On +1 one stopped replica starts: it is
paid from that moment and takes requests after the cold start (its weight bytes per GPU over
the storage bandwidth, plus ``startup_s``; as in Kubernetes/KServe model serving, where pulling
weights dominates). On -1 the least loaded up replica drains: it takes no new requests and
stops, ending its up-time, once empty.

The autoscaler reads and writes the cluster only through a ``LiveCluster`` (routable flags,
views, outstanding tokens, emptiness, the event loop) and reports to ``ClusterStats``.
"""

from __future__ import annotations

from collections.abc import Sequence

from servesim.cluster.config import AutoscaleConfig
from servesim.cluster.live import LiveCluster
from servesim.cluster.scaling import (
    SCALE_DOWN,
    SCALE_UP,
    PoolState,
    ScalingPolicy,
    check_decision,
    make_scaling_policy,
)
from servesim.cluster.stats import ClusterStats
from servesim.core.events import EventPriority


def cold_start_s(weight_bytes: float, config: AutoscaleConfig) -> float:
    """Seconds from the decision to the first request a new replica can take."""
    return weight_bytes / config.storage_bandwidth_bytes_per_s + config.startup_s


class Autoscaler:
    """Scales the autoscaled pools and keeps every replica's up intervals.

    Args:
        pools: ``(config, member replica indices)`` of each autoscaled pool.
        weight_bytes_per_gpu: each replica's weight bytes per GPU (its cold start).
        live: the running cluster (routable flags, views, events).
        stats: where scale events and counts go.
    """

    def __init__(
        self,
        pools: Sequence[tuple[AutoscaleConfig, list[int]]],
        weight_bytes_per_gpu: Sequence[float],
        live: LiveCluster,
        stats: ClusterStats,
    ) -> None:
        self.live = live
        self.stats = stats
        self.weight_bytes_per_gpu = list(weight_bytes_per_gpu)
        n = live.num_replicas
        self.up_since: list[float | None] = [0.0] * n  # None: stopped
        self.up_s = [0.0] * n
        self.is_draining = [False] * n
        self.pools = [(config, list(members)) for config, members in pools]
        self.policies: list[ScalingPolicy] = [make_scaling_policy(c) for c, _ in self.pools]
        for config, members in self.pools:
            for i in members[config.min_replicas :]:
                self.up_since[i] = None
                live.set_routable(i, False)

    def start(self) -> None:
        """Schedule the first policy round of each autoscaled pool."""
        for k, (config, _) in enumerate(self.pools):
            self.live.schedule(config.interval_s, self._round, k, priority=EventPriority.CONTROL)

    def pool_state(self, k: int) -> PoolState:
        """What pool ``k``'s policy sees now."""
        config, members = self.pools[k]
        live = self.live
        up = live.routable(members)
        num_starting = sum(
            1
            for i in members
            if self.up_since[i] is not None and not live.is_routable(i) and not self.is_draining[i]
        )
        return PoolState(
            now_s=live.now,
            views=tuple(live.views(up)),
            num_starting=num_starting,
            num_stopped=sum(1 for i in members if self.up_since[i] is None),
            num_draining=sum(1 for i in members if self.is_draining[i]),
            min_replicas=config.min_replicas,
            max_replicas=len(members),
        )

    def _round(self, k: int) -> None:
        config, members = self.pools[k]
        live = self.live
        now = live.now
        self._stop_drained(members, now)
        decision = self.policies[k].decide(self.pool_state(k))
        decision = check_decision(config.policy, decision, now)
        stopped = [i for i in members if self.up_since[i] is None]
        up = live.routable(members)
        if decision == SCALE_UP and stopped:
            self._scale_up(config, stopped[0], now)
        elif decision == SCALE_DOWN and len(up) > config.min_replicas:
            victim = min(up, key=live.outstanding_tokens)
            live.set_routable(victim, False)
            self.is_draining[victim] = True
            self.stats.num_scale_downs += 1
            self.stats.scale_events.append((now, victim, "drain"))
            self._stop_drained(members, now)
        if live.is_active():
            live.schedule(now + config.interval_s, self._round, k, priority=EventPriority.CONTROL)

    def _scale_up(self, config: AutoscaleConfig, index: int, now: float) -> None:
        self.up_since[index] = now
        self.stats.num_scale_ups += 1
        self.stats.scale_events.append((now, index, "start"))
        cold_s = cold_start_s(self.weight_bytes_per_gpu[index], config)
        self.live.schedule(now + cold_s, self._ready, index)

    def _ready(self, index: int) -> None:
        self.live.set_routable(index, True)
        self.stats.scale_events.append((self.live.now, index, "ready"))

    def _stop_drained(self, members: list[int], now: float) -> None:
        for i in members:
            since = self.up_since[i]
            if self.is_draining[i] and since is not None and self.live.is_empty(i):
                self.up_s[i] += now - since
                self.up_since[i] = None
                self.is_draining[i] = False
                self.stats.scale_events.append((now, i, "stop"))

    def uptimes(self, end_s: float) -> list[float]:
        """Seconds each replica was up by ``end_s``."""
        return [
            up + (end_s - since if since is not None else 0.0)
            for up, since in zip(self.up_s, self.up_since, strict=True)
        ]
