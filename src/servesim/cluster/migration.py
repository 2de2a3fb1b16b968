"""Live migration of decoding requests between replicas of a pool (Llumnix, OSDI'24).

Every ``interval_s`` the balancer compares KV usage inside each pool that decodes; when the
fullest and emptiest replicas differ by more than ``kv_usage_gap`` it migrates up to
``max_per_round`` decoding requests (the most recently admitted first: least KV to copy,
least progress lost if the copy is aborted) from the fullest to the emptiest.

Cost, as Llumnix's pipelined live migration: the KV present at the decision is copied while
the request keeps decoding on the source (stage 1, overlapped, never stalls it); the tokens
generated meanwhile are copied in a final stop-and-copy stage (the request's only downtime);
then it resumes on the target, which admits it when it has the KV blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.cluster.transfer import kv_transfer_bytes, kv_transfer_s
from servesim.core.events import EventPriority
from servesim.engine.replica import Replica
from servesim.engine.sequence import Seq, SeqStatus
from servesim.engine.simulation import replica_view
from servesim.specs.gpu import LinkSpec

if TYPE_CHECKING:
    from servesim.cluster.runner import Cluster


class Migrator:
    """Periodically moves decoding requests from the fullest to the emptiest replica."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        config = cluster.deployment.config.migration
        assert config is not None
        self.config = config
        self.pools: list[list[int]] = []
        for p, pool in enumerate(cluster.deployment.pools):
            members = [i for i, q in enumerate(cluster.pool_of) if q == p]
            if pool.role != "prefill" and len(members) > 1:
                self.pools.append(members)
        self.moving: dict[Seq, None] = {}

    def start(self) -> None:
        """Schedule the first balancing round."""
        if self.pools:
            self.cluster.loop.schedule(
                self.config.interval_s, self._round, priority=EventPriority.CONTROL
            )

    def _round(self) -> None:
        cluster = self.cluster
        now = cluster.loop.now
        for members in self.pools:
            up = [i for i in members if cluster.is_routable[i]]
            if len(up) < 2:
                continue
            usage = {i: replica_view(cluster.replicas[i]).kv_usage for i in up}
            src = max(up, key=lambda i: (usage[i], -i))
            dst = min(up, key=lambda i: (usage[i], i))
            if usage[src] - usage[dst] <= self.config.kv_usage_gap:
                continue
            for seq in self._candidates(cluster.replicas[src])[: self.config.max_per_round]:
                self._begin(seq, src, dst, now)
        if cluster.is_active():
            cluster.loop.schedule(
                now + self.config.interval_s, self._round, priority=EventPriority.CONTROL
            )

    def _candidates(self, replica: Replica) -> list[Seq]:
        """Decoding requests not already moving, most recently admitted first."""
        out: list[Seq] = []
        for engine in replica.engines:
            for seq in reversed(engine.state.running):
                if seq.status == SeqStatus.DECODING and seq not in self.moving:
                    out.append(seq)
        return out

    def _link(self, src: int, dst: int) -> tuple[LinkSpec, int]:
        cluster = self.cluster
        link = cluster.deployment.link_between(cluster.node_of[src], cluster.node_of[dst])
        return link, min(cluster.plans[src].num_gpus, cluster.plans[dst].num_gpus)

    def _begin(self, seq: Seq, src: int, dst: int, now: float) -> None:
        """Stage 1: copy the KV present now while the request keeps decoding on ``src``."""
        cluster = self.cluster
        state = next(e.state for e in cluster.replicas[src].engines if seq in e.state.running)
        num_tokens = seq.num_prompt_tokens + state.emitted(seq) - 1
        link, streams = self._link(src, dst)
        num_bytes = kv_transfer_bytes(cluster.plans[src], num_tokens)
        seconds = kv_transfer_s(num_bytes, link, streams)
        self.moving[seq] = None
        cluster.loop.schedule(
            now + seconds,
            self._stop,
            seq,
            src,
            dst,
            num_tokens,
            num_bytes,
            priority=EventPriority.ARRIVAL,
        )

    def _stop(self, seq: Seq, src: int, dst: int, num_copied: int, num_bytes: int) -> None:
        """Stage 2: take the request off ``src`` at its next iteration boundary."""
        cluster = self.cluster
        for engine in cluster.replicas[src].engines:
            if seq in engine.state.running:

                def done(released: Seq | None, now: float) -> None:
                    self._finish(released, seq, src, dst, num_copied, num_bytes, now)

                engine.outgoing[seq] = done
                return
        del self.moving[seq]  # finished or preempted while the copy ran: nothing to move

    def _finish(
        self,
        released: Seq | None,
        seq: Seq,
        src: int,
        dst: int,
        num_copied: int,
        num_bytes: int,
        now: float,
    ) -> None:
        """Stop-and-copy the tokens generated during stage 1, then resume on ``dst``."""
        cluster = self.cluster
        del self.moving[seq]
        if released is None:
            cluster.records.count("num_migrations_aborted")
            return
        num_tokens = seq.num_prompt_tokens + seq.num_emitted - 1
        link, streams = self._link(src, dst)
        delta = kv_transfer_bytes(cluster.plans[src], max(num_tokens - num_copied, 0))
        downtime = kv_transfer_s(delta, link, streams)
        cluster.stats.num_migrations += 1
        cluster.stats.migration_bytes += num_bytes + delta
        cluster.records.count("num_migrations")
        cluster.in_flight[seq] = None
        cluster.loop.schedule(now + downtime, cluster.arrive, seq, cluster.replicas[dst])
