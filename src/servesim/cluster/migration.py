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

from collections.abc import Callable, Sequence

from servesim.cluster.config import MigrationConfig
from servesim.cluster.live import LiveCluster
from servesim.cluster.stats import ClusterStats
from servesim.core.events import EventPriority
from servesim.engine.sequence import Seq

#: ``copy_s(src, dst, num_tokens) -> (bytes, seconds)`` of copying that much KV between them
CopyCost = Callable[[int, int, int], tuple[int, float]]


class Migrator:
    """Periodically moves decoding requests from the fullest to the emptiest replica.

    Args:
        config: the balancer's knobs.
        pools: member replica indices of each pool that decodes (two or more replicas).
        live: the running cluster (routable flags, views, decoding requests, transfers).
        stats: where migration counts and bytes go.
        copy_cost: bytes and seconds of a KV copy between two replicas.
    """

    def __init__(
        self,
        config: MigrationConfig,
        pools: Sequence[list[int]],
        live: LiveCluster,
        stats: ClusterStats,
        copy_cost: CopyCost,
    ) -> None:
        self.config = config
        self.pools = [list(members) for members in pools]
        self.live = live
        self.stats = stats
        self.copy_cost = copy_cost
        self.moving: dict[Seq, None] = {}

    def start(self) -> None:
        """Schedule the first balancing round."""
        if self.pools:
            self.live.schedule(self.config.interval_s, self._round, priority=EventPriority.CONTROL)

    def _round(self) -> None:
        live = self.live
        now = live.now
        for members in self.pools:
            up = live.routable(members)
            if len(up) < 2:
                continue
            usage = {i: live.view(i).kv_usage for i in up}
            src = max(up, key=lambda i: (usage[i], -i))
            dst = min(up, key=lambda i: (usage[i], i))
            if usage[src] - usage[dst] <= self.config.kv_usage_gap:
                continue
            for seq in self._candidates(src)[: self.config.max_per_round]:
                self._begin(seq, src, dst, now)
        if live.is_active():
            live.schedule(now + self.config.interval_s, self._round, priority=EventPriority.CONTROL)

    def _candidates(self, src: int) -> list[Seq]:
        """Decoding requests not already moving, most recently admitted first."""
        return [seq for seq in self.live.decoding(src) if seq not in self.moving]

    def _begin(self, seq: Seq, src: int, dst: int, now: float) -> None:
        """Stage 1: copy the KV present now while the request keeps decoding on ``src``."""
        num_tokens = self.live.num_kv_tokens(src, seq)
        assert num_tokens is not None  # a candidate is running on src
        num_bytes, seconds = self.copy_cost(src, dst, num_tokens)
        self.moving[seq] = None
        self.live.schedule(
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

        def done(released: Seq | None, now: float) -> None:
            self._finish(released, seq, src, dst, num_copied, num_bytes, now)

        if not self.live.detach(src, seq, done):
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
        del self.moving[seq]
        if released is None:
            self.live.count("num_migrations_aborted")
            return
        num_tokens = seq.num_prompt_tokens + seq.num_emitted - 1
        delta, downtime = self.copy_cost(src, dst, max(num_tokens - num_copied, 0))
        self.stats.num_migrations += 1
        self.stats.migration_bytes += num_bytes + delta
        self.live.count("num_migrations")
        self.live.send(seq, dst, now + downtime)
