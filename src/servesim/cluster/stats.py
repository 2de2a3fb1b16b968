"""``ClusterStats``: what the cluster layer adds to a run's records (transfers, up-time, cost,
migrations, scaling events)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from servesim.engine.records import RejectReason, SimulationRecords

SECONDS_PER_HOUR = 3600.0


@dataclass(slots=True)
class ClusterStats:
    """Cluster-level figures of a run.

    Attributes:
        num_gpus: GPUs of every replica built (autoscaled pools at their maximum).
        replica_up_s: seconds each replica was up (paid for), cold start included.
        gpu_hours: sum over replicas of GPUs x up-time / 3600.
        cost_usd: GPU-hours x each replica's price per GPU-hour.
        transfer_rows: request row of each KV transfer.
        transfer_s: exposed seconds of each KV transfer.
        transfer_bytes: bytes of each KV transfer.
        num_migrations: live migrations completed.
        migration_bytes: KV bytes they copied.
        num_scale_ups: replicas started by the autoscaler.
        num_scale_downs: replicas it stopped.
        scale_events: ``(time_s, replica, event)`` with event ``start`` (paid from here),
            ``ready`` (takes requests: cold start over), ``drain`` or ``stop``.
        admission: the admission policy's kind ("" without admission control).
        num_admission_rejected: requests it turned away.
        admission_rows: their request rows (reason ``rejected_by_admission`` in the records).
    """

    num_gpus: int = 0
    replica_up_s: list[float] = field(default_factory=list)
    gpu_hours: float = 0.0
    cost_usd: float = 0.0
    transfer_rows: list[int] = field(default_factory=list)
    transfer_s: list[float] = field(default_factory=list)
    transfer_bytes: list[int] = field(default_factory=list)
    num_migrations: int = 0
    migration_bytes: int = 0
    num_scale_ups: int = 0
    num_scale_downs: int = 0
    scale_events: list[tuple[float, int, str]] = field(default_factory=list)
    admission: str = ""
    num_admission_rejected: int = 0
    admission_rows: list[int] = field(default_factory=list)

    def set_uptime(self, records: SimulationRecords, up_s: list[float]) -> None:
        """Record per-replica up-time and derive GPU-hours and cost from it."""
        self.replica_up_s = up_s
        self.gpu_hours = self.cost_usd = 0.0
        for info, seconds in zip(records.replicas, up_s, strict=True):
            hours = info.num_gpus * seconds / SECONDS_PER_HOUR
            self.gpu_hours += hours
            self.cost_usd += hours * info.price_per_gpu_hour_usd

    def transfer_summary(self, records: SimulationRecords) -> dict[str, float]:
        """Count, bytes, mean/p99 exposed seconds and mean share of TTFT of KV transfers
        (of completed requests; TTFT includes the transfer when the decode replica streams
        the first token, otherwise the share says what it would add)."""
        if not self.transfer_rows:
            return {"num_transfers": 0.0}
        rows = np.asarray(self.transfer_rows)
        secs = np.asarray(self.transfer_s)
        req = records.requests
        done = req.column("reject_reason")[rows] == RejectReason.NONE
        ttft = req.column("first_token_s")[rows] - req.column("arrival_s")[rows]
        share = secs[done] / np.maximum(ttft[done], 1e-12)
        return {
            "num_transfers": float(len(rows)),
            "transfer_bytes": float(np.sum(self.transfer_bytes)),
            "mean_transfer_s": float(secs.mean()),
            "p99_transfer_s": float(np.percentile(secs, 99)),
            "mean_share_of_ttft": float(share.mean()) if share.size else math.nan,
        }

    def to_dict(self, records: SimulationRecords) -> dict[str, object]:
        """Plain figures for ``summary.json``."""
        out: dict[str, object] = {
            "num_gpus": self.num_gpus,
            "gpu_hours": self.gpu_hours,
            "cost_usd": self.cost_usd,
            "replica_up_s": list(self.replica_up_s),
            "kv_transfer": self.transfer_summary(records),
            "num_migrations": self.num_migrations,
            "migration_bytes": self.migration_bytes,
            "num_scale_ups": self.num_scale_ups,
            "num_scale_downs": self.num_scale_downs,
        }
        if self.admission:  # only with admission control: default summaries are unchanged
            out["admission"] = {
                "policy": self.admission,
                "num_rejected": self.num_admission_rejected,
            }
        return out
