"""Rows of the simulation records an engine writes: one per iteration (or per run of identical
decode iterations advanced together) and one per request when it leaves."""

from __future__ import annotations

from servesim.engine.batch import Batch
from servesim.engine.records import SimulationRecords
from servesim.engine.sequence import Seq
from servesim.perf.types import StageTimes


class DecodeRun:
    """Accumulates a run of decode iterations with the same sequences."""

    __slots__ = (
        "comm_s",
        "energy_j",
        "flops",
        "hbm_bytes",
        "host_s",
        "num_queued",
        "num_seqs",
        "num_ticks",
        "start_s",
    )

    def __init__(self, start_s: float, num_seqs: int, num_queued: int) -> None:
        self.start_s = start_s
        self.num_seqs = num_seqs
        self.num_queued = num_queued
        self.num_ticks = 0
        self.flops = self.hbm_bytes = self.energy_j = self.host_s = self.comm_s = 0.0

    def add(self, times: StageTimes) -> None:
        """One more iteration."""
        self.num_ticks += 1
        self.flops += times.flops
        self.hbm_bytes += times.hbm_bytes
        self.energy_j += times.energy_j
        self.host_s += times.overhead_s
        self.comm_s += times.comm_s


def append_run_row(
    records: SimulationRecords, replica_id: int, run: DecodeRun, end_s: float, kv_blocks_used: int
) -> None:
    """One row for ``run``'s decode iterations (``repeat`` = how many), ending at ``end_s``."""
    records.iterations.append_row(
        replica_id=replica_id,
        start_s=run.start_s,
        duration_s=end_s - run.start_s,
        num_prefill_tokens=0,
        num_decode_seqs=run.num_seqs,
        num_seqs=run.num_seqs,
        num_kv_blocks_used=kv_blocks_used,
        num_queued=run.num_queued,
        flops=run.flops,
        hbm_bytes=run.hbm_bytes,
        energy_j=run.energy_j,
        repeat=run.num_ticks,
        host_s=run.host_s,
        comm_s=run.comm_s,
        num_preempted=0,  # a skipped-ahead run has no preemptions (nothing can change)
    )


def append_batch_row(
    records: SimulationRecords,
    replica_id: int,
    batch: Batch,
    times: StageTimes,
    duration_s: float,
    num_preempted: int,
) -> None:
    """One row for one iteration."""
    records.iterations.append_row(
        replica_id=replica_id,
        start_s=batch.start_s,
        duration_s=duration_s,
        num_prefill_tokens=batch.num_prefill_tokens,
        num_decode_seqs=len(batch.decodes),
        num_seqs=len(batch.prefills) + len(batch.decodes),
        num_kv_blocks_used=batch.num_kv_blocks_used,
        num_queued=batch.num_queued,
        flops=times.flops,
        hbm_bytes=times.hbm_bytes,
        energy_j=times.energy_j,
        repeat=1,
        host_s=times.overhead_s,
        comm_s=times.comm_s,
        num_preempted=num_preempted,
    )


def write_request(
    records: SimulationRecords, seq: Seq, *, completion_s: float, reason: int = 0
) -> None:
    """Write a request's final figures into its row of ``records.requests``."""
    # The row's arrays and index (a long run's table keeps in-flight rows in chunks).
    cols, row = records.requests.locate(seq.row)
    cols["first_scheduled_s"][row] = seq.first_scheduled_s
    cols["first_token_s"][row] = seq.first_token_s
    first_s = seq.first_token_s
    # A stream reaches the client in order: its end is never before its first token, which
    # the front end may deliver after later steps have ended (EngineTiming.output_per_seq_s).
    if completion_s < first_s:
        completion_s = first_s
    cols["completion_s"][row] = completion_s
    cols["num_emitted_tokens"][row] = seq.num_emitted
    gaps_s = max(seq.last_token_s - first_s, 0.0) if seq.num_emitted > 1 else 0.0
    cols["sum_tbt_s"][row] = gaps_s
    cols["max_tbt_s"][row] = seq.max_gap_s
    cols["num_preemptions"][row] = seq.num_preemptions
    cols["num_prefix_hit_tokens"][row] = seq.num_hit_tokens
    cols["reject_reason"][row] = reason
